"""The device-side runtime: ``load(path, device, threads) -> Session``.

Never imports TensorFlow or Keras (a test enforces it). Backends are chosen by file type
and live one per module behind the ``backends`` registry.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..artifact import read_meta, sidecar_path
from ..errors import ConfigError, ModelError, allowed
from ..formats import BY_SUFFIX, KERAS_SUFFIXES, TABLE
from ..registry import Registry
from .base import GENERIC_DEVICES, Backend, Session, TensorInfo, check_threads

__all__ = ["load", "backends", "Backend", "Session", "TensorInfo", "backend_for", "describe_backends"]

backends: Registry[type[Backend]] = Registry("backend", "edgekit.backends")
for _f in TABLE:
    backends.register(_f.backend, _f.runtime)

# Known without importing any backend, so choosing one costs nothing.
_SUFFIX_TO_BACKEND = {s: f.backend for s, f in BY_SUFFIX.items()}


def backend_for(path: str | os.PathLike) -> str:
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in _SUFFIX_TO_BACKEND:
        return _SUFFIX_TO_BACKEND[suffix]
    for name in backends.names():
        if name in _SUFFIX_TO_BACKEND.values():
            continue
        cls = backends.get(name)
        if suffix in cls.suffixes:
            return name
    if suffix in KERAS_SUFFIXES or p.is_dir():
        raise ModelError(f"{p} is a build-side model; export it first (edgekit export {p} --to tflite,onnx,openvino). "
                         f"The runtime loads: {', '.join(sorted(_SUFFIX_TO_BACKEND))}")
    raise ModelError(f"Unknown model file type {suffix or '(no extension)'!r} for {p}. "
                     f"The runtime loads: {', '.join(sorted(_SUFFIX_TO_BACKEND))}")


def load(path: str | os.PathLike, device: str = "cpu", threads: int | None = None, *,
         backend: str | None = None, **options) -> Session:
    """Load a model file for inference.

    device: ``cpu``, ``gpu``, ``npu``, ``auto`` or a backend-specific name (``cuda``,
    ``tensorrt``, ``GPU.1``, ``delegate:/path/lib.so`` ...). threads: intra-op threads.
    """
    p = Path(path)
    if not p.exists():
        raise ModelError(f"No such model file: {p}")
    if p.is_dir():
        found = sorted(x for x in p.iterdir() if x.suffix.lower() in _SUFFIX_TO_BACKEND)
        if len(found) != 1:
            raise ModelError(f"{p} is a folder; give a model file. Found: "
                             + (", ".join(x.name for x in found) or f"no {'/'.join(_SUFFIX_TO_BACKEND)} file"))
        p = found[0]
    side = sidecar_path(p)
    for f in (p, side):  # a FIFO or a device would block the load (or read for ever)
        if f.exists() and not f.is_file():
            raise ModelError(f"{f} is not a regular file")
    name = backend or backend_for(p)
    if name not in backends:
        raise ConfigError(allowed(name, backends.names(), "backend"))
    if not isinstance(device, str) or not device.strip():
        raise ConfigError(f"device must be a name; received {device!r}. Allowed: {', '.join(GENERIC_DEVICES)}")
    cls = backends.get(name)
    try:
        meta = read_meta(p)
    except RecursionError:  # json's C scanner stops at the interpreter's recursion limit
        where = f"Metadata file {side}" if side.exists() else f"The metadata embedded in {p}"
        raise ModelError(f"{where} is nested too deeply to be edgekit metadata. Fix it, or delete it to use "
                         "the model without metadata") from None
    return cls.load(p, device=device, threads=check_threads(threads), meta=meta, **options)


def describe_backends() -> list[dict]:
    """Every registered backend: installed?, version, and the devices it sees here."""
    rows = []
    for name in backends.names():
        cls = backends.get(name)
        row = {"backend": name, "package": cls.package, "installed": False, "version": None, "devices": [],
               "formats": list(cls.suffixes)}
        try:
            row["version"] = cls.version()
            row["installed"] = True
            row["devices"] = cls.devices()
        except Exception as e:  # missing package or broken install: report, don't crash
            row["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
        rows.append(row)
    return rows
