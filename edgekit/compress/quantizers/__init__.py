"""Quantizers, one module per format, behind a registry read from the format table (edgekit/formats.py).

The contract: ``quantize(source: ModelSource, job: QuantizeJob) -> Path``, one artifact of ``job.precision``
under ``job.stage``, not gated yet (the ladder gates it). ``source`` is what it starts from: a Keras model or a
model file (a ``.keras`` or SavedModel path the exporters read; None for an ONNX or TFLite file), and the verified
float artifact of the target format when there is one. ``job`` is the rest: file stem, metadata, the
QuantizeConfig of the rung, calibration data, precision, progress, and ``control`` for NNCF's accuracy-aware
rung, which the ONNX and OpenVINO quantizers hand to :mod:`.accuracy_control` (a format without it refuses with
a ModelError, a failed rung). A new format is a module with that function and its row in the format table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...formats import TABLE
from ...registry import Registry

quantizers: Registry = Registry("int8 quantizer", "edgekit.quantizers")
for _f in TABLE:
    quantizers.register(_f.name, _f.quantizer)


def _quiet(s: str) -> None:
    pass


@dataclass
class ModelSource:
    """What a quantizer starts from."""

    model: Any = None  # keras.Model, or a .keras/SavedModel path; None: only the float file (ONNX, TFLite)
    float_artifact: Path | None = None  # the verified float artifact of the target format, when there is one
    transformer: bool = False  # the model has attention (NNCF's TRANSFORMER model type)


@dataclass
class AccuracyControl:
    """NNCF's accuracy-aware rung: layers that cost top-1 agreement with ``targets`` on ``x_val`` go back to
    float until the drop is within ``max_drop`` (the judge's points)."""

    x_val: Any
    targets: Any
    max_drop: float


@dataclass
class QuantizeJob:
    """Everything but the model: where, under which name and metadata, with which config and calibration."""

    stage: Path  # the artifact goes under this folder
    name: str  # its file stem
    meta: Any  # ArtifactMeta the artifact carries
    config: Any  # the QuantizeConfig of this rung
    calibration: Any  # calibration inputs (numpy array); None where the precision needs none
    precision: str = "int8"
    progress: Callable[[str], None] = _quiet
    control: AccuracyControl | None = None
    engine: str = "default"  # "nncf": the ladder's rung of that name and the rungs after it (ONNX)

    def out(self, suffix: str) -> Path:
        return self.stage / f"{self.name}{suffix}"


def quantize(fmt: str, source: ModelSource, job: QuantizeJob) -> Path:
    """One ``job.precision`` artifact of ``source`` in ``fmt`` under ``job.stage`` by that format's quantizer."""
    from ...formats import check_precisions

    check_precisions([fmt], [job.precision])
    job.stage.mkdir(parents=True, exist_ok=True)
    return quantizers.get(fmt)(source, job)


def _weight_only(fmt: str):
    if fmt == "onnx":
        from .onnx import onnx_float_weighted, onnx_float_weights_int8

        return onnx_float_weighted, onnx_float_weights_int8
    if fmt == "openvino":
        from .openvino import openvino_float_weighted, openvino_float_weights_int8

        return openvino_float_weighted, openvino_float_weights_int8
    if fmt == "tflite":
        from .tflite import tflite_float_weighted, tflite_float_weights_int8

        return tflite_float_weighted, tflite_float_weights_int8
    return None


def weight_only_variants(fmt: str, rung, path: Path):
    """Smaller variants of a passing int8 artifact whose rung kept weighted layers in float (float-sensitive,
    mixed precision, accuracy control): those layers' weights stored int8 per output channel, their
    activations still float (ONNX: a DequantizeLinear; OpenVINO: NNCF's weight compression; TFLite: the
    op's hybrid kernel, fully connected and conv). First all of them, then the largest alone: a layer kept float for its
    activations loses nothing (EfficientNet-Lite0's 1280x1000 classifier: agreement 0.938 -> 0.942 in
    OpenVINO, 0.926 -> 0.924 in ONNX, 500 crops), one kept float for its weights does (the five convolutions
    NNCF reverted with it: 0.938 -> 0.872). Layers the user kept float (--keep-float) stay as asked, and so do
    the weights the rung's probe found erring in int8 by themselves (the metadata's ``float_weights``).
    Yields (tag, staged path)."""
    impl = _weight_only(fmt)
    if impl is None or rung.config.keep_float:
        return
    from ...artifact import read_meta
    from .accuracy_control import _embed

    listed, convert = impl
    meta = read_meta(path)
    # the layers whose weights err in int8 by themselves (quantize.probe_picks) keep them float
    stay = set(((meta.quantization or {}).get("float_weights") or []) if meta is not None else [])
    floats = [(n, size) for n, size in listed(path) if n not in stay]
    sets = [[n for n, _ in floats]] + ([[floats[0][0]]] if len(floats) > 1 else [])
    for k, names in enumerate(sets):
        out = path.parent / f"smaller{k}" / path.name
        done = convert(path, out, names)
        if not done:
            continue
        meta = read_meta(path)
        if meta is not None:
            meta.quantization = {**(meta.quantization or {}), "weights_int8": done[:50],
                                 "weights_int8_scheme": "weight-only int8 per output channel, float activations"}
            _embed(out, meta)
        yield "int8-weights", out
