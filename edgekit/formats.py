"""The one table of deployable formats: name, file suffix, companion files, runtime backend, pip extra,
where each format's exporter, runtime backend and quantizer live, and which precisions it can ship.

Every module that needs to know a format reads it here (artifact types, the runtime's choice of
backend, the model repository, device profiles, recipes, compression). Adding a format is an
exporter module, a backend module, a quantizer module and one row below. Device-side safe: stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError, allowed


@dataclass(frozen=True)
class Format:
    name: str  # what users type: --to tflite, export.formats: [onnx]
    suffix: str  # the model file the runtime loads
    companions: tuple[str, ...]  # sibling files with the same stem that belong to it (OpenVINO's .bin)
    backend: str  # runtime backend that loads it
    extra: str  # pip extra that installs that backend: edgekit[<extra>]
    label: str  # for messages and reports
    exporter: str  # "module:attr" of the Exporter class
    runtime: str  # "module:attr" of the runtime Backend class
    quantizer: str  # "module:attr" of the quantizer function (every precision below)
    precisions: tuple[str, ...]  # what its quantizer can make, beside float32
    cannot: tuple[tuple[str, str], ...] = ()  # (precision, why not): said when one is asked for


# Precisions an artifact can ship beside float32 (the reference): full int8, int16 activations with int8
# weights, float16 weights, and weight-only (dynamic-range) int8.
PRECISIONS: tuple[str, ...] = ("int8", "int16x8", "fp16", "int8-weights")


TABLE: tuple[Format, ...] = (
    Format("tflite", ".tflite", (), "litert", "litert", "TFLite",
           "edgekit.export.tflite:TFLiteExporter", "edgekit.runtime.litert:LiteRTBackend",
           "edgekit.compress.quantizers.tflite:quantize", PRECISIONS),
    Format("onnx", ".onnx", (), "onnxruntime", "onnx", "ONNX",
           "edgekit.export.onnx:ONNXExporter", "edgekit.runtime.onnxruntime:ORTBackend",
           "edgekit.compress.quantizers.onnx:quantize", PRECISIONS),
    Format("openvino", ".xml", (".bin",), "openvino", "openvino", "OpenVINO IR",
           "edgekit.export.openvino:OpenVINOExporter", "edgekit.runtime.openvino:OpenVINOBackend",
           "edgekit.compress.quantizers.openvino:quantize", ("int8", "fp16", "int8-weights"),
           (("int16x8", "NNCF has no 16-bit activation quantization for OpenVINO IR"),)),
)

FORMATS: tuple[str, ...] = tuple(f.name for f in TABLE)
BACKENDS: tuple[str, ...] = tuple(f.backend for f in TABLE)
SUFFIXES: tuple[str, ...] = tuple(f.suffix for f in TABLE)
BY_NAME: dict[str, Format] = {f.name: f for f in TABLE}
BY_SUFFIX: dict[str, Format] = {f.suffix: f for f in TABLE}
BY_BACKEND: dict[str, Format] = {f.backend: f for f in TABLE}
# Build-side model files: loaded by Keras, never by the device runtime.
KERAS_SUFFIXES: tuple[str, ...] = (".keras", ".h5")


def get(name: str) -> Format:
    """The row for a format name; an unknown name is a ConfigError that lists the known ones."""
    if name not in BY_NAME:
        raise ConfigError(allowed(name, FORMATS, "format"))
    return BY_NAME[name]


def of_suffix(suffix: str) -> Format | None:
    return BY_SUFFIX.get(suffix.lower())


def check_precisions(fmts, precisions) -> None:
    """Every format in ``fmts`` can make every precision in ``precisions``; otherwise one ConfigError line
    that names the format, why it can't, what it can do and which formats can do that precision."""
    for p in precisions:
        if p not in PRECISIONS:
            raise ConfigError(allowed(p, PRECISIONS, "precision"))
        for name in fmts:
            f = get(name)
            if p not in f.precisions:
                why = dict(f.cannot).get(p, "not supported")
                able = [g.name for g in TABLE if p in g.precisions]
                raise ConfigError(f"{f.label} cannot make {p} ({why}). Allowed for {f.name}: "
                                  f"{', '.join(f.precisions)}; formats that make {p}: {', '.join(able)}")


def formats_for_backends(backends) -> set[str]:
    """The formats a device with these runtime backends can load."""
    return {BY_BACKEND[b].name for b in backends if b in BY_BACKEND}
