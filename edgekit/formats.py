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
    # What each model source can become in this format: (source kind, made?, how / why not). A source is a
    # model edgekit compresses (SOURCES); this column is what `edgekit compress --help` and its errors say.
    sources: tuple[tuple[str, bool, str], ...] = ()
    # Ladder remedies only this format's quantizer has; the others skip those rungs (offers_remedy).
    remedies: tuple[str, ...] = ()


# Precisions an artifact can ship beside float32 (the reference): full int8, int16 activations with int8
# weights, float16 weights, and weight-only (dynamic-range) int8.
PRECISIONS: tuple[str, ...] = ("int8", "int16x8", "fp16", "int8-weights")

# Model sources compression starts from: a Keras model edgekit trained (or any .keras), and models edgekit did
# not train. A source's "can become" is the `sources` column below, one row per format.
SOURCES: tuple[str, ...] = ("keras", "savedmodel", "onnx", "tflite")
SOURCE_NAMES = {"keras": "a Keras model", "onnx": "an ONNX model", "tflite": "a TFLite model",
                "savedmodel": "a SavedModel"}
_NO_ONNX2TF = ("no ONNX-to-TFLite converter on PyPI installs next to edgekit's stack (onnx2tf 1.29 pins "
               "tensorflow==2.19.0, numpy==1.26.4, onnx==1.19.1, onnxruntime==1.23.0; onnx-tf's last release, 1.10.0, "
               "needs the end-of-life tensorflow-addons); take the ONNX or OpenVINO IR")


TABLE: tuple[Format, ...] = (
    Format("tflite", ".tflite", (), "litert", "litert", "TFLite",
           "edgekit.export.tflite:TFLiteExporter", "edgekit.runtime.litert:LiteRTBackend",
           "edgekit.compress.quantizers.tflite:quantize", PRECISIONS, (),
           (("keras", True, "every precision through the TFLite converter"),
            ("savedmodel", True, "float and int8 through the TFLite converter"),
            ("onnx", False, _NO_ONNX2TF),
            ("tflite", False, "int8 TFLite needs the source graph (a SavedModel); a .tflite file no longer has it. "
                              "Give the SavedModel, or take the OpenVINO IR")),
           ("bias-correction",)),
    Format("onnx", ".onnx", (), "onnxruntime", "onnx", "ONNX",
           "edgekit.export.onnx:ONNXExporter", "edgekit.runtime.onnxruntime:ORTBackend",
           "edgekit.compress.quantizers.onnx:quantize", PRECISIONS, (),
           (("keras", True, "every precision through tf2onnx and ONNX Runtime quantization (NNCF's on the nncf rung)"),
            ("savedmodel", True, "float through tf2onnx, int8 through ONNX Runtime static quantization"),
            ("onnx", True, "int8 through ONNX Runtime static quantization (QDQ)"),
            ("tflite", False, "no converter here turns a .tflite into ONNX with a parity check; give the SavedModel")),
           ("nncf",)),
    Format("openvino", ".xml", (".bin",), "openvino", "openvino", "OpenVINO IR",
           "edgekit.export.openvino:OpenVINOExporter", "edgekit.runtime.openvino:OpenVINOBackend",
           "edgekit.compress.quantizers.openvino:quantize", ("int8", "fp16", "int8-weights"),
           (("int16x8", "NNCF has no 16-bit activation quantization for OpenVINO IR"),),
           (("keras", True, "float and int8 through openvino.convert_model + NNCF"),
            ("savedmodel", True, "float and int8 through openvino.convert_model + NNCF"),
            ("onnx", True, "float and int8 through openvino.convert_model + NNCF"),
            ("tflite", True, "float and int8 through openvino.convert_model (reads .tflite) + NNCF"))),
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


def offers_remedy(fmt: str, remedy: str) -> bool:
    """Whether ``fmt``'s int8 ladder has ``remedy``: one that a format's quantizer claims as its own
    (Format.remedies: ONNX's nncf, TFLite's bias-correction) only in that format, every other in all."""
    return remedy in get(fmt).remedies or all(remedy not in f.remedies for f in TABLE)


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


def can_become(source: str) -> dict[str, tuple[bool, str]]:
    """What a model source (SOURCES) can become: format -> (made?, how / why not), read off the table."""
    if source not in SOURCES:
        raise ConfigError(allowed(source, SOURCES, "model source"))
    return {f.name: next(((ok, why) for k, ok, why in f.sources if k == source), (False, "not supported"))
            for f in TABLE}


def what_it_can_become(source: str) -> str:
    """One sentence for help and errors: what ``source`` becomes, and why not the rest."""
    rows = can_become(source)
    ok = [f for f, (y, _) in rows.items() if y]
    no = [f"{f} ({why})" for f, (y, why) in rows.items() if not y]
    name = SOURCE_NAMES[source]
    return f"{name[0].upper()}{name[1:]} can become: {', '.join(ok)}" + (f"; not {'; not '.join(no)}" if no else "")
