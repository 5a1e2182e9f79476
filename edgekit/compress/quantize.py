"""int8 post-training quantization, calibrated on training data: what the formats share (the target CPU,
calibration, remedies, metadata). Each format's quantizer is its own module in ``quantizers/``:

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

import os
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, allowed
from ..passes import REMEDIES, QuantizeConfig

from ..formats import PRECISIONS  # noqa: F401  (the names, for callers of this module)

ACTIVATION_TYPES = ("auto", "int8", "uint8")


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


# A detector's calibration pool: its images are large (192-320 px), so the pool holds what the ladder can ask for
# (200 by default, the more-calibration rung up to this) rather than the whole training split in float32.
DETECTION_CALIBRATION_POOL = 400


def detection_calibration(ds, meta, cfg: QuantizeConfig, pool: int = DETECTION_CALIBRATION_POOL) -> np.ndarray:
    """Calibration images of a detection set's training split: a seeded draw of up to ``max(pool,
    calibration_samples)`` images, resized to the detector's input and scaled as its preprocessing says."""
    pre = meta.preprocessing or {}
    size = int((pre.get("size") or [0])[0])
    recs = ds.splits.get("train") or []
    if not recs:
        raise DataError(f"Detection set {ds.name!r} has no training images to calibrate on")
    n = min(len(recs), max(pool, cfg.calibration_samples))
    keep = np.sort(np.random.default_rng(cfg.seed).permutation(len(recs))[:n])
    from ..data.detection import DetectionSet

    sub = DetectionSet(ds.name, ds.labels, {"train": [recs[i] for i in keep]}, ds.layout)
    x, _ = sub.images("train", size)
    return x.astype(np.float32) * float(pre.get("scale", 1 / 255))  # as DetectorRunner feeds it


def check_calibration(x: np.ndarray, input_shape: tuple, what: str = "Calibration data") -> None:
    got = tuple(np.asarray(x).shape[1:])
    if np.asarray(x).ndim < 1 or len(x) == 0:
        raise DataError(f"{what} is empty; it needs examples of shape {input_shape}")
    if got != tuple(input_shape):
        raise DataError(f"{what} has examples of shape {got}, but the model takes {tuple(input_shape)}")


# --- what every format's quantizer shares ----------------------------------------------------------
def _has_attention(model) -> bool:
    import keras

    from ..compat import _all_layers

    return any(isinstance(l, keras.layers.MultiHeadAttention) for l in _all_layers(model))


# Mixed precision keeps every op float except the weighted layers (conv, dense), whose weights stay int8:
# what LayerNorm decomposes into (mean, variance, reciprocal square root), softmax, the attention's
# activation-by-activation matmuls, the residual and positional adds, GELU, the embedding's gather. On the
# kws-transformer (test top-1 0.883) TFLite int8 lost 9.3 points, with norm/softmax/gather float 2.55, with
# matmul and add too 1.96, with all of these 0.1 (measured, 300 calibration examples).
SENSITIVE_TFLITE_OPS = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "SOFTMAX", "GATHER", "BATCH_MATMUL", "ADD", "GELU",
                        "MUL", "SUB")
SENSITIVE_ONNX_OPS = ("LayerNormalization", "ReduceMean", "Pow", "Sqrt", "Reciprocal", "Softmax", "Gather", "Add",
                      "Mul", "Sub", "Div", "Erf", "Gelu")
SENSITIVE_OV_OPS = ("MVN", "ReduceMean", "Power", "Sqrt", "Softmax", "Gather", "Gelu")

# In-graph feature normalization (zoo.layers.TimeMeanNormalization) and what follows it up to the first
# weighted layer stay float from the first rung on: one per-tensor int8 scale for MFCCs (c0 spans about ten
# times the range of c1..c9) leaves the first layer a few dozen levels for most coefficients.
FLOAT_NAME_PATTERNS = (".*time_mean_norm.*",)


def names_normalize_features(names) -> bool:
    """Whether any of ``names`` (graph node names) is in-graph feature normalization."""
    import re

    return any(re.fullmatch(p, n) for n in names for p in FLOAT_NAME_PATTERNS)


def has_feature_normalization(model) -> bool:
    """Whether ``model`` (Keras) normalizes its input features in-graph (see ``FLOAT_NAME_PATTERNS``); a file
    source (a foreign SavedModel) has no edgekit normalization layers."""
    from ..compat import _all_layers

    if isinstance(model, (str, os.PathLike)):
        return False

    return names_normalize_features(l.name for l in _all_layers(model))


