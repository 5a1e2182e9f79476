"""The exporters registry, one per row of the format table (edgekit/formats.py), plus entry points.

Its own module so that export/base.py can look exporters up without importing the package that imports it.
"""

from __future__ import annotations

from ..formats import TABLE
from ..registry import Registry

exporters: Registry = Registry("format", "edgekit.exporters")
for _f in TABLE:
    exporters.register(_f.name, _f.exporter)
