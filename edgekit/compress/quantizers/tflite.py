"""TFLite: int8 full-integer PTQ (``TFLITE_BUILTINS_INT8``, representative dataset), int8 input/output on
request; sensitive layers kept float through TFLite's QuantizationDebugger (selective quantization).
int16x8 is the converter's 16x8 mode (int16 activations, int8 weights), fp16 its float16 weights,
int8-weights its dynamic-range mode (int8 weights, no calibration)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import numpy as np

from ...passes import QuantizeConfig
from ..quantize import (ERROR_SAMPLES, MAX_ERROR_STEPS, SENSITIVE_TFLITE_OPS, has_feature_normalization, pick_outliers,
                        quant_meta, symmetric_int8)

SCHEMES = {"int8": "TFLite full-integer PTQ", "int16x8": "TFLite 16x8 PTQ (int16 activations, int8 weights)",
           "fp16": "TFLite float16 weights", "int8-weights": "TFLite dynamic-range int8 weights"}


def quantize(source, job) -> Path:
    """The ``job.precision`` ``.tflite`` of ``source.model`` (a Keras model or a SavedModel path: the converter
    needs the source graph) under ``job.stage``; not gated yet."""
    from ...errors import ModelError
    from ...export import export_model

    if job.control is not None:
        raise ModelError("accuracy control is NNCF's (ONNX and OpenVINO IR); TFLite has no accuracy-aware rung")
    if source.model is None:
        raise ModelError("int8 TFLite needs the source graph (a Keras model or a SavedModel); a .tflite or .onnx "
                         "file can't be re-quantized to TFLite")
    model, cfg, calib, precision = source.model, job.config, job.calibration, job.precision
    details = {"scheme": SCHEMES[precision], "io": "int8" if cfg.int8_io and precision == "int8" else "float32"}
    calibrated = precision in ("int8", "int16x8")
    front = precision == "int8" and not cfg.keep_float and has_feature_normalization(model)
    if calibrated:
        details.update(per_channel=cfg.per_channel or precision == "int16x8", kept_float=list(cfg.keep_float))
        if cfg.float_sensitive and not cfg.keep_float:
            details["kept_float"] = ("first weighted layer, the output heads and layers whose int8 error exceeds "
                                     f"{MAX_ERROR_STEPS:g} output step")
        if cfg.mixed_precision and precision == "int8":
            details["kept_float"] = f"ops {', '.join(SENSITIVE_TFLITE_OPS)}, first and last weighted layers"
        if front:
            details["kept_float"] = ("the feature normalization and the first weighted layer"
                                     + (f"; {details['kept_float']}" if details["kept_float"] else ""))
        if cfg.bias_correction and precision == "int8":
            details["bias_correction"] = (f"mean output error of each int8 layer against float, on "
                                          f"{min(len(calib), BIAS_SAMPLES)} calibration samples, taken off its bias "
                                          f"({BIAS_PASSES} passes)")
    m = quant_meta(job.meta, precision, details, len(calib) if calibrated else None)
    configure = (tflite_configure(cfg, calib, front, record=m.quantization) if precision == "int8"
                 else _OTHER[precision](cfg, calib))
    res = export_model(model, ["tflite"], job.stage, name=job.name, meta=m, verify=False, progress=job.progress,
                       options={"tflite": {"configure": configure}})
    return res.artifacts["tflite"]


def _rep(calib):
    def rep():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    return rep


def _int16x8(cfg, calib):
    def configure(conv):
        import tensorflow as tf

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _rep(calib)
        # 16x8 kernels take per-channel int8 weights; an op without a 16x8 kernel stays float (the builtins).
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                                          tf.lite.OpsSet.TFLITE_BUILTINS]

    return configure


def _fp16(cfg, calib):
    def configure(conv):
        import tensorflow as tf

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]

    return configure


def _int8_weights(cfg, calib):
    def configure(conv):
        import tensorflow as tf

        # DEFAULT without a representative dataset: int8 weights, float activations (dynamic range).
        conv.optimizations = [tf.lite.Optimize.DEFAULT]

    return configure


_OTHER = {"int16x8": _int16x8, "fp16": _fp16, "int8-weights": _int8_weights}


def tflite_configure(cfg: QuantizeConfig, calib: np.ndarray, front_float: bool = False,
                     record: dict | None = None) -> Callable:
    """A ``configure(converter)`` hook for :func:`edgekit.export.export_model` that makes it int8;
    ``front_float`` keeps every op from the input through the first weighted one float (in-graph
    feature normalization, see ``quantize.FLOAT_NAME_PATTERNS``). The nodes it keeps float go into ``record``
    (the artifact's quantization metadata) as ``kept_float_nodes``."""

    def configure(conv):
        import tensorflow as tf

        rep = _rep(calib)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        if not cfg.per_channel:
            conv._experimental_disable_per_channel = True
        keep = list(cfg.keep_float)
        if cfg.float_sensitive or keep or cfg.mixed_precision or front_float or cfg.bias_correction:
            # Selective quantization: float kernels for the listed ops, int8 elsewhere.
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            if cfg.int8_io:
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
            nodes = keep or _tflite_kept_nodes(conv, rep, sensitive=cfg.float_sensitive or cfg.mixed_precision,
                                               front=front_float)
            # Mixed precision: also every op of the kinds that lose most in int8 (LayerNorm's mean and
            # rsqrt, softmax, the embedding's gather) stays float.
            ops = list(SENSITIVE_TFLITE_OPS) if cfg.mixed_precision else None
            opts = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes, denylisted_ops=ops,
                                                                 fully_quantize=cfg.int8_io)
            debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=rep,
                                                                 debug_options=opts)
            # export_model calls converter.convert(); hand it the selectively quantized model instead.
            conv.convert = debugger.get_nondebug_quantized_model
            if cfg.bias_correction:
                conv.convert = lambda: bias_correct(debugger, calib, BIAS_PASSES, BIAS_SAMPLES)[0]
            if record is not None and nodes:
                record["kept_float_nodes"] = nodes[:50]
            return
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if cfg.int8_io:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8

    return configure