def first_and_heads(order: list, weighted: set, successors: dict) -> list:
    """The float-sensitive nodes of a graph: its first weighted node and its output heads, the weighted nodes from
    which no other weighted node is reachable (``successors``: node -> the nodes reading its outputs), in graph
    order. A chain's head is its last weighted layer (a classifier's dense); a detector has several (CenterNet's
    heatmap, offset and size convs), each as sensitive as a classifier's last layer."""
    picks = [n for n in order if n in weighted][:1]
    for n in order:
        if n not in weighted:
            continue
        seen, stack = set(), list(successors.get(n, ()))
        while stack:
            m = stack.pop()
            if m in weighted:
                break
            if m not in seen:
                seen.add(m)
                stack.extend(successors.get(m, ()))
        else:
            picks.append(n)
    return list(dict.fromkeys(picks))


# A weighted layer whose int8 output errs by more than this many of its own output quantization steps (RMS,
# against the same op with float weights on the same int8 input) is kept float by the float-sensitive rung, in
# every format: plain rounding errs by 0.29 of a step. On EfficientNet-Lite0 (ImageNet, TFLite) two layers stand
# out, the stem (3.0) and block 0's depthwise (2.9), the next is at 0.55; with them float and bias correction,
# agreement with float on 1,000 photo crops went 0.884 -> 0.914. On a CenterNet detector (shapes, 20 epochs) the
# FPN's lateral convs err by hundreds of steps in ONNX and OpenVINO (NNCF): kept float with the other outliers,
# the mAP@[.5:.95] drop went 1.31 -> 0.10 points (ONNX) and 1.39 -> 0.10 (OpenVINO).
MAX_ERROR_STEPS = 1.0
ERROR_SAMPLES = 100
# At most this fraction of the quantized ops is kept float that way (the worst): where every layer errs (a
# calibration that collapsed every range), the rung must not turn the model float and call it int8.
MAX_OUTLIER_FRACTION = 0.25


def pick_outliers(errors: dict, exclude=(), rename=None) -> list:
    """The layers of ``errors`` (layer -> int8 error RMS in output steps, every int8 weighted layer of a probe
    model) whose error exceeds MAX_ERROR_STEPS, worst first (``rename``d to the names the quantizer takes), at most
    MAX_OUTLIER_FRACTION of them beside the ``exclude``d (kept float already)."""
    worst = [n for n, e in sorted(errors.items(), key=lambda kv: -kv[1]) if e > MAX_ERROR_STEPS]
    worst = [n for n in (rename(worst) if rename else worst) if n not in exclude]
    return worst[:int(MAX_OUTLIER_FRACTION * len(errors))]


# A layer kept float whose weights alone, stored int8, put noise of more than this fraction of its output's RMS
# into that output (after its bias and activation) keeps float weights too: the weight-only step leaves it. On
# the CenterNet detector's OpenVINO IR the FPN's lat4 and lat5 (their outputs the small remainder of large terms
# after a bias and ReLU6) measure 21.8 and 1.47 and lost 6.45 and 1.42 points of mAP@[.5:.95] with int8 weights;
# the next layers measure 0.31 and below, and every other layer kept float took int8 weights at no loss.
MAX_WEIGHT_NOISE = 0.25


def probe_picks(errors: dict, keep: list) -> tuple[list, list]:
    """What a float-twin probe's ``errors`` (layer -> (int8 error in output steps, weight-only noise over output
    RMS); onnx_layer_errors, openvino_layer_errors) decide for a rung that keeps ``keep`` float: (the error
    outliers it keeps float as well, :func:`pick_outliers`; the layers kept float whose weights must stay float
    too, their noise over MAX_WEIGHT_NOISE)."""
    outliers = pick_outliers({n: e for n, (e, _w) in errors.items()}, keep)
    kept = set(keep) | set(outliers)
    return outliers, [n for n, (_e, w) in errors.items() if w > MAX_WEIGHT_NOISE and n in kept]


