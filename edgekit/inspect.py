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
    if fmt in ("onnx", "tflite"):
        d["byom"] = foreign_needs(d["inputs"], d["outputs"], meta)
    kinds = {t["dtype"] for t in d["inputs"] + d["outputs"]}
    d["precision"] = (meta.quantization or {}).get("precision") if meta and meta.quantization else None
    if d["precision"] is None:
        d["precision"] = "int8" if kinds & {"int8", "uint8"} else "float32"
    return d


def foreign_needs(inputs: list, outputs: list, meta) -> dict:
    """For a model edgekit may not have trained: what its input shape tells, and what ``edgekit compress``,
    ``eval``, ``serve`` classify and the demos still need to be told (labels, preprocessing, the input)."""
    from .preprocess import infer_from_shape

    pre = dict((meta.preprocessing if meta else None) or {})
    inferred = infer_from_shape(inputs[0]["shape"]) if len(inputs) == 1 else {}
    needs = []
    if len(inputs) > 1:
        needs.append(f"--input NAME (it has {len(inputs)} inputs: {', '.join(t['name'] for t in inputs)})")
    if len(inputs) == 1 and len(inputs[0]["shape"]) == 4 and not inferred and "layout" not in pre:
        needs.append("--preprocess layout=NCHW|NHWC (the input shape doesn't tell)")
    size = inferred.get("size") or pre.get("size")
    if inferred and (not size or None in size) and "size" not in pre:
        needs.append("--preprocess size=H or HxW (dynamic spatial dimensions)")
    if not (meta and meta.labels):
        width = outputs[0]["shape"][-1] if outputs and outputs[0]["shape"] else None
        needs.append(f"--labels FILE ({width if width else 'one per output'} class names, one per line)")
    if pre.get("type") != "image":
        needs.append("--preprocess mean/std or scale and color (the file doesn't record how pixels were "
                     "normalized; default: pixels / 255, RGB)")
    return {"inferred": inferred, "recorded": pre, "needs": needs}
