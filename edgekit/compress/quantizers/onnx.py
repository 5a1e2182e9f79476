"""ONNX: int8 is static QDQ with ``onnxruntime.quantization`` after ``quant_pre_process``, the activation type
and ``reduce_range`` following the target CPU (``quantize.ort_activation_settings``), or, on the ladder's "nncf"
rung, QDQ by NNCF's post-training quantization (``quantize_onnx_nncf``); int16x8 the same QDQ with
int16 activations (opset 21 Q/DQ); fp16 is ``onnxruntime.transformers.float16`` with float32 I/O kept;
int8-weights is ``quantize_dynamic`` (int8 weights, activations quantized at run time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...artifact import read_meta, write_meta
from ...errors import DataError, MissingDependencyError, ModelError, first_line
from ...passes import QuantizeConfig
from ..quantize import (SENSITIVE_ONNX_OPS, ErrorSums, int8_rounded, ort_activation_settings, probe_picks, quant_meta,
                        symmetric_int8)


def quantize(source, job) -> Path:
    """The ``job.precision`` ``.onnx`` under ``job.stage``, from the float ONNX (``source.float_artifact``; exported
    from ``source.model`` first when there is none, e.g. QAT weights). With ``job.control``: NNCF's accuracy
    control."""
    from ...export import export_model
    from ...export.onnx import ONNXExporter

    cfg, calib, precision, say = job.config, job.calibration, job.precision, job.progress
    float_artifact = source.float_artifact
    if float_artifact is None:
        res = export_model(source.model, ["onnx"], job.stage / "float", name=job.name, meta=job.meta, progress=say)
        float_artifact = res.artifacts["onnx"]
    out = job.out(".onnx")
    if job.control is not None:
        from .accuracy_control import accuracy_control

        return accuracy_control("onnx", Path(float_artifact), out, job, lambda path, _m: onnx_sensitive_nodes(path))
    say(f"quantizing onnx ({precision}{', NNCF' if precision == 'int8' and job.engine == 'nncf' else ''}) ...")
    if precision == "int8" and job.engine == "nncf":
        details = quantize_onnx_nncf(float_artifact, out, cfg, calib, transformer=source.transformer)
    elif precision in ("int8", "int16x8"):
        details = quantize_onnx(float_artifact, out, cfg, calib, transformer=source.transformer, precision=precision)
    elif precision == "fp16":
        details = onnx_fp16(float_artifact, out)
    else:
        details = onnx_weights_int8(float_artifact, out, cfg)
    m = quant_meta(read_meta(float_artifact) or job.meta, precision, details,
                   len(calib) if precision in ("int8", "int16x8") else None)
    m.verification = {}
    ONNXExporter().embed_metadata(out, m)
    write_meta(out, m)
    return out


class _Reader:
    def __init__(self, name: str, x: np.ndarray):
        self.name, self.x, self.i = name, x, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {self.name: self.x[self.i - 1:self.i]}

    def rewind(self):
        self.i = 0


_WEIGHTED = ("Conv", "MatMul", "Gemm")


def onnx_sensitive_nodes(model_path: Path) -> list[str]:
    import onnx

    from ..quantize import first_and_heads

    m = onnx.load(str(model_path), load_external_data=False)
    readers: dict = {}
    for n in m.graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n.name)
    succ = {n.name: [r for t in n.output for r in readers.get(t, ())] for n in m.graph.node}
    return first_and_heads([n.name for n in m.graph.node], {n.name for n in m.graph.node if n.op_type in _WEIGHTED},
                           succ)


def onnx_front_nodes(model_path: Path) -> list[str]:
    """Every node before the first weighted one, and that one, when the graph normalizes its input features
    (``quantize.FLOAT_NAME_PATTERNS``); else none. On the demo's pruned ds_cnn_s models they cost ONNX int8
    up to 0.8 points quantized."""
    import onnx

    from ..quantize import names_normalize_features

    m = onnx.load(str(model_path), load_external_data=False)
    if not names_normalize_features(n.name for n in m.graph.node):
        return []
    front = []
    for n in m.graph.node:
        front.append(n.name)
        if n.op_type in _WEIGHTED:
            return front
    return []


def onnx_mixed_nodes(model_path: Path) -> list[str]:
    """Mixed precision: every node of a sensitive kind, and the first and last weighted nodes."""
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)
    weights = {t.name for t in m.graph.initializer}
    # Attention's activation x activation MatMuls too; MatMuls with a weight input stay int8.
    act_matmuls = [n.name for n in m.graph.node if n.op_type == "MatMul" and not (set(n.input) & weights)]
    return list(dict.fromkeys([n.name for n in m.graph.node if n.op_type in SENSITIVE_ONNX_OPS] + act_matmuls
                              + onnx_sensitive_nodes(model_path)))


def onnx_error_outliers(make_probe, float_path: Path, calib: np.ndarray, exclude: list[str],
                        near: Path) -> tuple[list[str], list[str]]:
    """The float-sensitive rung's error outliers of an ONNX model, and the kept nodes whose weights must stay float
    (``quantize.probe_picks``): ``make_probe(path)`` quantizes it as the rung would without them (node names as in
    ``float_path``), :func:`onnx_layer_errors` measures each weighted node against its float twin, and the probe
    is deleted (it sits beside ``near``)."""
    from ..quantize import ERROR_SAMPLES

    probe = Path(near).with_name(Path(near).stem + ".probe.onnx")
    try:
        make_probe(probe)
        return probe_picks(onnx_layer_errors(probe, float_path, calib[:ERROR_SAMPLES]), exclude)
    finally:
        probe.unlink(missing_ok=True)


# Ops between a weighted node and the quantizer of its output that the float twin repeats: one activation input,
# or a constant second operand (a bias Add, a scale Mul).
_TWIN_UNARY = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh")
_TWIN_BINARY = ("Add", "Mul", "Sub", "Div")


def onnx_layer_errors(q_path: Path, float_path: Path, x: np.ndarray) -> dict[str, tuple[float, float]]:
    """int8 error of each weighted node (Conv, MatMul, Gemm) of the QDQ model ``q_path`` in its own output steps:
    the RMS over ``x`` of (its dequantized int8 output - a float twin's), the twin being the same node with the
    float model's weight on the same dequantized int8 input and bias, followed by the same activation, and the step
    the scale of the output's QuantizeLinear (where the output is not quantized: its range / 255). Beside it, the noise
    of its weights alone stored int8 (symmetric, per output channel, as the weight-only step stores a float
    layer's): the RMS of the node's raw output with those weights against the twin's, over the RMS of the twin's
    output (after the activation). Nodes are matched to the float model (``float_path``) by name; one run of ONNX
    Runtime per example, graph optimizations off, so what is compared is what the QDQ graph says. Returns
    {node: (int8 error, weight-only noise)} (``quantize.ErrorSums``)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    q, f = onnx.load(str(q_path)), onnx.load(str(float_path))
    f_init = {t.name: t for t in f.graph.initializer}
    f_nodes = {n.name: n for n in f.graph.node}
    q_init = {t.name: t for t in q.graph.initializer}
    consts = set(q_init) | {o for n in q.graph.node if n.op_type == "Constant" for o in n.output}
    readers: dict = {}
    for n in q.graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    twins, probes, weights, extra, weight_probes = [], [], set(), [], []
    for n in list(q.graph.node):
        fn = f_nodes.get(n.name)
        if n.op_type not in _WEIGHTED or fn is None or len(fn.input) < 2 or fn.input[1] not in f_init:
            continue
        weights.add(fn.input[1])
        tw = helper.make_node(n.op_type, [n.input[0], fn.input[1] + "::float", *n.input[2:]], [n.output[0] + "::twin"],
                              name=n.name + "::twin")
        tw.attribute.extend(n.attribute)
        twins.append(tw)
        axis = _weight_axis(n)
        if axis is not None and f_init[fn.input[1]].data_type == onnx.TensorProto.FLOAT:
            w = numpy_helper.to_array(f_init[fn.input[1]])
            extra.append(numpy_helper.from_array(int8_rounded(w, axis), n.name + "::w8"))
            w8 = helper.make_node(n.op_type, [n.input[0], n.name + "::w8", *n.input[2:]], [n.output[0] + "::w8"],
                                  name=n.name + "::w8")
            w8.attribute.extend(n.attribute)
            twins.append(w8)
            weight_probes.append((len(probes), w8.output[0], tw.output[0]))
        cur, twin, step = n.output[0], tw.output[0], None
        while len(readers.get(cur, ())) == 1:
            r = readers[cur][0]
            if r.op_type == "QuantizeLinear":
                dq = readers.get(r.output[0], ())
                if len(dq) != 1 or dq[0].op_type != "DequantizeLinear" or r.input[1] not in q_init:
                    break
                step, cur = float(numpy_helper.to_array(q_init[r.input[1]]).ravel()[0]), dq[0].output[0]
                # A Relu/Clip ONNX Runtime kept after the quantizer (QDQKeepRemovableActivations; that quantizer
                # already has the activation's range) goes on the twin too, and its quantized output is compared.
                if len(readers.get(cur, ())) == 1 and readers[cur][0].op_type in _TWIN_UNARY:
                    continue
                break
            if not (r.op_type in _TWIN_UNARY or (r.op_type in _TWIN_BINARY and all(t == cur or t in consts
                                                                                   for t in r.input))):
                break
            c = helper.make_node(r.op_type, [twin if t == cur else t for t in r.input], [r.output[0] + "::twin"],
                                 name=r.name + "::twin")
            c.attribute.extend(r.attribute)
            twins.append(c)
            cur, twin = r.output[0], c.output[0]
        probes.append((n.name, cur, twin, step))
    if not probes:
        return {}
    for w in weights:
        t = onnx.TensorProto()
        t.CopyFrom(f_init[w])
        t.name = w + "::float"
        q.graph.initializer.append(t)
    q.graph.initializer.extend(extra)
    q.graph.node.extend(twins)
    have = {o.name for o in q.graph.output}
    for t in dict.fromkeys([t for p in probes for t in p[1:3]] + [t for p in weight_probes for t in p[1:]]):
        if t not in have:
            q.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(q.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    acc = ErrorSums(len(probes))
    for i in range(len(x)):
        v = dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x[i:i + 1]})))
        for j, (_, a, b, _s) in enumerate(probes):
            acc.add(j, v[a], v[b])
        for j, a, b in weight_probes:
            acc.add_weights(j, v[a], v[b])
    return acc.steps([p[0] for p in probes], [p[3] for p in probes])