class ErrorSums:
    """Running sums of the float-twin probes (onnx_layer_errors, openvino_layer_errors): per layer, the squared
    difference of its int8 output and its twin's, the twin's energy and range (the step of an output with no
    quantizer), and the squared difference of the raw output with int8-rounded weights and the twin's."""

    def __init__(self, n: int):
        self.sq, self.count, self.energy, self.wsq = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        self.lo, self.hi = np.full(n, np.inf), np.full(n, -np.inf)

    def add(self, j: int, out: np.ndarray, twin: np.ndarray) -> None:
        d = out.astype(np.float64) - twin
        self.sq[j] += float((d * d).sum())
        self.energy[j] += float(np.square(twin, dtype=np.float64).sum())
        self.count[j] += d.size
        self.lo[j], self.hi[j] = min(self.lo[j], float(twin.min())), max(self.hi[j], float(twin.max()))

    def add_weights(self, j: int, out: np.ndarray, twin: np.ndarray) -> None:
        d = out.astype(np.float64) - twin
        self.wsq[j] += float((d * d).sum())

    def steps(self, names: list, steps: list) -> dict:
        """{layer: (int8 error in output steps (``steps[j]``, or the twin's range / 255), weight-only noise over the
        output's RMS)}."""
        out = {}
        for j, name in enumerate(names):
            step = steps[j] or (self.hi[j] - self.lo[j]) / 255
            err = float(np.sqrt(self.sq[j] / max(self.count[j], 1)) / step) if step and step > 0 else 0.0
            noise = float(np.sqrt(self.wsq[j] / self.energy[j])) if self.energy[j] > 0 else 0.0
            out[name] = (err, noise)
        return out


def int8_rounded(w: np.ndarray, axis: int) -> np.ndarray:
    """``w`` stored as :func:`symmetric_int8` stores it, and read back as float32 (what a probe runs)."""
    q, scale = symmetric_int8(w, axis)
    shape = [1] * w.ndim
    shape[axis] = -1
    return (q * scale.reshape(shape)).astype(np.float32)


def symmetric_int8(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``w`` as symmetric int8 with one scale per index of ``axis`` (the output channel): (int8 weights, float32
    scales), an all-zero channel scaled 1. The weight-only step's quantizer in every format."""
    scale = np.abs(w).max(axis=tuple(d for d in range(w.ndim) if d != axis)) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    return np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8), scale


def quant_meta(base, precision: str, details: dict, calib_n: int | None):
    q = {"precision": precision, **details}
    if calib_n is not None:
        q["calibration"] = {"samples": int(calib_n), "split": "train"}
    return base.copy(quantization=q)


def with_remedy(cfg: QuantizeConfig, remedy: str, train_size: int) -> QuantizeConfig | None:
    """The config for one remedy on top of ``cfg``, or None when it would change nothing."""
    if remedy == "more-calibration":
        n = min(train_size, max(cfg.calibration_samples * 4, 1000))
        return replace(cfg, calibration_samples=n) if n > cfg.calibration_samples else None
    if remedy == "per-channel":
        return replace(cfg, per_channel=True) if not cfg.per_channel else None
    if remedy == "bias-correction":
        return replace(cfg, bias_correction=True) if not cfg.bias_correction else None
    if remedy == "float-sensitive":
        return replace(cfg, float_sensitive=True) if not (cfg.float_sensitive or cfg.keep_float) else None
    if remedy == "mixed-precision":
        return replace(cfg, mixed_precision=True) if not (cfg.mixed_precision or cfg.keep_float) else None
    raise ConfigError(allowed(remedy, REMEDIES, "remedy"))


def rungs(cfg: QuantizeConfig, remedies, train_size: int):
    """``(rung, config)`` in the order they are tried: the plain attempt (``"none"``), then each remedy on
    top of the ones before it (cumulative; one that would change nothing is left out). QAT and NNCF's
    accuracy control start from the config reached so far; the int16x8 rung from it without the layers
    kept float. The configs never depend on how an attempt went, so the whole ladder is known up front."""
    yield "none", cfg
    current = cfg
    for remedy in remedies:
        if remedy == "qat":  # the QAT model's converter takes its trained ranges: nothing for a correction to read
            yield remedy, replace(current, bias_correction=False)
        elif remedy in ("accuracy-control", "nncf"):  # nncf: another quantizer (QuantizeJob.engine, from that rung on)
            yield remedy, current
        elif remedy == "int16x8":
            yield remedy, replace(current, float_sensitive=False, mixed_precision=False)
        else:
            c = with_remedy(current, remedy, train_size)
            if c is not None:
                current = c
                yield remedy, c

