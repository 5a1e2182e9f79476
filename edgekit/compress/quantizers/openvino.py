"""OpenVINO: int8 is NNCF PTQ on the converted model, ``model_type=TRANSFORMER`` when the model has attention,
audio front-end ops (DFT, RDFT) ignored when one is in the graph; fp16 is the FP16 IR
(``save_model(compress_to_fp16=True)``); int8-weights is ``nncf.compress_weights`` (INT8_ASYM). NNCF has no
int16 activations, so there is no int16x8 here (formats.py says so when one is asked for)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

from ...artifact import read_meta, write_meta
from ...errors import MissingDependencyError
from ...passes import QuantizeConfig
from ..quantize import FLOAT_NAME_PATTERNS, SENSITIVE_OV_OPS, quant_meta

FRONTEND_OV_TYPES = ["DFT", "RDFT", "IDFT", "IRDFT"]
_WEIGHTED = ("Convolution", "GroupConvolution", "MatMul")
# In-graph feature normalization (quantize.FLOAT_NAME_PATTERNS: ReduceMean + Subtract) stays float.
# NNCF otherwise quantizes both inputs of the Subtract at the raw features' scale, and the small
# differences that remain after removing the mean lose most of their resolution: ds_cnn_s on keywords
# lost 3.3 points at the first rung with it quantized (measured), none with it kept float.


def quantize(source, job) -> Path:
    """The ``job.precision`` IR (``.xml`` + ``.bin``) of ``source.model`` under ``job.stage``, applied during
    conversion; with no model (a source that is a file), from ``source.float_artifact``, the verified float IR.
    With ``job.control``: NNCF's accuracy control on the float IR."""
    from ...export import export_model
    from ...export.openvino import OpenVINOExporter

    model, float_artifact = source.model, source.float_artifact
    cfg, calib, precision, meta, say = job.config, job.calibration, job.precision, job.meta, job.progress
    if job.control is not None:
        from .accuracy_control import accuracy_control

        return accuracy_control("openvino", Path(float_artifact), job.out(".xml"), job, _first_and_last_weighted)
    record: dict = {}
    if precision == "int8":
        opts = {"transform": openvino_transform(cfg, calib, transformer=source.transformer, record=record)}
        m = quant_meta(meta, precision, {"scheme": "NNCF PTQ"}, len(calib))
    elif precision == "fp16":
        opts = {"compress_to_fp16": True}
        m = quant_meta(meta, precision, {"scheme": "FP16 IR (compress_to_fp16)"}, None)
    elif precision == "int8-weights":
        opts = {"transform": _compress_weights(cfg, record)}
        m = quant_meta(meta, precision, {"scheme": "NNCF weight compression INT8_ASYM"}, None)
    else:  # formats.check_precisions stops this before any work; a direct caller gets the same line
        from ...formats import check_precisions

        check_precisions(["openvino"], [precision])
    if float_artifact is not None and (precision != "int8" or model is None):
        # fp16 and weight compression need no calibration or SavedModel: rewrite the verified float IR. So does
        # int8 of a file source (a foreign ONNX or TFLite: no Keras model), NNCF running on the float IR's graph.
        return _from_float_ir(Path(float_artifact), job.out(".xml"), m, opts, record)
    res = export_model(model, ["openvino"], job.stage, name=job.name, meta=m, verify=False, progress=say,
                       options={"openvino": opts})
    path = res.artifacts["openvino"]
    final_meta = read_meta(path)
    final_meta.quantization.update(record)
    write_meta(path, final_meta)
    OpenVINOExporter().embed_metadata(path, final_meta)
    return path


def _first_and_last_weighted(float_path: Path, model) -> list[str]:
    """The float-sensitive layers of an OpenVINO model: its first weighted op and its output heads
    (:func:`~edgekit.compress.quantize.first_and_heads`)."""
    from ..quantize import first_and_heads

    ops = model.get_ordered_ops()
    succ = {op.get_friendly_name(): [i.get_node().get_friendly_name() for o in op.outputs() for i in o.get_target_inputs()]
            for op in ops}
    return first_and_heads([op.get_friendly_name() for op in ops],
                           {op.get_friendly_name() for op in ops if op.get_type_name() in _WEIGHTED}, succ)


def _from_float_ir(float_xml: Path, out: Path, m, opts: dict, record: dict) -> Path:
    import openvino as ov

    from ...export.openvino import OpenVINOExporter

    model = ov.Core().read_model(str(float_xml))
    if opts.get("transform") is not None:
        model = opts["transform"](model)
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(out), compress_to_fp16=bool(opts.get("compress_to_fp16")))
    base = read_meta(float_xml) or m
    final_meta = base.copy(quantization={**m.quantization, **record})
    final_meta.verification = {}
    write_meta(out, final_meta)
    OpenVINOExporter().embed_metadata(out, final_meta)
    return out


