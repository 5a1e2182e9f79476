"""NNCF's accuracy-aware quantization (ONNX and OpenVINO IR alike): the ladder's last int8 rung for a source
that is a file (a model edgekit did not train), where a Keras model would get QAT. Beside the per-format
quantizers of this package, with the metadata helpers the file-source quantizers share."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ... import formats
from ...artifact import ArtifactMeta, read_meta, write_meta
from ...errors import MissingDependencyError, ModelError, first_line

MAX_REVERTED = 0.5  # an accuracy-control result with more of its layers back in float is refused


def _embed(path: Path, meta: ArtifactMeta) -> None:
    fmt = formats.of_suffix(path.suffix).name
    if fmt == "onnx":
        from ...export.onnx import ONNXExporter

        ONNXExporter().embed_metadata(path, meta)
    elif fmt == "openvino":
        from ...export.openvino import OpenVINOExporter

        OpenVINOExporter().embed_metadata(path, meta)
    write_meta(path, meta)


def _with_io(path: Path, meta: ArtifactMeta) -> ArtifactMeta:
    from ... import runtime

    with runtime.load(path) as s:
        meta.inputs = [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype.name} for t in s.inputs]
        meta.outputs = [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype.name} for t in s.outputs]
    return meta


def _ov():
    try:
        import openvino as ov
    except ImportError:
        raise MissingDependencyError("openvino", "openvino", what="OpenVINO IR from a foreign model") from None
    return ov


def accuracy_control(fmt: str, float_path: Path, out: Path, job, sensitive: Callable[[Path, Any], list]) -> Path:
    """int8 by NNCF's accuracy-aware quantization: layers ranked by how much they cost the metric (top-1
    agreement of ``x_val`` with ``targets``) go back to float until the drop is within ``max_drop`` (in the
    judge's points, as every gate counts it; NNCF is asked for a quarter of it, as a fraction: what holds on
    the calibration images loses some on unseen ones — measured, 200 + 200 crops: 0.99 asked on calibration
    gave 0.98 held out, 0.995 gave 0.985). ONNX and OpenVINO alike (NNCF has both backends); their quantizers
    call it for a job with ``control`` (:class:`edgekit.compress.quantizers.AccuracyControl`), with
    ``sensitive(float_path, loaded model)``: the layers their float-sensitive remedy keeps in float."""
    meta, cfg, calib, say = job.meta, job.config, job.calibration, job.progress
    x_val, targets = job.control.x_val, job.control.targets
    max_drop = job.control.max_drop / 100.0 / 4  # NNCF's unit: a fraction of the metric
    try:
        import nncf
    except ImportError:
        raise MissingDependencyError("nncf", "train", what="The accuracy-control remedy") from None
    from ..quantize import quant_meta

    def runner(model):
        if hasattr(model, "SerializeToString"):  # the ONNX backend validates an onnx.ModelProto
            import onnxruntime as ort

            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            return lambda x: sess.run(None, {name: x})[0]
        return lambda x: model(x)[0]  # an openvino.CompiledModel

    def validate(model, data):
        run = runner(model)
        hits = [float(np.argmax(run(x[None])) == t) for x, t in data]
        return float(np.mean(hits)), hits

    import logging

    class Reverted(logging.Handler):  # NNCF says which layers it put back in float only in its log
        def __init__(self):
            super().__init__()
            self.lines = []

        def emit(self, record):
            msg = record.getMessage()
            if "were reverted back" in msg:
                self.lines.append(" ".join(msg.split()))

    log, catch = logging.getLogger("nncf"), Reverted()
    log.addHandler(catch)
    if fmt == "onnx":  # NNCF's ONNX backend feeds {input name: array}
        import onnx

        src_model = onnx.load(str(float_path))
        feed = (lambda a, n=src_model.graph.input[0].name: {n: a})
    else:
        src_model = _ov().Core().read_model(str(float_path))
        feed = (lambda a: a)
    # Cumulative, as the engine's remedies are: layers an earlier remedy kept in float stay float here.
    names = list(cfg.keep_float)
    if cfg.float_sensitive and not names:
        names = list(sensitive(float_path, src_model))
    scope = nncf.IgnoredScope(names=names, validate=False) if names else None
    calib_ds = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))], feed)
    val_ds = nncf.Dataset(list(zip(x_val, targets.tolist())), lambda item: feed(item[0][None]))
    out.parent.mkdir(parents=True, exist_ok=True)
    say(f"quantizing {fmt} (NNCF accuracy control, max drop {max_drop:.3f}) ...")
    try:
        q = nncf.quantize_with_accuracy_control(src_model, calib_ds, val_ds, validate, max_drop=max_drop,
                                                subset_size=len(calib), ignored_scope=scope)
        if fmt == "onnx":
            onnx.save(q, str(out))
            n_q = sum(1 for nd in q.graph.node if nd.op_type == "QuantizeLinear")
        else:
            _ov().save_model(q, str(out), compress_to_fp16=False)
            n_q = sum(1 for op in q.get_ops() if op.get_type_name() == "FakeQuantize")
    except (ModelError, MissingDependencyError):
        raise
    except Exception as e:  # NNCF's own errors: the attempt failed, the next format still runs
        raise ModelError(f"NNCF accuracy control failed on {float_path.name}: {first_line(e)[:300]}") from None
    finally:
        log.removeHandler(catch)
    m = quant_meta(meta, "int8", {"scheme": "NNCF accuracy control", "max_drop": max_drop, "quantizers": n_q,
                              "kept_float": names,
                              "reverted": catch.lines[-1][:2000] if catch.lines else "none"}, len(calib))
    _embed(out, _with_io(out, m.copy(format=fmt)))
    return out


def reverted_fraction(path: Path) -> float:
    """The fraction of layers NNCF's accuracy control put back in float, from the artifact's metadata."""
    import re

    text = (read_meta(path).quantization or {}).get("reverted") or ""
    m = re.search(r"(\d+) out of (\d+) were reverted", text)
    return int(m.group(1)) / int(m.group(2)) if m and int(m.group(2)) else 0.0