_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _tflite_kept_nodes(conv, rep, *, sensitive: bool, front: bool) -> list[str]:
    """Output tensor names (the node names the debugger's denylist takes) of the ops kept float, read off the
    fully quantized model (one probe conversion): ``front``, every op from the input through the first
    weighted op but the input's QUANTIZE (ds_cnn_s's time_mean_norm, reshape and first conv: on the demo's
    pruned ds_cnn_s, seed 3, int8 lost 0.88 points with them quantized, -0.10 with them and the last layer
    float); ``sensitive``, the first conv, the output heads (a classifier's last fully connected op; a
    detector's parallel head convs) and the ops whose int8 error stands out (:func:`error_outliers`)."""
    if not (sensitive or front):
        return []
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    probe = tf.lite.experimental.QuantizationDebugger(converter=conv,
                                                      debug_dataset=lambda: itertools.islice(rep(), ERROR_SAMPLES))
    interp = Interpreter(model_content=probe.get_nondebug_quantized_model())
    ops = interp._get_ops_details()
    tensors = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    weighted = [i for i, o in enumerate(ops) if o["op_name"] in _WEIGHTED]
    if not weighted:
        return []
    picks = [o for o in ops[:weighted[0] + 1] if o["op_name"] != "QUANTIZE"] if front else []
    if sensitive:  # the first weighted op and the output heads (a detector has several)
        from ..quantize import first_and_heads

        readers: dict = {}
        for i, o in enumerate(ops):
            for t in o["inputs"]:
                readers.setdefault(int(t), []).append(i)
        succ = {i: [r for t in o["outputs"] for r in readers.get(int(t), ())] for i, o in enumerate(ops)}
        picks += [ops[i] for i in first_and_heads(list(range(len(ops))), set(weighted), succ)]
    names = float_node_names(probe, [tensors[o["outputs"][0]] for o in picks])
    if sensitive:
        names += [n for n in error_outliers(probe, exclude=names) if n not in names]
    return names


def error_outliers(debugger, exclude=()) -> list[str]:
    """Output tensor names of the int8 weighted ops (conv, depthwise, fully connected) whose error RMS exceeds
    MAX_ERROR_STEPS of their output scale, read from the quantization debugger's per-layer statistics on its debug
    data, worst first, at most MAX_OUTLIER_FRACTION of them beside the ``exclude``d (kept float already); named
    as the denylist takes them."""
    debugger.run()
    schema, model, names = _load_fb_bytes(debugger.quant_model)
    weighted = {int(op.outputs[0]) for op in model.subgraphs[0].operators if _kind(model, names, op) in _WEIGHTED}
    out = {}
    for name, m in debugger.layer_statistics.items():
        op = debugger._numeric_verify_op_details[name]
        if int(op["inputs"][0]) not in weighted:  # an op without weights errs by its activations' rounding alone
            continue
        q = debugger._quant_interpreter._get_tensor_details(op["inputs"][0], subgraph_index=0)
        scales = q["quantization_parameters"]["scales"]
        if len(scales) and scales[0] > 0:
            out[debugger._get_operand_name_and_index(name)[0]] = float(np.sqrt(m["mean_squared_error"]) / scales[0])
    return pick_outliers(out, exclude, rename=lambda worst: float_node_names(debugger, worst))


