"""TFLite int8: full-integer PTQ (``TFLITE_BUILTINS_INT8``, representative dataset), int8 input/output on
request; sensitive layers kept float through TFLite's QuantizationDebugger (selective quantization)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ...passes import QuantizeConfig
from ..quantize import int8_meta


def quantize(model, float_artifact: Path | None, stage: Path, name: str, meta, cfg: QuantizeConfig,
             calib: np.ndarray, say, *, source=None, transformer: bool = False) -> Path:
    """The int8 ``.tflite`` of ``model`` under ``stage`` (converted from the Keras model; not gated yet)."""
    from ...export import export_model

    details = {"scheme": "TFLite full-integer PTQ", "per_channel": cfg.per_channel,
               "io": "int8" if cfg.int8_io else "float32", "kept_float": list(cfg.keep_float)}
    if cfg.float_sensitive and not cfg.keep_float:
        details["kept_float"] = "first and last weighted layers"
    m = int8_meta(meta, cfg, details, len(calib))
    res = export_model(model, ["tflite"], stage, name=name, meta=m, verify=False, progress=say,
                       options={"tflite": {"configure": tflite_configure(cfg, calib)}})
    return res.artifacts["tflite"]


def tflite_configure(cfg: QuantizeConfig, calib: np.ndarray) -> Callable:
    """A ``configure(converter)`` hook for :func:`edgekit.export.export_model` that makes it int8."""

    def configure(conv):
        import tensorflow as tf

        def rep():
            for i in range(len(calib)):
                yield [calib[i:i + 1]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        if not cfg.per_channel:
            conv._experimental_disable_per_channel = True
        keep = list(cfg.keep_float)
        if cfg.float_sensitive or keep:
            # Selective quantization: float kernels for the listed ops, int8 elsewhere.
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            if cfg.int8_io:
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
            nodes = keep or _tflite_sensitive_nodes(conv, rep)
            opts = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes, fully_quantize=cfg.int8_io)
            debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=rep,
                                                                 debug_options=opts)
            # export_model calls converter.convert(); hand it the selectively quantized model instead.
            conv.convert = debugger.get_nondebug_quantized_model
            conv._edgekit_kept_float = nodes
            return
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if cfg.int8_io:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8

    return configure


def _tflite_sensitive_nodes(conv, rep) -> list[str]:
    """Output tensor names of the first conv and the last fully connected op of the int8 model."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    probe = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=rep)
    # The fully quantized model: its op output names are the node names the denylist takes.
    interp = Interpreter(model_content=probe.get_nondebug_quantized_model())
    ops = interp._get_ops_details()
    tensors = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    weighted = [o for o in ops if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    picks = [weighted[0], weighted[-1]] if weighted else []
    return list(dict.fromkeys(tensors[o["outputs"][0]] for o in picks))
