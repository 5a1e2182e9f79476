"""The one table of deployable formats: name, file suffix, companion files, runtime backend, pip extra,
and where each format's exporter, runtime backend and int8 quantizer live.

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
    quantizer: str  # "module:attr" of the int8 quantizer function


TABLE: tuple[Format, ...] = (
    Format("tflite", ".tflite", (), "litert", "litert", "TFLite",
           "edgekit.export.tflite:TFLiteExporter", "edgekit.runtime.litert:LiteRTBackend",
           "edgekit.compress.quantizers.tflite:quantize"),
    Format("onnx", ".onnx", (), "onnxruntime", "onnx", "ONNX",
           "edgekit.export.onnx:ONNXExporter", "edgekit.runtime.onnxruntime:ORTBackend",
           "edgekit.compress.quantizers.onnx:quantize"),
    Format("openvino", ".xml", (".bin",), "openvino", "openvino", "OpenVINO IR",
           "edgekit.export.openvino:OpenVINOExporter", "edgekit.runtime.openvino:OpenVINOBackend",
           "edgekit.compress.quantizers.openvino:quantize"),
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


def formats_for_backends(backends) -> set[str]:
    """The formats a device with these runtime backends can load."""
    return {BY_BACKEND[b].name for b in backends if b in BY_BACKEND}