def float_node_names(debugger, names: list[str]) -> list[str]:
    """The denylist's names for output tensors read off a quantized model: the converter's node names are the
    float (calibrated) model's, and quantizing renames a tensor whose float name another op took over (a model
    output's DEQUANTIZE keeps "StatefulPartitionedCall_1:0", the int8 FULLY_CONNECTED before it becomes
    "...:01"; a BatchNorm'd conv's "batchnorm/sub" becomes "batchnorm/sub1"). Unmapped, the name matches no
    node and the layer silently stays int8: the float-sensitive rung kept no classifier head float that way."""
    from ai_edge_litert.interpreter import Interpreter

    known = {t["name"] for t in Interpreter(model_content=debugger.calibrated_model).get_tensor_details()}
    out = []
    for n in names:
        # (the debug model's names add one more "1")
        n = next((c for c in (n, n[:-1], n[:-2]) if c in known and set(n[len(c):]) <= {"1"}), n)
        if n not in out:
            out.append(n)
    return out


# Weight-only int8 for the layers a rung kept float: TFLite's hybrid kernels take float activations and int8
# weights with a scale per output channel (what dynamic-range quantization makes), so a float op's weight
# tensor can be stored int8 in place. (output-channel axis of the weight)
_HYBRID_AXIS = {"FULLY_CONNECTED": 0, "CONV_2D": 0}


def _load_fb(path: Path):
    return _load_fb_bytes(Path(path).read_bytes())


def _float_weighted_ops(schema, model, names):
    """(op output tensor name, op name, weight tensor) of subgraph 0's weighted ops whose input and constant
    weight are float32."""
    g = model.subgraphs[0]
    for op in g.operators:
        kind = _kind(model, names, op)
        if kind not in _HYBRID_AXIS or len(op.inputs) < 2:
            continue
        x, w = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]]
        buf = model.buffers[w.buffer].data if w.buffer < len(model.buffers) else None
        if (x.type == schema.TensorType.FLOAT32 and w.type == schema.TensorType.FLOAT32 and buf is not None
                and len(buf) >= 4 * 256):
            yield g.tensors[op.outputs[0]].name.decode(), kind, w


def tflite_float_weighted(path: Path) -> list[tuple[str, int]]:
    """The float FULLY_CONNECTED and CONV_2D ops of a .tflite (a layer a rung kept in float), named by their
    output tensor: (name, weight elements), largest first."""
    schema, model, names = _load_fb(path)
    out = [(n, int(np.prod(w.shape))) for n, _, w in _float_weighted_ops(schema, model, names)]
    return sorted(out, key=lambda t: -t[1])


def tflite_float_weights_int8(path: Path, out_path: Path, nodes: list[str]) -> list[str]:
    """Weight-only int8 for the named float ops of a .tflite: each weight tensor stored as symmetric int8 with a
    scale per output channel, which makes the op a hybrid one (float in and out). Returns the ops done."""
    schema, model, names = _load_fb(path)
    done = []
    for n, kind, w in list(_float_weighted_ops(schema, model, names)):
        if n not in nodes:
            continue
        buf = model.buffers[w.buffer]
        a = np.frombuffer(np.asarray(buf.data, dtype=np.uint8).tobytes(), dtype=np.float32).reshape(list(w.shape))
        axis = _HYBRID_AXIS[kind]
        q, scale = symmetric_int8(a, axis)
        buf.data = np.frombuffer(q.tobytes(), dtype=np.uint8)
        w.type = schema.TensorType.INT8
        qp = schema.QuantizationParametersT()
        qp.scale, qp.zeroPoint, qp.quantizedDimension = scale.tolist(), [0] * len(scale), axis
        w.quantization = qp
        done.append(n)
    if not done:
        return []
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_bytes(_pack(model))
    return done


# Bias correction (the ladder's "bias-correction" rung, TFLite only: NNCF applies its own in ONNX and OpenVINO).
# Rounding a layer's weights and activations to int8 shifts the mean of its outputs per channel, and the
# converter leaves that shift in place for every later layer to inherit. The debugger's model runs each int8 op
# beside its float twin on the same (dequantized int8) input, so the difference of their outputs is that layer's
# own error; its mean per output channel over the calibration data comes off the int32 bias. After the ReLU6 a
# layer fuses, as the next layer sees it: on EfficientNet-Lite0 (ImageNet head, 1,000 photo crops) this took
# agreement with float from 0.838 to 0.877 (one pass) and 0.884 (two), where the same shift computed analytically
# before the activation (weight rounding error times the mean input patch) gained nothing.
BIAS_PASSES, BIAS_SAMPLES = 2, 100


