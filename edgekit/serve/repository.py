"""The model repository: which model files to serve, under which names and versions.

Accepted sources (mix freely):

* a model file (``.tflite``, ``.onnx``, OpenVINO ``.xml``) → model named after the file stem, version 1;
* ``NAME=PATH`` → the same with an explicit name (PATH may also be a model folder);
* a model folder with numbered version subfolders (``kws/1/model.tflite``, ``kws/2/model.onnx``);
* a repository folder with one model per subfolder (each versioned as above, or holding one file),
  or with model files side by side.
"""

from __future__ import annotations

import json

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ModelError
from ..formats import SUFFIXES as MODEL_SUFFIXES
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    path: Path


def _model_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES)


def _one_file(d: Path) -> Path:
    found = _model_files(d)
    if len(found) != 1:
        raise ConfigError(f"{d} must hold exactly one model file ({', '.join(MODEL_SUFFIXES)}); found "
                          + (", ".join(p.name for p in found) or "none"))
    return found[0]


def _versions(d: Path) -> list[Path]:
    return sorted((p for p in d.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _check_name(name: str, src) -> str:
    if not NAME_RE.match(name):
        raise ConfigError(f"Model name {name!r} (from {src}) must be letters, digits, '_', '-' or '.' "
                          "and start with a letter or digit")
    return name


def _model_dir(name: str, d: Path) -> list[ModelSpec]:
    vers = _versions(d)
    if vers:
        return [ModelSpec(name, str(int(v.name)), _one_file(v)) for v in vers]
    return [ModelSpec(name, "1", _one_file(d))]


def discover(sources, versions: str = "all") -> list[ModelSpec]:
    """Model specs for the given sources. ``versions``: ``all`` or ``latest`` (per model name)."""
    if versions not in ("all", "latest"):
        raise ConfigError(f"Unknown versions policy {versions!r}. Available: all, latest")
    if not sources:
        raise ConfigError("Give at least one model file or repository folder to serve")
    specs: list[ModelSpec] = []
    for src in sources:
        src = str(src)
        name = None
        if "=" in src and not Path(src).exists():
            name, src = src.split("=", 1)
            _check_name(name, src)
        p = Path(src).expanduser()
        if not p.exists():
            raise ModelError(f"No such model file or folder: {p}")
        if not p.is_file() and not p.is_dir():  # a FIFO or a device would block the load, or read for ever
            raise ModelError(f"{p} is not a regular file or a folder; give a model file or a repository folder")
        if p.is_file():
            if p.suffix.lower() not in MODEL_SUFFIXES:
                raise ModelError(f"{p} is not a model file the server loads. Allowed: {', '.join(MODEL_SUFFIXES)}")
            specs.append(ModelSpec(_check_name(name or p.stem, p), "1", p))
        elif name is not None or _versions(p):
            specs.extend(_model_dir(_check_name(name or p.name, p), p))
        else:
            subdirs = sorted(x for x in p.iterdir() if x.is_dir() and not x.name.startswith("."))
            found = []
            for sd in subdirs:
                if _versions(sd) or _model_files(sd):
                    found.extend(_model_dir(_check_name(sd.name, sd), sd))
            for f in _model_files(p):
                found.append(ModelSpec(_check_name(f.stem, f), "1", f))
            if not found:
                raise ModelError(f"No models in {p}: expected model files, NAME/VERSION/model.* subfolders "
                                 f"or NAME/model.* subfolders ({', '.join(MODEL_SUFFIXES)})")
            specs.extend(found)
    seen: dict[tuple, Path] = {}
    for s in specs:
        if (s.name, s.version) in seen:
            raise ConfigError(f"Model {s.name!r} version {s.version} is given twice: {seen[(s.name, s.version)]} "
                              f"and {s.path}. Rename one with NAME=PATH")
        seen[(s.name, s.version)] = s.path
    if versions == "latest":
        latest: dict[str, ModelSpec] = {}
        for s in specs:
            if s.name not in latest or int(s.version) > int(latest[s.name].version):
                latest[s.name] = s
        specs = list(latest.values())
    return specs


class ServedModel:
    """One loaded model version: its Session, its batcher and the metadata the protocol reports."""

    def __init__(self, spec: ModelSpec, session, batcher_factory):
        self.name = spec.name
        self.version = spec.version
        self.path = spec.path
        self.session = session
        self.input_info = {t.name: t for t in session.inputs}
        self.output_names = [t.name for t in session.outputs]
        self.labels = list(session.labels)
        meta = session.meta
        self.preprocessing = dict(meta.preprocessing) if meta is not None and meta.preprocessing else {}
        from .preprocess import check_preprocessing

        check_preprocessing(self.preprocessing, self.input_info)  # before the batcher thread starts
        # A dynamic first dimension on every input means rows from many requests can share one run.
        self.batchable = all(t.shape and t.shape[0] is None for t in session.inputs)
        # Fixed-batch models still take multiples of their batch (the Session runs them in chunks).
        self.batch_flexible = all(len(t.shape) > 0 for t in session.inputs)
        self.batcher = batcher_factory(self)
        self.plans: dict = {}  # checked binary-request headers (protocol.parse_request)
        self.task = getattr(meta, "task", None)
        self._post = None

    def detector(self):
        """The detection post-processing the artifact carries (runtime.boxes.Postprocess); RequestError for a
        model that is not a detector or carries none."""
        from .errors import RequestError

        if self.task != "detection":
            raise RequestError(f"Model {self.name!r} is not a detector (task {self.task or 'classification'!r}); "
                               f"POST images to /v2/models/{self.name}/classify")
        if self._post is None:
            from ..runtime.boxes import Postprocess

            try:
                self._post = Postprocess.from_meta(self.session.meta)
            except (ModelError, TypeError, ValueError) as e:
                raise RequestError(f"Model {self.name!r}: {e}") from None
        return self._post

    def metadata(self) -> dict:
        from .protocol import tensor_datatype, wire_shape

        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.session.backend,
            "inputs": [{"name": t.name, "datatype": tensor_datatype(t), "shape": wire_shape(t.shape)}
                       for t in self.session.inputs],
            "outputs": [{"name": t.name, "datatype": tensor_datatype(t), "shape": wire_shape(t.shape)}
                        for t in self.session.outputs],
            "parameters": {"labels": len(self.labels), "batchable": self.batchable,
                           "max_batch_size": self.batcher.max_batch,
                           "preprocessing": self.preprocessing.get("type", "none"),
                           "device": self.session.device,
                           # A keyword spotter's calibrated operating point, so a remote spotter uses it too.
                           **({"postprocessing": json.dumps(pp)} if (pp := self._postprocessing()) else {})},
        }

    def _postprocessing(self) -> dict:
        meta = self.session.meta
        pp = dict(getattr(meta, "postprocessing", None) or {}) if meta is not None else {}
        pp.pop("calibration", None)
        return pp


class Repository:
    def __init__(self, models: list[ServedModel]):
        self.models = models
        self._by = {(m.name, m.version): m for m in models}
        self._latest: dict[str, ServedModel] = {}
        for m in models:
            cur = self._latest.get(m.name)
            if cur is None or int(m.version) > int(cur.version):
                self._latest[m.name] = m

    def names(self) -> list[str]:
        return sorted(self._latest)

    def versions(self, name: str) -> list[str]:
        return sorted((m.version for m in self.models if m.name == name), key=int)

    def get(self, name: str, version: str | None = None) -> ServedModel:
        from .errors import NotFound

        if name not in self._latest:
            raise NotFound(f"Unknown model {name!r}. Available: {', '.join(self.names()) or '(none)'}")
        if version is None or version == "":
            return self._latest[name]
        m = self._by.get((name, version))
        if m is None:
            raise NotFound(f"Unknown version {version!r} of model {name!r}. Available: {', '.join(self.versions(name))}")
        return m

    def default(self) -> ServedModel | None:
        """The model an unnamed request means: only when exactly one model is served."""
        return self._latest[self.names()[0]] if len(self._latest) == 1 else None

    def close(self, timeout: float | None = None) -> None:
        """Drain every batcher, then release the sessions. Safe to call twice (lifespan, then serve())."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        for m in self.models:
            m.batcher.stop(timeout)
        for m in self.models:
            m.session.close()


def load_repository(specs: list[ModelSpec], *, device: str = "cpu", threads: int | None = None,
                    max_batch_size: int = 8, max_delay_s: float = 0.0, max_queue: int = 64,
                    metrics=None, inline_max_s: float = 0.0) -> Repository:
    from ..runtime import load
    from .batcher import Batcher

    def factory(m: ServedModel) -> Batcher:
        return Batcher(m.session, max_batch_size=max_batch_size, max_delay_s=max_delay_s, max_queue=max_queue,
                       batchable=m.batchable, metrics=metrics, labels=(m.name, m.version), inline_max_s=inline_max_s)

    models = []
    try:
        for s in specs:
            try:
                session = load(s.path, device=device, threads=threads)
            except ModelError as e:
                raise ModelError(f"Model {s.name!r} version {s.version}: {e}") from None
            try:
                models.append(ServedModel(s, session, factory))
            except ModelError as e:
                session.close()
                raise ModelError(f"Model {s.name!r} version {s.version} ({s.path.name}): {e}") from None
    except BaseException:
        Repository(models).close(1.0)
        raise
    return Repository(models)