def _compress_weights(cfg: QuantizeConfig, record: dict) -> Callable:
    def transform(ov_model):
        try:
            import nncf
        except ImportError:
            raise MissingDependencyError("nncf", "train", what="OpenVINO weight compression") from None
        names = list(cfg.keep_float)
        scope = nncf.IgnoredScope(names=names, validate=False) if names else None
        q = nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM, ignored_scope=scope)
        record.update({"kept_float": names})
        return q

    return transform


def openvino_transform(cfg: QuantizeConfig, calib: np.ndarray, *, transformer: bool, record: dict) -> Callable:
    """A ``transform(ov_model)`` hook for the OpenVINO exporter that runs NNCF PTQ."""

    def transform(ov_model):
        try:
            import nncf
        except ImportError:
            raise MissingDependencyError("nncf", "train", what="OpenVINO int8 quantization") from None
        types = sorted({op.get_type_name() for op in ov_model.get_ops()})
        ignored_types = [t for t in FRONTEND_OV_TYPES if t in types]
        if cfg.mixed_precision:
            ignored_types += [t for t in SENSITIVE_OV_OPS if t in types]
        names = list(cfg.keep_float)
        if (cfg.float_sensitive or cfg.mixed_precision) and not names:
            names = _first_and_last_weighted(None, ov_model)
        patterns = [p for p in FLOAT_NAME_PATTERNS
                    if any(re.fullmatch(p, op.get_friendly_name()) for op in ov_model.get_ops())]
        if patterns and not cfg.keep_float:
            # and everything after it through the first weighted layer (see quantize.FLOAT_NAME_PATTERNS)
            front = []
            for op in ov_model.get_ordered_ops():
                if op.get_type_name() not in ("Parameter", "Constant"):
                    front.append(op.get_friendly_name())
                if op.get_type_name() in _WEIGHTED:
                    break
            names = list(dict.fromkeys(front + names))
        scope = nncf.IgnoredScope(types=ignored_types, names=names, patterns=patterns, validate=False) \
            if (ignored_types or names or patterns) else None
        dataset = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))])
        kw = {}
        if transformer:
            kw["model_type"] = nncf.ModelType.TRANSFORMER
        adv = nncf.AdvancedQuantizationParameters(
            weights_quantization_params=None if cfg.per_channel else nncf.quantization.advanced_parameters
            .QuantizationParameters(per_channel=False))
        q = nncf.quantize(ov_model, dataset, subset_size=len(calib), ignored_scope=scope,
                          advanced_parameters=adv, **kw)
        record.update({"scheme": "NNCF PTQ", "model_type": "transformer" if transformer else "default",
                       "ignored_types": ignored_types, "kept_float": names + patterns, "per_channel": cfg.per_channel})
        return q

    return transform


def openvino_float_weighted(path: Path) -> list[tuple[str, int]]:
    """The weighted ops of an IR whose weight is still a float Constant (a layer a rung kept in float; a
    quantized one reads its weight through a FakeQuantize): (op name, weight elements), largest first."""
    import openvino as ov

    return _float_weighted_ops(ov.Core().read_model(str(path)))


def _float_weighted_ops(model) -> list[tuple[str, int]]:
    import openvino as ov

    out = []
    for op in model.get_ops():
        if op.get_type_name() not in _WEIGHTED:
            continue
        src = op.input_value(1).get_node()
        if src.get_type_name() == "Constant" and src.get_element_type() == ov.Type.f32:
            n = int(np.prod(list(src.get_output_shape(0))))
            if len(src.get_output_shape(0)) >= 2 and n >= 256:
                out.append((op.get_friendly_name(), n))
    return sorted(out, key=lambda t: -t[1])


def openvino_float_weights_int8(path: Path, out: Path, nodes: list[str]) -> list[str]:
    """Weight-only int8 (NNCF's weight compression, INT8_ASYM, per output channel) for the named float layers
    of a quantized IR, activations left float; every other layer as it was. Returns the ops done."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise MissingDependencyError("nncf", "train", what="OpenVINO weight compression") from None
    model = ov.Core().read_model(str(path))
    todo = [n for n, _ in _float_weighted_ops(model) if n in nodes]
    if not todo:
        return []
    others = [op.get_friendly_name() for op in model.get_ops()
              if op.get_type_name() in _WEIGHTED + ("Gather",) and op.get_friendly_name() not in todo]
    scope = nncf.IgnoredScope(names=others, validate=False) if others else None
    q = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM, ignored_scope=scope)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(q, str(out), compress_to_fp16=False)
    return todo