def _guard(float_path: Path, fn):
    try:
        return fn()
    except (ModelError, DataError):
        raise
    except Exception as e:
        raise ModelError(f"ONNX Runtime could not quantize {float_path}: {first_line(e)[:300]}") from None


def onnx_fp16(float_path: Path, out_path: Path) -> dict:
    """float16 weights and compute, float32 inputs and outputs (callers are unchanged)."""
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as e:
        raise MissingDependencyError(e.name or "onnxruntime", "onnx", what="ONNX float16 conversion") from None

    def run():
        m = convert_float_to_float16(onnx.load(str(float_path)), keep_io_types=True)
        onnx.save(m, str(out_path))

    _guard(float_path, run)
    compact_onnx_names(out_path)
    return {"scheme": "float16 (onnxruntime.transformers.float16)", "io_dtype": "float32", "names": "compacted"}


def onnx_weights_int8(float_path: Path, out_path: Path, cfg: QuantizeConfig) -> dict:
    """Dynamic quantization: int8 weights stored, activations quantized per run (no calibration)."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise MissingDependencyError(e.name or "onnxruntime", "onnx", what="ONNX int8 quantization") from None
    _guard(float_path, lambda: quantize_dynamic(str(float_path), str(out_path), per_channel=cfg.per_channel,
                                                weight_type=QuantType.QInt8,
                                                nodes_to_exclude=list(cfg.keep_float) or None))
    compact_onnx_names(out_path)
    return {"scheme": "dynamic int8 weights (quantize_dynamic)", "per_channel": cfg.per_channel,
            "kept_float": list(cfg.keep_float), "names": "compacted"}


def quantize_onnx(float_path: Path, out_path: Path, cfg: QuantizeConfig, calib: np.ndarray, *,
                  transformer: bool = False, precision: str = "int8") -> dict:
    """Static QDQ (int8, or int16 activations with int8 weights) of a float .onnx into ``out_path``;
    returns the settings used."""
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise MissingDependencyError(e.name or "onnxruntime", "onnx", what="ONNX int8 quantization") from None
    out_path = Path(out_path)
    pre = out_path.with_name(out_path.stem + ".pre.onnx")
    pre_note = "quant_pre_process"
    try:
        try:
            quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=transformer)
        except Exception:
            # Symbolic shape inference gives up on some graphs; the ONNX shape pass alone still helps.
            quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
            pre_note = "quant_pre_process (no symbolic shapes)"
        m = onnx.load(str(pre))
        in_name = m.graph.input[0].name
        act = ort_activation_settings(cfg)
        if precision == "int16x8":
            # 16-bit activations don't saturate the u8s8 kernels; reduce_range would only cost weight bits.
            act = {"activation_type": "int16", "reduce_range": False, "reason": "int16 activations (16x8)"}
        keep = list(cfg.keep_float) or (onnx_mixed_nodes(pre) if cfg.mixed_precision else
                                        onnx_sensitive_nodes(pre) if cfg.float_sensitive else [])
        if precision == "int8" and not cfg.keep_float:
            keep = list(dict.fromkeys(onnx_front_nodes(pre) + keep))
        qt = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8, "int16": QuantType.QInt16}

        def run(keep: list[str], dest: Path, extra: dict | None = None) -> None:
            quantize_static(str(pre), str(dest), _Reader(in_name, calib), quant_format=QuantFormat.QDQ,
                            per_channel=cfg.per_channel, reduce_range=act["reduce_range"],
                            activation_type=qt[act["activation_type"]], weight_type=QuantType.QInt8,
                            nodes_to_exclude=keep or None, calibrate_method=CalibrationMethod.MinMax,
                            extra_options=extra)

        outliers, float_weights = [], []
        if precision == "int8" and (cfg.float_sensitive or cfg.mixed_precision) and not cfg.keep_float:
            # (the probe keeps the Relu/Clip that QDQ would fold into the output's range: its float twin applies it)
            outliers, float_weights = onnx_error_outliers(
                lambda dest: run(keep, dest, {"QDQKeepRemovableActivations": True}), pre, calib, keep, out_path)
            keep += outliers
        run(keep, out_path)
    except (ModelError, DataError):
        raise
    except Exception as e:
        msg = first_line(e)
        raise ModelError(f"ONNX Runtime could not quantize {float_path}: {msg[:300]}") from None
    finally:
        pre.unlink(missing_ok=True)
        for extra in out_path.parent.glob(out_path.stem + ".pre*"):
            extra.unlink(missing_ok=True)
    renamed = compact_onnx_names(out_path)
    return {"scheme": "QDQ static", "preprocess": pre_note, "names": "compacted",
            "activation_type": act["activation_type"], "reduce_range": act["reduce_range"], "why": act["reason"], "per_channel": cfg.per_channel,
            "kept_float": keep, "error_outliers": outliers,
            "float_weights": [renamed.get(n, n) for n in float_weights]}


def quantize_onnx_nncf(float_path: Path, out_path: Path, cfg: QuantizeConfig, calib: np.ndarray, *,
                       transformer: bool = False) -> dict:
    """int8 QDQ by NNCF's post-training quantization (the ladder's "nncf" rung, passes.REMEDIES says why):
    per-channel symmetric weights, quantizers placed by OpenVINO's fused patterns, and NNCF's full bias
    correction, not its default fast one: on the 8x8 digits ds_cnn_s (64 calibration images, 359 test images)
    the fast one lost 3.6 points of top-1 (0.905 -> 0.869) where the full one lost none (0.908), for 4.3 s
    against 2.4 s on EfficientNet-Lite0 at 224 px (64 images, 2 cores). The
    nodes the config keeps float (--keep-float, float-sensitive, a feature-normalizing front) are its ignored
    scope; returns the settings used."""
    try:
        import nncf
        import onnx
    except ImportError as e:
        raise MissingDependencyError(e.name or "nncf", "onnx", what="ONNX int8 quantization with NNCF") from None
    out_path = Path(out_path)
    m = onnx.load(str(float_path))
    in_name = m.graph.input[0].name
    keep = list(cfg.keep_float) or (onnx_mixed_nodes(float_path) if cfg.mixed_precision else
                                    onnx_sensitive_nodes(float_path) if cfg.float_sensitive else [])
    if not cfg.keep_float:
        keep = list(dict.fromkeys(onnx_front_nodes(float_path) + keep))
    data = nncf.Dataset([{in_name: calib[i:i + 1]} for i in range(len(calib))])
    bias = ["full"]

    def run(keep: list[str], dest: Path) -> None:
        bias[0] = "full"
        kw = {"ignored_scope": nncf.IgnoredScope(names=keep, validate=False)}
        if transformer:
            kw["model_type"] = nncf.ModelType.TRANSFORMER
        try:
            q = nncf.quantize(onnx.load(str(float_path)), data, subset_size=len(calib), fast_bias_correction=False,
                              **kw)
        except (ModelError, DataError):
            raise
        except Exception as e:
            # The full correction builds and runs subgraphs of the model, which fails on some graphs (the
            # CenterNet detector: "Duplicate definition-site for ...head_relu_1/Relu6:0"); the fast one doesn't.
            bias[0] = f"fast (the full one failed: {first_line(e)[:200]})"
            q = nncf.quantize(onnx.load(str(float_path)), data, subset_size=len(calib), **kw)
        onnx.save(q, str(dest))

    outliers, float_weights = [], []
    try:
        if (cfg.float_sensitive or cfg.mixed_precision) and not cfg.keep_float:
            outliers, float_weights = onnx_error_outliers(lambda dest: run(keep, dest), float_path, calib, keep,
                                                          out_path)
            keep += outliers
        run(keep, out_path)
    except (ModelError, DataError):
        raise
    except Exception as e:
        raise ModelError(f"NNCF could not quantize {float_path}: {first_line(e)[:300]}") from None
    renamed = compact_onnx_names(out_path)
    return {"scheme": "QDQ static, NNCF PTQ (bias correction)", "names": "compacted", "per_channel": True,
            "kept_float": keep, "error_outliers": outliers,
            "float_weights": [renamed.get(n, n) for n in float_weights], "bias_correction": bias[0]}


def compact_onnx_names(path: Path) -> dict[str, str]:
    """Rename internal tensors and nodes to short ids (graph inputs/outputs keep theirs); returns the nodes' new
    names by their old ones (empty where the names stay).

    tf2onnx names every tensor after its TensorFlow scope, and QDQ adds four more names per weight:
    on a small model the names outweigh the int8 weights.
    """
    import onnx

    m = onnx.load(str(path))
    g = m.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
        return {}  # control flow subgraphs refer to outer names; leave such models as they are
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    names: dict[str, str] = {}

    def short(n: str) -> str:
        if not n or n in keep:
            return n
        if n not in names:
            names[n] = f"t{len(names)}"
        return names[n]

    for t in g.initializer:
        t.name = short(t.name)
    renamed = {}
    for i, node in enumerate(g.node):
        renamed[node.name] = f"n{i}"
        node.name = f"n{i}"
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
    for vi in g.value_info:
        vi.name = short(vi.name)
    onnx.save(m, str(path))
    return renamed


_WEIGHT_AXIS = {"Conv": 0, "MatMul": 1}  # the output-channel axis of the weight (Gemm: by transB)


def _weight_axis(node) -> int | None:
    if node.op_type == "Gemm":
        return 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
    return _WEIGHT_AXIS.get(node.op_type)


def onnx_float_weighted(path: Path) -> list[tuple[str, int]]:
    """The weighted nodes of an ONNX model whose weight is still a float initializer (a layer a rung kept in
    float): (node name, weight elements), largest first."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    out = []
    for n in m.graph.node:
        if (n.op_type in ("Conv", "MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in inits
                and inits[n.input[1]].data_type == onnx.TensorProto.FLOAT):
            a = numpy_helper.to_array(inits[n.input[1]])
            if a.ndim >= 2 and a.size >= 256:
                out.append((n.name, int(a.size)))
    return sorted(out, key=lambda t: -t[1])


def onnx_float_weights_int8(path: Path, out_path: Path, nodes: list[str]) -> list[str]:
    """Weight-only int8 for the named float layers of a quantized ONNX model: each weight stored as per-channel
    symmetric int8 behind a DequantizeLinear, activations left float (what made the rung keep the layer float
    may be its activations alone: EfficientNet-Lite0's 1280x1000 classifier, measured). Returns the nodes done."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(path))
    if max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0) < 13:
        return []  # per-axis DequantizeLinear is opset 13
    inits = {t.name: t for t in m.graph.initializer}
    users: dict[str, int] = {}
    for n in m.graph.node:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    done, new_nodes = [], []
    for n in m.graph.node:
        if n.name not in nodes or n.input[1] not in inits or users.get(n.input[1], 0) != 1:
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        axis = _weight_axis(n)
        if axis is None or w.dtype != np.float32 or (n.op_type == "MatMul" and w.ndim != 2):
            continue
        q, scale = symmetric_int8(w, axis)
        name = n.input[1]
        m.graph.initializer.remove(inits[name])
        m.graph.initializer.extend([numpy_helper.from_array(q, name + "_w8"),
                                    numpy_helper.from_array(scale, name + "_w8_scale"),
                                    numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), name + "_w8_zp")])
        new_nodes.append(helper.make_node("DequantizeLinear", [name + "_w8", name + "_w8_scale", name + "_w8_zp"],
                                          [name], axis=axis, name=name + "_w8_dq"))
        done.append(n.name)
    if not done:
        return []
    nodes_now = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(new_nodes + nodes_now)  # constants first: the graph stays topologically sorted
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(out_path))
    return done
