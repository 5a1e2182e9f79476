"""Artifact = a model file plus the metadata that travels with it.

Every format carries the same metadata: a JSON sidecar ``<model file>.json`` next to
the file, and, where the format allows, embedded in the model (ONNX ``metadata_props``
key ``edgekit``, OpenVINO ``rt_info["edgekit"]``). Device-side safe: NumPy-free, no TF.
"""

from __future__ import annotations

import json
import os
import platform
import stat
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError, ModelError
from .formats import BY_SUFFIX, KERAS_SUFFIXES

META_KEY = "edgekit"
SCHEMA_VERSION = 1

# Extension -> format name (edgekit/formats.py), plus the build-side Keras files.
FORMATS_BY_SUFFIX = {**{s: f.name for s, f in BY_SUFFIX.items()}, **{s: "keras" for s in KERAS_SUFFIXES}}


@dataclass
class TensorSpec:
    name: str
    shape: list  # ints; None for a dynamic dimension
    dtype: str  # numpy dtype name: float32, int8, uint8, int64 ...

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(name=d["name"], shape=list(d["shape"]), dtype=d["dtype"])


@dataclass
class ArtifactMeta:
    """What a deployed model needs to be used correctly, whatever its format."""

    format: str = ""
    task: str = "classification"
    labels: list = field(default_factory=list)
    inputs: list = field(default_factory=list)  # list[TensorSpec as dict]
    outputs: list = field(default_factory=list)
    # How raw data becomes the input tensor, e.g.
    # {"type": "image", "size": [96, 96], "channels": 3, "mean": 0.0, "scale": 1/255, "layout": "NHWC"}
    # {"type": "audio", "sample_rate": 16000, "frontend": {...edgekit.features params...}}
    preprocessing: dict = field(default_factory=dict)
    # {"precision": "float32"|"int8", "scheme": ..., "calibration": ...}
    quantization: dict = field(default_factory=lambda: {"precision": "float32"})
    # {"source": ..., "recipe": ..., "data": ..., "created": ..., "edgekit": version, "tools": {...}}
    provenance: dict = field(default_factory=dict)
    # {"top1": 0.97, "split": "test", ...}
    metrics: dict = field(default_factory=dict)
    # {"max_abs_diff": ..., "top1_agreement": ..., "samples": 32, "passed": true}
    verification: dict = field(default_factory=dict)
    sparsity: float | None = None
    # Keyword streams: the calibrated operating point the device-side spotter uses (edgekit.apps.streams),
    # {"threshold", "smooth_ms", "refractory_ms", "hop_ms", "calibration": {...}}; empty: the defaults.
    postprocessing: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    # -- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_dict(cls, d: dict) -> "ArtifactMeta":
        """Build from a metadata dict; a field of the wrong type is a ValueError that names it."""
        check_meta_dict(d)
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        extra = dict(kw.get("extra") or {})
        extra.update({k: v for k, v in d.items() if k not in known})
        kw["extra"] = extra
        return cls(**kw)

    def copy(self, **changes) -> "ArtifactMeta":
        d = json.loads(self.to_json())
        d.update(changes)
        return ArtifactMeta.from_dict(d)

    @property
    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(s) for s in self.inputs]

    @property
    def output_specs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(s) for s in self.outputs]


# Field -> the JSON types it may hold (None is allowed where the default is None).
_FIELD_TYPES = {"format": (str,), "task": (str,), "labels": (list,), "inputs": (list,), "outputs": (list,),
                "preprocessing": (dict,), "quantization": (dict,), "provenance": (dict,), "metrics": (dict,),
                "verification": (dict,), "sparsity": (int, float, type(None)), "postprocessing": (dict,), "extra": (dict,), "schema": (int,)}
_JSON_NAMES = {str: "a string", list: "a list", dict: "an object", int: "a number", float: "a number",
               type(None): "null", bool: "true/false"}


def _json_type(v) -> str:
    return _JSON_NAMES.get(type(v), type(v).__name__)


# Real metadata nests a few levels (provenance.tools, postprocessing.calibration). JSON nested ~900 deep
# still parses, and then copying or printing it (asdict, json.dumps) ran out of stack: a raw RecursionError.
MAX_META_DEPTH = 32


