"""int8 post-training quantization for the three formats, calibrated on training data.

* TFLite: full-integer PTQ (``TFLITE_BUILTINS_INT8``, representative dataset), int8 input/output on
  request. Keeping sensitive layers float goes through TFLite's QuantizationDebugger (selective
  quantization); QAT is the last remedy (:mod:`edgekit.compress.qat`).
* ONNX: static QDQ with ``onnxruntime.quantization`` after ``quant_pre_process``. The activation type
  and ``reduce_range`` follow the target CPU: x86 without VNNI saturates in ORT's u8s8 kernels
  (signed activations lost 35 points on such a CPU), so there activations are unsigned with
  ``reduce_range``; with VNNI, and on ARM, plain signed int8 holds.
* OpenVINO: NNCF PTQ on the converted model, ``model_type=TRANSFORMER`` when the model has attention,
  audio front-end ops (DFT, RDFT) ignored when one is in the graph.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ConfigError, DataError, MissingDependencyError, ModelError, allowed, first_line

PRECISIONS = ("int8",)
ACTIVATION_TYPES = ("auto", "int8", "uint8")
FRONTEND_OV_TYPES = ["DFT", "RDFT", "IDFT", "IRDFT"]


@dataclass
class QuantizeConfig:
    precision: str = "int8"
    calibration_samples: int = 200
    # Per-tensor first: one scale per weight tensor keeps the file smallest (TFLite stores a float scale
    # and an int64 zero point per channel); per-channel is the gate's second remedy.
    per_channel: bool = False
    int8_io: bool = False  # TFLite: int8 input and output tensors (scale/zero point in the file)
    activation_type: str = "auto"  # ONNX: auto picks by target CPU (see module doc)
    reduce_range: bool | None = None  # ONNX: None = auto
    keep_float: list = field(default_factory=list)  # layer/node names left in float ("sensitive" layers)
    float_sensitive: bool = False  # keep the first and last weighted layers float
    target_arch: str | None = None  # None = this machine
    seed: int = 0

    def validate(self) -> "QuantizeConfig":
        if self.precision not in PRECISIONS:
            raise ConfigError(allowed(self.precision, PRECISIONS, "quantization precision"))
        if self.activation_type not in ACTIVATION_TYPES:
            raise ConfigError(allowed(self.activation_type, ACTIVATION_TYPES, "ONNX activation type"))
        if self.calibration_samples < 1:
            raise ConfigError(f"calibration_samples must be >= 1; received {self.calibration_samples}")
        return self


# --- the target CPU --------------------------------------------------------------------------------
def cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_int8_dot(arch: str | None = None) -> bool:
    """Whether the target CPU has int8 dot-product instructions (x86 VNNI/AMX, ARM dotprod)."""
    here = platform.machine().lower()
    arch = (arch or here).lower()
    if arch in ("aarch64", "arm64"):
        return True  # ORT's ARM kernels take s8 activations natively; saturation is an x86 u8s8 issue
    if arch != here and arch not in ("x86_64", "amd64"):
        return False
    flags = cpu_flags() if arch in (here, "x86_64", "amd64") and here in ("x86_64", "amd64") else set()
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def ort_activation_settings(cfg: QuantizeConfig) -> dict:
    """``activation_type`` and ``reduce_range`` for ORT static quantization on the target CPU."""
    arch = (cfg.target_arch or platform.machine()).lower()
    is_arm = arch in ("aarch64", "arm64")
    dot = has_int8_dot(cfg.target_arch)
    act = cfg.activation_type
    if act == "auto":
        act = "int8" if (is_arm or dot) else "uint8"
    rr = cfg.reduce_range if cfg.reduce_range is not None else (not is_arm and not dot)
    why = ("ARM: signed int8 activations" if is_arm else
           "x86 with VNNI: signed int8 activations" if dot else
           "x86 without VNNI: unsigned activations with reduce_range (signed ones saturate)")
    return {"activation_type": act, "reduce_range": bool(rr), "reason": why}


# --- calibration -------------------------------------------------------------------------------------
def calibration_set(ds, n: int, seed: int = 0, data: np.ndarray | None = None) -> np.ndarray:
    """``n`` examples of the training split (random, fixed by ``seed``), or the user's own array."""
    if data is not None:
        x = np.asarray(data)
    else:
        x = ds.split("train")[0]
    if len(x) > n:
        x = x[np.sort(np.random.default_rng(seed).permutation(len(x))[:n])]
    return np.ascontiguousarray(x, dtype=np.float32) if x.dtype.kind == "f" else x


def check_calibration(x: np.ndarray, input_shape: tuple, what: str = "Calibration data") -> None:
    got = tuple(np.asarray(x).shape[1:])
    if np.asarray(x).ndim < 1 or len(x) == 0:
        raise DataError(f"{what} is empty; it needs examples of shape {input_shape}")
    if got != tuple(input_shape):
        raise DataError(f"{what} has examples of shape {got}, but the model takes {tuple(input_shape)}")


# --- TFLite -----------------------------------------------------------------------------------------
def _has_attention(model) -> bool:
    import keras

    from .prune import _leaf_layers

    return any(isinstance(l, keras.layers.MultiHeadAttention) for l in _leaf_layers(model))


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


