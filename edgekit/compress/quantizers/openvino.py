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
from ..quantize import FLOAT_NAME_PATTERNS, SENSITIVE_OV_OPS, ErrorSums, int8_rounded, probe_picks, quant_meta

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
        dataset = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))])
        kw = {}
        if transformer:
            kw["model_type"] = nncf.ModelType.TRANSFORMER
        adv = nncf.AdvancedQuantizationParameters(
            weights_quantization_params=None if cfg.per_channel else nncf.quantization.advanced_parameters
            .QuantizationParameters(per_channel=False))

        def run(model, names):
            scope = nncf.IgnoredScope(types=ignored_types, names=names, patterns=patterns, validate=False) \
                if (ignored_types or names or patterns) else None
            return nncf.quantize(model, dataset, subset_size=len(calib), ignored_scope=scope,
                                 advanced_parameters=adv, **kw)

        outliers, float_weights = [], []
        if (cfg.float_sensitive or cfg.mixed_precision) and not cfg.keep_float:
            # the layers whose int8 error stands out in a probe quantized without them (quantize.probe_picks)
            from ..quantize import ERROR_SAMPLES

            errors = openvino_layer_errors(run(ov_model.clone(), names), ov_model, calib[:ERROR_SAMPLES])
            outliers, float_weights = probe_picks(errors, names)
            names = names + outliers
        q = run(ov_model, names)
        record.update({"scheme": "NNCF PTQ", "model_type": "transformer" if transformer else "default",
                       "ignored_types": ignored_types, "kept_float": names + patterns, "error_outliers": outliers,
                       "float_weights": float_weights, "per_channel": cfg.per_channel})
        return q

    return transform


# Ops between a weighted op and the FakeQuantize of its output that the float twin repeats (a bias Add, ReLU6's
# Clamp, ...): how to make each on the twin's value.
def _twin_ops():
    import openvino.opset13 as ops

    unary = {"Relu": lambda x, n: ops.relu(x), "Sigmoid": lambda x, n: ops.sigmoid(x),
             "HSwish": lambda x, n: ops.hswish(x), "HSigmoid": lambda x, n: ops.hsigmoid(x),
             "Tanh": lambda x, n: ops.tanh(x),
             "Clamp": lambda x, n: ops.clamp(x, n.get_attributes()["min"], n.get_attributes()["max"])}
    binary = {"Add": ops.add, "Multiply": ops.multiply, "Subtract": ops.subtract, "Divide": ops.divide}
    return ops, unary, binary


def _const_value(out) -> np.ndarray | None:
    """The float32 value of a constant subgraph (a Constant through Convert and reshapes), or None."""
    n = out.get_node()
    kind = n.get_type_name()
    if kind == "Constant":
        return n.get_data().astype(np.float32)
    if kind in ("Convert", "Reshape", "Unsqueeze", "Squeeze"):
        v = _const_value(n.input_value(0))
        return None if v is None else v.astype(np.float32).reshape(tuple(n.get_output_shape(0)))
    return None


def openvino_layer_errors(q_model, float_model, x: np.ndarray) -> dict[str, tuple[float, float]]:
    """int8 error of each weighted op (Convolution, GroupConvolution, MatMul) of NNCF's quantized ``q_model`` in its
    own output steps: the RMS over ``x`` of (its FakeQuantize'd output - a float twin's), the twin being the same op
    with ``float_model``'s weight (matched by name) on the same quantized input, followed by the same bias and
    activation ops, and the step the output FakeQuantize's (where there is none: the output's range / 255); beside
    it the noise of its weights alone stored int8 (symmetric, per output channel: the op's raw output with them
    against the twin's, over the RMS of the twin's output after the activation). The OpenVINO counterpart of
    ``onnx.onnx_layer_errors``, with its return; ``q_model`` is left as it was (the twins go on a clone)."""
    import openvino as ov

    ops, unary, binary = _twin_ops()
    q = q_model.clone()
    f_ops = {op.get_friendly_name(): op for op in float_model.get_ops()}
    probes, outs = [], []
    for op in q.get_ordered_ops():
        if op.get_type_name() not in _WEIGHTED or op.get_friendly_name() not in f_ops:
            continue
        w = _const_value(f_ops[op.get_friendly_name()].input_value(1))
        if w is None or w.shape != tuple(op.get_input_shape(1)):
            continue
        twin = _same_op(ops, op, w)
        w8 = _same_op(ops, op, _int8_rounded(op, w))
        cur, twin, step = op.output(0), twin.output(0), None
        raw = twin
        while len(targets := list(cur.get_target_inputs())) == 1:
            nxt = targets[0].get_node()
            kind = nxt.get_type_name()
            if kind == "FakeQuantize":
                lo, hi = _const_value(nxt.input_value(3)), _const_value(nxt.input_value(4))
                if lo is not None and hi is not None:
                    step, cur = float(np.mean(hi - lo)) / (nxt.get_attributes()["levels"] - 1), nxt.output(0)
                break
            if kind in unary:
                made = unary[kind](twin, nxt)
            elif kind in binary and nxt.get_input_size() == 2 and \
                    _const_value(nxt.input_value(1 - targets[0].get_index())) is not None:
                other = nxt.input_value(1 - targets[0].get_index())
                made = binary[kind](*((twin, other) if targets[0].get_index() == 0 else (other, twin)))
            else:
                break
            cur, twin = nxt.output(0), made.output(0)
        probes.append((op.get_friendly_name(), len(outs), step))
        outs += [cur, twin, w8.output(0), raw]
    if not probes:
        return {}
    compiled = ov.Core().compile_model(ov.Model([ops.result(o) for o in outs], q.get_parameters()), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    req = compiled.create_infer_request()
    acc = ErrorSums(len(probes))
    for i in range(len(x)):
        res = req.infer([x[i:i + 1]])
        for j, (_, k, _s) in enumerate(probes):
            acc.add(j, res[compiled.outputs[k]], res[compiled.outputs[k + 1]])
            acc.add_weights(j, res[compiled.outputs[k + 2]], res[compiled.outputs[k + 3]])
    return acc.steps([p[0] for p in probes], [p[2] for p in probes])


def _same_op(ops, op, w: np.ndarray):
    """``op`` again on its own input with the constant weight ``w``."""
    a = op.get_attributes()
    if op.get_type_name() == "MatMul":
        return ops.matmul(op.input_value(0), ops.constant(w), a["transpose_a"], a["transpose_b"])
    conv = ops.convolution if op.get_type_name() == "Convolution" else ops.group_convolution
    return conv(op.input_value(0), ops.constant(w), a["strides"], a["pads_begin"], a["pads_end"], a["dilations"],
                a["auto_pad"])


def _int8_rounded(op, w: np.ndarray) -> np.ndarray:
    """``w`` stored int8, symmetric per output channel, and read back (a GroupConvolution's output channels are its
    first two axes; a MatMul's the last axis, or the first with transpose_b)."""
    if op.get_type_name() == "GroupConvolution":
        return int8_rounded(w.reshape((-1,) + w.shape[2:]), 0).reshape(w.shape)
    return int8_rounded(w, 0 if op.get_type_name() != "MatMul" or op.get_attributes()["transpose_b"] else w.ndim - 1)


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
