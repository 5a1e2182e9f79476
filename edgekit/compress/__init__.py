"""Compression: pruning (magnitude, channels), distillation and int8 quantization for TFLite, ONNX
and OpenVINO, gated on the exported model's held-out accuracy.

    from edgekit.compress import compress, PruneConfig, QuantizeConfig, ExportConfig
    compress("runs/kws/model.keras", "keywords", "out/kws", prune=PruneConfig(0.5, "channels"),
             quantize=QuantizeConfig(), export=ExportConfig(formats=("tflite", "onnx")))

Each step is also a function with a typed config for recipes: ``prune``, ``distill``,
``quantize_format`` and ``compress`` (export + gate + report). Build side: imports TensorFlow.
"""

from __future__ import annotations

from .distill import DistillConfig, distill
from .gate import GateConfig
from .engine import CompressResult, ExportConfig, compress, quantize_format
from .prune import PruneConfig, prune
from .quantize import QuantizeConfig

__all__ = ["compress", "prune", "distill", "quantize_format", "PruneConfig", "DistillConfig", "QuantizeConfig",
           "ExportConfig", "GateConfig", "CompressResult"]