# --- ONNX --------------------------------------------------------------------------------------------
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


def onnx_sensitive_nodes(model_path: Path) -> list[str]:
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)
    weighted = [n.name for n in m.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    return list(dict.fromkeys([weighted[0], weighted[-1]])) if weighted else []


def quantize_onnx(float_path: Path, out_path: Path, cfg: QuantizeConfig, calib: np.ndarray, *,
                  transformer: bool = False) -> dict:
    """Static QDQ int8 of a float .onnx into ``out_path``; returns the settings used."""
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
        keep = list(cfg.keep_float) or (onnx_sensitive_nodes(pre) if cfg.float_sensitive else [])
        qt = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
        quantize_static(str(pre), str(out_path), _Reader(in_name, calib), quant_format=QuantFormat.QDQ,
                        per_channel=cfg.per_channel, reduce_range=act["reduce_range"],
                        activation_type=qt[act["activation_type"]], weight_type=QuantType.QInt8,
                        nodes_to_exclude=keep or None, calibrate_method=CalibrationMethod.MinMax)
    except (ModelError, DataError):
        raise
    except Exception as e:
        msg = first_line(e)
        raise ModelError(f"ONNX Runtime could not quantize {float_path}: {msg[:300]}") from None
    finally:
        pre.unlink(missing_ok=True)
        for extra in out_path.parent.glob(out_path.stem + ".pre*"):
            extra.unlink(missing_ok=True)
    compact_onnx_names(out_path)
    return {"scheme": "QDQ static", "preprocess": pre_note, "names": "compacted",
            "activation_type": act["activation_type"], "reduce_range": act["reduce_range"], "why": act["reason"], "per_channel": cfg.per_channel,
            "kept_float": keep}


def compact_onnx_names(path: Path) -> None:
    """Rename internal tensors and nodes to short ids (graph inputs/outputs keep theirs).

    tf2onnx names every tensor after its TensorFlow scope, and QDQ adds four more names per weight:
    on a small model the names outweigh the int8 weights.
    """
    import onnx

    m = onnx.load(str(path))
    g = m.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
        return  # control flow subgraphs refer to outer names; leave such models as they are
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
    for i, node in enumerate(g.node):
        node.name = f"n{i}"
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
    for vi in g.value_info:
        vi.name = short(vi.name)
    onnx.save(m, str(path))


# --- OpenVINO ----------------------------------------------------------------------------------------
def openvino_transform(cfg: QuantizeConfig, calib: np.ndarray, *, transformer: bool, record: dict) -> Callable:
    """A ``transform(ov_model)`` hook for the OpenVINO exporter that runs NNCF PTQ."""

    def transform(ov_model):
        try:
            import nncf
        except ImportError:
            raise MissingDependencyError("nncf", "train", what="OpenVINO int8 quantization") from None
        types = sorted({op.get_type_name() for op in ov_model.get_ops()})
        ignored_types = [t for t in FRONTEND_OV_TYPES if t in types]
        names = list(cfg.keep_float)
        if cfg.float_sensitive and not names:
            weighted = [op.get_friendly_name() for op in ov_model.get_ordered_ops()
                        if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul")]
            names = list(dict.fromkeys([weighted[0], weighted[-1]])) if weighted else []
        scope = nncf.IgnoredScope(types=ignored_types, names=names, validate=False) if (ignored_types or names) \
            else None
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
                       "ignored_types": ignored_types, "kept_float": names, "per_channel": cfg.per_channel})
        return q

    return transform


# --- integer weights, measured -----------------------------------------------------------------------
def weight_dtypes(path: Path) -> dict:
    """Counts of weight tensors by dtype in an artifact (what 'int8 weights' means, measured)."""
    from .measure import constant_tensors

    out: dict[str, int] = {}
    for a in constant_tensors(path):
        # Kernels only: per-channel scales and ranges (OpenVINO's FakeQuantize limits) stay float.
        if a.ndim >= 2 and a.size >= 256:
            out[str(a.dtype)] = out.get(str(a.dtype), 0) + 1
    return out


def int8_meta(base, cfg: QuantizeConfig, details: dict, calib_n: int):
    q = {"precision": "int8", "calibration": {"samples": int(calib_n), "split": "train"}, **details}
    return base.copy(quantization=q)


def with_remedy(cfg: QuantizeConfig, remedy: str, train_size: int) -> QuantizeConfig | None:
    """The config for one remedy on top of ``cfg``, or None when it would change nothing."""
    if remedy == "more-calibration":
        n = min(train_size, max(cfg.calibration_samples * 4, 1000))
        return replace(cfg, calibration_samples=n) if n > cfg.calibration_samples else None
    if remedy == "per-channel":
        return replace(cfg, per_channel=True) if not cfg.per_channel else None
    if remedy == "float-sensitive":
        return replace(cfg, float_sensitive=True) if not (cfg.float_sensitive or cfg.keep_float) else None
    raise ConfigError(allowed(remedy, REMEDIES, "remedy"))


REMEDIES = ("more-calibration", "per-channel", "float-sensitive", "qat")