def _depth_over(v, limit: int) -> bool:
    """Whether lists/objects in ``v`` nest deeper than ``limit`` (iterative: no recursion of its own)."""
    stack = [(v, 1)]
    while stack:
        x, d = stack.pop()
        items = x.values() if isinstance(x, dict) else x if isinstance(x, list) else None
        if items is None:
            continue
        if d > limit:
            return True
        stack.extend((y, d + 1) for y in items if isinstance(y, (dict, list)))
    return False


def check_meta_dict(d) -> None:
    """Raise ValueError naming the first field whose type can't be edgekit metadata."""
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object of fields; received {_json_type(d)}")
    if _depth_over(d, MAX_META_DEPTH):
        raise ValueError(f"nested too deeply (more than {MAX_META_DEPTH} levels of lists or objects)")
    for name, types in _FIELD_TYPES.items():
        if name not in d:
            continue
        v = d[name]
        if isinstance(v, bool) or not isinstance(v, types):
            want = " or ".join(dict.fromkeys(_JSON_NAMES[t] for t in types))
            raise ValueError(f"field {name!r} must be {want}; received {_json_type(v)} {json.dumps(v, default=str)[:60]}")
    for i, lab in enumerate(d.get("labels") or []):
        if isinstance(lab, bool) or not isinstance(lab, (str, int)):
            raise ValueError(f"labels[{i}] must be a class name (string or number); received {_json_type(lab)} "
                             f"{json.dumps(lab, default=str)[:60]}")
    for kind in ("inputs", "outputs"):
        for i, t in enumerate(d.get(kind) or []):
            if not isinstance(t, dict) or not {"name", "shape", "dtype"} <= set(t) or not isinstance(t["shape"], list):
                raise ValueError(f"{kind}[{i}] must be an object with name, shape (a list) and dtype; received "
                                 f"{json.dumps(t, default=str)[:60]}")


def model_format(path: str | os.PathLike) -> str:
    """Format name from a path: a file by its suffix, a folder holding saved_model.pb is 'savedmodel'."""
    p = Path(path)
    if p.is_dir():
        if (p / "saved_model.pb").exists():
            return "savedmodel"
        raise ModelError(f"{p} is a folder but not a SavedModel (no saved_model.pb).")
    try:
        mode = os.stat(p).st_mode
    except OSError:
        mode = None  # missing: the caller says so in its own words
    if mode is not None and not stat.S_ISREG(mode):  # a FIFO would hang the read, /dev/zero never end it
        from .fsutil import kind_of

        raise ModelError(f"Model {str(p)!r} is {kind_of(mode)}; give a model file")
    fmt = FORMATS_BY_SUFFIX.get(p.suffix.lower())
    if fmt is None:
        raise ModelError(
            f"Unknown model file type {p.suffix or '(no extension)'!r} for {p}. "
            f"Allowed: {', '.join(sorted(FORMATS_BY_SUFFIX))} or a SavedModel folder"
        )
    return fmt


MAX_STEM_BYTES = 200  # file names are limited to 255 bytes


def check_file_stem(name, what: str = "name") -> str:
    """A file name stem that stays in its folder: no separators, not '.'/'..', not hidden (temp files are)."""
    s = name if isinstance(name, str) else ""
    if (not s.strip() or s in (".", "..") or s.startswith(".") or "/" in s or "\\" in s or os.sep in s
            or "\0" in s or s != s.strip() or not s.isprintable()):
        raise ConfigError(f"{what} must be a plain file name stem like 'model' (no folders, no leading '.', no "
                          f"control characters); received {name!r}")
    if len(s.encode()) > MAX_STEM_BYTES:  # room for '.partial' temp names and '-int8.tflite.json' suffixes
        raise ConfigError(f"{what} must be at most {MAX_STEM_BYTES} bytes; received {len(s.encode())}")
    return s


def sidecar_path(model_path: str | os.PathLike) -> Path:
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def model_files(model_path: str | os.PathLike) -> list[Path]:
    """All files that make up a model (OpenVINO IR is .xml + .bin), sidecar excluded."""
    p = Path(model_path)
    if p.is_dir():
        return sorted(x for x in p.rglob("*") if x.is_file())
    fmt = BY_SUFFIX.get(p.suffix.lower())
    return [p] + [p.with_suffix(c) for c in (fmt.companions if fmt else ())]


