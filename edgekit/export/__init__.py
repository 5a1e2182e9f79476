"""Export a Keras 3 model (in memory, ``.keras`` file or SavedModel folder) to deployable formats.

One module per format behind the ``exporters`` registry; adding a format is a new module and
one ``register`` line. Every artifact is converted under a temporary name, loaded back through
edgekit's own runtime, compared with the source model, and renamed into place only if it
agrees (or verification is off). Build side: imports TensorFlow.
"""

from __future__ import annotations

from .base import ExportResult, Exporter, SourceModel, export_model, verify_against
from .registry import exporters

__all__ = ["exporters", "export_model", "ExportResult", "Exporter", "SourceModel", "verify_against"]
