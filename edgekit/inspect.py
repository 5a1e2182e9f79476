"""Describe a model file of any format (device side for runtime formats)."""

from __future__ import annotations

from pathlib import Path

from .artifact import model_format, model_size, read_meta
from .errors import ModelError


def describe_model(path: str | Path, device: str = "cpu") -> dict:
    p = Path(path)
    if not p.exists():
        raise ModelError(f"No such model: {p}")
    fmt = model_format(p)
    meta = read_meta(p) if fmt != "savedmodel" else None
    d = {"path": str(p), "format": fmt, "size_bytes": model_size(p),
         "metadata": meta.to_dict() if meta else None}
    if fmt in ("keras", "savedmodel"):
        from .export.base import SourceModel

        src = SourceModel(path=p)
        try:
            d["inputs"] = [{"name": n, "shape": list(s), "dtype": dt} for n, s, dt in src.input_specs]
            if src.keras_model is not None:
                d["outputs"] = [{"name": t.name, "shape": list(t.shape), "dtype": str(t.dtype)}
                                for t in src.keras_model.outputs]
                d["parameters"] = int(src.keras_model.count_params())
            else:
                outs = src.serving_fn().structured_outputs
                d["outputs"] = [{"name": k, "shape": v.shape.as_list(), "dtype": v.dtype.name}
                                for k, v in sorted(outs.items())]
        finally:
            src.cleanup()
        d["precision"] = (meta.quantization or {}).get("precision", "float32") if meta else "float32"
        return d
    from . import runtime

    with runtime.load(p, device=device) as sess:
        d["backend"] = sess.backend
        d["device"] = sess.device
        d["inputs"] = [t.to_dict() for t in sess.inputs]
        d["outputs"] = [t.to_dict() for t in sess.outputs]
        d["detail"] = sess.detail
    kinds = {t["dtype"] for t in d["inputs"] + d["outputs"]}
    d["precision"] = (meta.quantization or {}).get("precision") if meta and meta.quantization else None
    if d["precision"] is None:
        d["precision"] = "int8" if kinds & {"int8", "uint8"} else "float32"
    return d