def _weighted_ops(schema, model, names):
    """(kind, operator) of subgraph 0's conv, depthwise and fully connected ops with an int32 bias, in order."""
    g = model.subgraphs[0]
    for op in g.operators:
        kind = _kind(model, names, op)
        if (kind in _WEIGHTED and len(op.inputs) > 2 and op.inputs[2] >= 0
                and g.tensors[op.inputs[2]].type == schema.TensorType.INT32):
            yield kind, op


def _own_buffers(schema, model, tensors) -> None:
    """Give each of ``tensors`` a buffer of its own: the converter shares one between equal constants (two
    all-zero biases), and correcting one must not move the other."""
    uses: dict = {}
    for t in model.subgraphs[0].tensors:
        uses[t.buffer] = uses.get(t.buffer, 0) + 1
    for t in tensors:
        if uses[t.buffer] > 1:
            uses[t.buffer] -= 1
            b = schema.BufferT()
            b.data = np.array(model.buffers[t.buffer].data, dtype=np.uint8)
            model.buffers.append(b)
            t.buffer = len(model.buffers) - 1


def _pack(model) -> bytes:
    import flatbuffers

    fb = flatbuffers.Builder(1024)
    fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
    return bytes(fb.Output())


def bias_correct(debugger, calib: np.ndarray, passes: int = BIAS_PASSES, samples: int = BIAS_SAMPLES) -> tuple[bytes, int]:
    """The debugger's int8 model with each int8 weighted op's bias corrected for its mean output error against
    the float op, measured on up to ``samples`` of ``calib``; each pass measures again on the model the last one
    corrected. Returns (model bytes, ops corrected)."""
    from ai_edge_litert.interpreter import Interpreter

    schema, qm, names = _load_fb_bytes(debugger.get_nondebug_quantized_model())
    _, dm, _ = _load_fb_bytes(debugger.quant_model)  # the debug model the debugger made already
    qg, dg = qm.subgraphs[0], dm.subgraphs[0]
    # The debug model names an op's output as the plain model does, or with a "1" after it.
    qbias = {qg.tensors[op.outputs[0]].name.decode(): qg.tensors[op.inputs[2]] for _, op in _weighted_ops(schema, qm, names)}
    dbias = {int(op.outputs[0]): dg.tensors[op.inputs[2]] for _, op in _weighted_ops(schema, dm, names)}
    for model, biases in ((qm, qbias.values()), (dm, dbias.values())):
        _own_buffers(schema, model, biases)
    n, done = min(len(calib), samples), set()
    for _ in range(passes):
        interp = Interpreter(model_content=_pack(dm), experimental_preserve_all_tensors=True)
        interp.allocate_tensors()
        tensors = {d["index"]: d for d in interp.get_tensor_details()}
        pairs = [(int(o["inputs"][0]), int(o["inputs"][1])) for o in interp._get_ops_details()
                 if o["op_name"] == "NumericVerify" and int(o["inputs"][0]) in dbias]
        inp = interp.get_input_details()[0]
        sums = {q: 0.0 for q, _ in pairs}
        for s in range(n):
            x = np.asarray(calib[s:s + 1], dtype=np.float32)
            if inp["dtype"] != np.float32:  # --int8-io
                sc, zp = inp["quantization"]
                x = np.clip(np.round(x / sc + zp), -128, 127)
            interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
            interp.invoke()
            for q, f in pairs:
                sc, zp = tensors[q]["quantization"]
                d = (interp.get_tensor(q).astype(np.float64) - zp) * sc - interp.get_tensor(f)
                sums[q] = sums[q] + d.reshape(-1, d.shape[-1]).mean(0)
        for q, total in sums.items():
            name = tensors[q]["name"]
            qt = qbias.get(name, qbias.get(name[:-1]))
            if qt is None:
                continue
            for model, t in ((dm, dbias[q]), (qm, qt)):
                b = np.frombuffer(np.asarray(model.buffers[t.buffer].data, np.uint8).tobytes(), np.int32)
                bs = np.broadcast_to(np.asarray(t.quantization.scale, np.float64), b.shape)
                step = np.divide(total / n, bs, out=np.zeros(b.shape), where=bs > 0)  # a collapsed range: none
                new = np.clip(np.round(b - np.nan_to_num(step)), -2**31, 2**31 - 1).astype(np.int32)
                model.buffers[t.buffer].data = np.frombuffer(new.tobytes(), np.uint8)
            done.add(name)
    return _pack(qm), len(done)


def _kind(model, names, op) -> str | None:
    code = model.operatorCodes[op.opcodeIndex]
    return names.get(max(code.builtinCode, code.deprecatedBuiltinCode))


def _load_fb_bytes(data: bytes):
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return schema, model, names