def model_size(model_path: str | os.PathLike) -> int:
    return sum(f.stat().st_size for f in model_files(model_path) if f.exists())


def write_meta(model_path: str | os.PathLike, meta: ArtifactMeta) -> Path:
    from .fsutil import write_text_atomic

    return write_text_atomic(sidecar_path(model_path), meta.to_json() + "\n")


def read_meta(model_path: str | os.PathLike, *, embedded: bool = True) -> ArtifactMeta | None:
    """The sidecar if present, else metadata embedded in the model, else None."""
    side = sidecar_path(model_path)
    if side.exists():
        try:
            return ArtifactMeta.from_dict(json.loads(side.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, RecursionError) as e:  # Unicode/JSONDecodeError are ValueErrors
            why = "nested too deeply" if isinstance(e, RecursionError) else e
            raise ModelError(f"Metadata file {side} is not valid edgekit metadata: {why}. Fix it, or delete it to "
                             "use the model without metadata") from None
        except OSError as e:
            raise ModelError(f"Can't read metadata file {side}: {e}") from None
    if embedded:
        d = read_embedded(model_path)
        if d is not None:
            try:
                return ArtifactMeta.from_dict(d)
            except (ValueError, KeyError, TypeError) as e:
                raise ModelError(f"Metadata embedded in {model_path} is not valid edgekit metadata: {e}. Write a "
                                 f"valid sidecar {side.name} next to it to override") from None
    return None


def read_embedded(model_path: str | os.PathLike) -> dict | None:
    """Read metadata embedded in an ONNX or OpenVINO model (cheap text scans, no runtime import)."""
    p = Path(model_path)
    suffix = p.suffix.lower()
    try:
        if suffix == ".onnx":
            try:
                import onnx
            except ImportError:
                return None
            m = onnx.load(str(p), load_external_data=False)
            for prop in m.metadata_props:
                if prop.key == META_KEY:
                    return json.loads(prop.value)
        elif suffix == ".xml":
            import xml.etree.ElementTree as ET

            root = ET.parse(p).getroot()
            rt = root.find("rt_info")
            if rt is not None:
                node = rt.find(META_KEY)
                if node is not None and node.get("value"):
                    return json.loads(node.get("value"))
    except Exception:  # embedded metadata is a convenience; a broken one must not block loading
        return None
    return None


def read_labels(path, flag: str = "--labels") -> list[str]:
    """Class labels from a text file (one per line) or a JSON list; a bad file is a one-line ConfigError
    that says what ``flag`` takes."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Labels file {p} {'is a folder' if p.is_dir() else 'does not exist'}; {flag} takes a text "
                          "file with one label per line (or a JSON list)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"Can't read labels file {p}: {e}") from None
    if text.lstrip().startswith("["):
        try:
            lab = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"Labels file {p} looks like JSON but isn't: {e}") from None
        except RecursionError:
            raise ConfigError(f"Labels file {p}: JSON nested too deeply; a labels file is a list of names") from None
        if not isinstance(lab, list) or not all(isinstance(x, (str, int)) for x in lab):
            raise ConfigError(f"Labels file {p}: a JSON labels file must be a list of names")
        lab = [str(x) for x in lab]
    else:
        lab = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lab:
        raise ConfigError(f"Labels file {p} is empty")
    return unique_labels(lab, f"Labels file {p}")


def unique_labels(labels: list, where: str) -> list:
    """Class names must differ: two outputs with one name can't be told apart in any answer."""
    seen, dup = set(), []
    for lab in labels:
        if lab in seen and lab not in dup:
            dup.append(lab)
        seen.add(lab)
    if dup:
        raise ConfigError(f"{where}: label(s) given more than once: {', '.join(map(str, dup[:5]))}; each class needs "
                          "its own name")
    return labels


def provenance(source: str | os.PathLike | None = None, **more: Any) -> dict:
    from . import __version__

    d = {
        "edgekit": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "python": platform.python_version(),
    }
    if source is not None:
        d["source"] = str(source)
    d.update(more)
    return d
