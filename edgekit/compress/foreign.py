"""Bring your own model: int8 of an ONNX, TFLite or SavedModel classifier edgekit did not train,
gated on held-out images, with the preprocessing and labels recorded in every artifact.

What each input can become (the ``sources`` column of :mod:`edgekit.formats`, also what ``edgekit compress --help`` and the errors say):

* ONNX: int8 ONNX (ONNX Runtime static QDQ), OpenVINO IR float and int8 (``openvino.convert_model`` +
  NNCF). Not TFLite: the PyPI converters don't install next to edgekit (checked 2026-12: onnx2tf 1.29.24
  pins tensorflow 2.19, numpy 1.26, onnx 1.19, onnxruntime 1.23; onnx-tf 1.10.0 needs tensorflow-addons).
* TFLite (float): OpenVINO IR float and int8 (``openvino.convert_model`` reads .tflite). Not int8
  TFLite: the converter needs the source graph (a SavedModel), which a .tflite no longer has.
  Not ONNX. An int8 TFLite is refused: it is already quantized.
* SavedModel: TFLite, ONNX and OpenVINO IR, float and int8, through the same exporters and quantizers a
  ``.keras`` model goes through. Pruning and distillation need a trainable Keras model.

The gate: with class subfolders named after the model's labels, the usual accuracy gate (top-1 drop
against the float model). Without labels, a fidelity gate against the float model on the held-out
images: top-1 agreement (``--min-agreement``), the float top-1 inside the int8 top-5 (``--min-top5``) and
the probabilities' mean absolute error (reported). Remedies are the engine's, in its order, with NNCF's
accuracy-aware quantization (layers that cost the metric most go back to float) where QAT would come.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import formats
from ..artifact import ArtifactMeta, model_size, provenance, read_labels, read_meta
from ..errors import ConfigError, GateError, ModelError, first_line
from ..fsutil import owned_partial
from ..passes import GateConfig, QuantizeConfig
from .report import ArtifactRow, CompressReport, attempt_text, relate_to_references, write_compress_report
from .judge import fidelity, predict  # noqa: F401  (the judges' numbers; callers import them from here too)
from .quantizers.accuracy_control import (MAX_REVERTED, _embed, _ov, _with_io,  # noqa: F401  (importable here)
                                          accuracy_control, reverted_fraction)

KINDS = ("onnx", "tflite", "savedmodel")
# What each input can become is a column of the one format table (formats.py: Format.sources).
CAN_BECOME: dict[str, dict[str, tuple[bool, str]]] = {k: formats.can_become(k) for k in KINDS}
KIND_NAME = formats.SOURCE_NAMES
ORT_MIN_OPSET = 10


what_it_can_become = formats.what_it_can_become


# --- the source model, checked before any work ------------------------------------------------------
@dataclass
class Source:
    path: Path
    kind: str
    input_name: str
    input_shape: list  # None for dynamic dims
    output_width: int | None
    meta: ArtifactMeta | None
    opset: int | None = None


def source_kind(path) -> str | None:
    """onnx, tflite or savedmodel for a model file edgekit did not train; None for .keras and the rest."""
    p = Path(path)
    if p.is_dir():
        return "savedmodel" if (p / "saved_model.pb").exists() else None
    return {".onnx": "onnx", ".tflite": "tflite"}.get(p.suffix.lower())


def inspect_source(path, input_name: str | None = None) -> Source:
    """Read a foreign model's input and output and refuse what can't be compressed (ModelError/ConfigError)."""
    p = Path(path)
    kind = source_kind(p)
    if kind is None:
        raise ModelError(f"{p} is not an ONNX, TFLite or SavedModel model")
    meta = read_meta(p) if kind != "savedmodel" else None
    if kind == "savedmodel":
        ins, outs, opset = _savedmodel_io(p)
    else:
        from .. import runtime

        with runtime.load(p) as sess:
            ins = [(t.name, list(t.shape), t.dtype.name, t.quantized) for t in sess.inputs]
            outs = [list(t.shape) for t in sess.outputs]
        opset = _onnx_opset(p) if kind == "onnx" else None
        if kind == "tflite":
            _refuse_int8_tflite(p, ins)
    if opset is not None and opset < ORT_MIN_OPSET:
        import onnx

        raise ModelError(f"{p.name} is ONNX opset {opset}; int8 quantization (QuantizeLinear/DequantizeLinear) needs "
                         f"opset >= {ORT_MIN_OPSET} (this onnx supports up to {onnx.defs.onnx_opset_version()}). "
                         "Re-export with a newer opset, or convert: onnx.version_converter.convert_version(m, 13)")
    if opset is not None:
        import onnx

        top = onnx.defs.onnx_opset_version()
        if opset > top:
            raise ModelError(f"{p.name} is ONNX opset {opset}; the installed onnx/ONNX Runtime handle up to opset "
                             f"{top}. Re-export with --opset {top} or lower, or upgrade onnxruntime")
    names = [i[0] for i in ins]
    if input_name is None:
        if len(ins) != 1:
            raise ConfigError(f"{p.name} has {len(ins)} inputs ({', '.join(names)}); pass --input NAME for the image "
                              "input (edgekit compresses single-input image classifiers)")
        chosen = ins[0]
    else:
        if input_name not in names:
            raise ConfigError(f"--input {input_name!r} is not an input of {p.name}. Inputs: {', '.join(names)}")
        if len(ins) != 1:
            raise ConfigError(f"{p.name} has {len(ins)} inputs; edgekit compresses single-input image classifiers "
                              f"(--input {input_name} names one, but the others would need data too)")
        chosen = next(i for i in ins if i[0] == input_name)
    if np.dtype(chosen[2]).kind != "f":
        raise ModelError(f"{p.name}: input {chosen[0]!r} is {chosen[2]}; edgekit compresses float image models")
    width = outs[0][-1] if outs and outs[0] else None
    return Source(p, kind, chosen[0], chosen[1], int(width) if width else None, meta, opset)


def _onnx_opset(p: Path) -> int | None:
    import onnx

    try:
        m = onnx.load(str(p), load_external_data=False)
    except Exception as e:
        raise ModelError(f"{p} is not a readable ONNX model ({first_line(e)[:200]})") from None
    return next((int(o.version) for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def _refuse_int8_tflite(p: Path, ins) -> None:
    quantized_io = any(q or np.dtype(dt).kind in "iu" for _, _, dt, q in ins)
    weights = {}
    try:
        from .measure import weight_dtypes

        weights = weight_dtypes(p)
    except Exception:  # noqa: BLE001 - the weights scan is a second opinion; the I/O check stands alone
        pass
    if quantized_io or (weights and set(weights) <= {"int8", "uint8", "int32"}):
        raise ModelError(f"{p.name} is already an int8 TFLite model; there is nothing to quantize. Give its float "
                         "source (a float .tflite, a SavedModel or an ONNX)")


def _savedmodel_io(p: Path):
    from ..export.base import SourceModel

    src = SourceModel(path=p)
    try:
        ins = [(n, list(s), dt, False) for n, s, dt in src.input_specs]
        w = src.output_width()
    finally:
        src.cleanup()
    return ins, [[None, w]], None


# --- labels and preprocessing -----------------------------------------------------------------------
def model_labels(src: Source, labels_file) -> list[str]:
    lab = read_labels(labels_file) if labels_file is not None else list((src.meta.labels if src.meta else None) or [])
    if lab and src.output_width and len(lab) != src.output_width:
        raise ConfigError(f"{len(lab)} labels in {labels_file or 'the metadata'} for a model with {src.output_width} "
                          f"outputs ({src.path.name}): give exactly {src.output_width}, one per output")
    return lab


def model_preprocessing(src: Source, preprocess) -> tuple[dict, dict]:
    from ..preprocess import parse_preprocess, resolve

    user = parse_preprocess(preprocess)
    known = dict((src.meta.preprocessing if src.meta else None) or {})
    if known.get("type") == "image":
        user = {**{k: known[k] for k in ("size", "layout", "mean", "scale", "color", "channels") if k in known},
                **user}
        if "std" in user and "scale" in known:
            user.pop("scale")
    shape = list(src.input_shape)
    return resolve(user, shape, src.path.name)


# --- float references and int8 per format -----------------------------------------------------------
def _ov_convert(src_path: Path, out: Path, transform=None) -> Path:
    ov = _ov()
    try:
        m = ov.Core().read_model(str(src_path)) if src_path.suffix.lower() == ".xml" else ov.convert_model(str(src_path))
    except Exception as e:
        raise ModelError(f"openvino.convert_model could not read {src_path.name}: {first_line(e)[:300]}") from None
    if transform is not None:
        m = transform(m)
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(m, str(out), compress_to_fp16=False)
    return out


def float_reference(src: Source, fmt: str, stage: Path, name: str, meta: ArtifactMeta, say) -> Path:
    """The float model in ``fmt`` under ``stage`` with metadata: the source itself where it is that format."""
    stage.mkdir(parents=True, exist_ok=True)
    suffix = formats.get(fmt).suffix
    out = stage / f"{name}{suffix}"
    m = meta.copy(format=fmt, quantization={"precision": "float32"})
    if src.kind == fmt:
        shutil.copyfile(src.path, out)
    elif src.kind == "savedmodel":
        from ..export import export_model

        res = export_model(src.path, [fmt], stage / "x", name=name, meta=m, progress=say)
        shutil.rmtree(out, ignore_errors=True)
        from .gate import promote

        return promote(res.artifacts[fmt], out)
    elif fmt == "openvino":
        say(f"converting {src.path.name} to OpenVINO IR ...")
        _ov_convert(src.path, out)
    else:
        raise ConfigError(f"{fmt} from {KIND_NAME[src.kind]}: not available; {CAN_BECOME[src.kind][fmt][1]}")
    _embed(out, _with_io(out, m))
    return out


def foreign_source(src: Source, fmt: str, float_path: Path):
    """What a quantizer starts from for a foreign model in ``fmt``: the float reference file (ONNX, OpenVINO IR),
    and the SavedModel itself where there is one (TFLite needs the source graph)."""
    from .quantizers import ModelSource

    if not formats.can_become(src.kind)[fmt][0]:
        raise ConfigError(f"int8 {fmt} from {KIND_NAME[src.kind]}: not available; {CAN_BECOME[src.kind][fmt][1]}")
    return ModelSource(src.path if src.kind == "savedmodel" and fmt == "tflite" else None, float_path)


# One result type for every face of compression (mode "accuracy" or "fidelity" here).
ForeignResult = CompressReport


def plan_formats(kind: str, fmts, explicit: bool) -> tuple[list, list]:
    """The targets to build and the notes for the ones this input can't become (an error when asked for)."""
    ok, notes = [], []
    for f in fmts:
        can, why = CAN_BECOME[kind][f]
        if can:
            ok.append(f)
        elif explicit:
            raise ConfigError(f"{f} from {KIND_NAME[kind]}: not available; {why}")
        else:
            notes.append(f"{f}: not available from {KIND_NAME[kind]}; {why}")
    if not ok:
        raise ConfigError(f"None of the formats {', '.join(fmts)} can be made from {KIND_NAME[kind]}. "
                          + what_it_can_become(kind))
    return ok, notes


def check_foreign(model, *, prune: bool = False, distill: bool = False, quantize: bool = True) -> str:
    """The input kind, or the one-line reason a foreign model can't take these passes."""
    kind = source_kind(model)
    what = KIND_NAME[kind]
    for flag, used in (("--prune", prune), ("--distill-from", distill)):
        if used:
            raise ConfigError(f"{flag} needs a trainable Keras model (.keras); {Path(model).name} is {what}. "
                              f"Pruning and distillation are not available for it; use --quantize int8")
    if not quantize:
        raise ConfigError(f"Nothing to do for {what}: give --quantize int8. {what_it_can_become(kind)}")
    return kind


def compress_foreign(model, data, out_dir, *, quantize: QuantizeConfig | None = None, gate: GateConfig | None = None,
                     formats_: tuple = formats.FORMATS, explicit_formats: bool = False, labels=None,
                     preprocess=None, input_name: str | None = None, name: str | None = None,
                     bench_runs: int = 50, calibration: np.ndarray | None = None,
                     progress: Callable[[str], None] | None = None) -> ForeignResult:
    """int8 of a foreign ONNX/TFLite/SavedModel classifier ``model`` on the image folder ``data``, gated, with
    float references, ``report.json`` and ``report.md`` in ``out_dir``. Raises GateError (after the report) when
    an artifact misses the gate and no remedy rescues it; that artifact is not written."""
    from ..artifact import check_file_stem
    from .quantize import check_calibration

    say = progress or (lambda s: None)
    cfg = (quantize or QuantizeConfig()).validate()
    if cfg.precision != ["int8"]:
        raise ConfigError(f"A model edgekit did not train takes --quantize int8 only for now; received "
                          f"{','.join(cfg.precision)}")
    gate = (gate or GateConfig()).validate()
    out_dir = Path(out_dir)
    # Everything checked before any conversion.
    src = inspect_source(model, input_name)
    targets, notes = plan_formats(src.kind, list(formats_), explicit_formats)
    lab = model_labels(src, labels)
    pre, inferred = model_preprocessing(src, preprocess)
    name = check_file_stem(name or (src.path.stem if src.kind != "savedmodel" else src.path.name), "--name")
    from ..preprocess import load_image_data

    ds = load_image_data(data, pre, lab)
    x_cal, _ = ds.split("train")
    x_test, y_test = ds.split("test")
    if calibration is not None:
        check_calibration(calibration, tuple(x_cal.shape[1:]))
        x_cal = np.asarray(calibration, np.float32)
    mode = "accuracy" if ds.info["labelled"] else "fidelity"
    say(f"{src.path.name}: {src.kind}, input {src.input_name} {src.input_shape}, preprocessing {pre}; "
        f"{ds.info['images']} images ({len(x_cal)} calibration, {len(x_test)} held out), "
        f"{mode} gate")
    meta = ArtifactMeta(task="image-classification", labels=lab, preprocessing=pre, provenance=provenance(
        src.path, data=str(data), step="compress", foreign={"kind": src.kind, "input": src.input_name,
                                                            "inferred": inferred["inferred"],
                                                            "defaulted": inferred["defaulted"]}))
    if not lab:
        notes.append("no labels: pass --labels FILE (one per line) so eval, serve classify and the demos name classes")
    if inferred["defaulted"]:
        dflt = {"mean": "mean 0", "scale": "scale 1/255", "color": "RGB channel order"}
        notes.append("preprocessing not given, default used: " + ", ".join(dflt[k] for k in inferred["defaulted"])
                     + "; pass --preprocess if the model was trained otherwise")

    t0 = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    stage_root = owned_partial(out_dir, "compress")  # and sweeps those a killed compress left behind
    rows, failures, steps = [], [], {"mode": mode, "preprocessing": pre, "inferred": inferred,
                                     "calibration": len(x_cal), "held_out": len(x_test), "formats": targets}
    from .gate import promote

    try:
        refs, ref_out = {}, None
        for fmt in targets:
            staged = float_reference(src, fmt, stage_root / f"ref-{fmt}", name, meta, say)
            refs[fmt] = promote(staged, out_dir / "reference" / f"{name}{formats.get(fmt).suffix}")
        # One float reference for every gate: the source where the runtime loads it, else the first export.
        ref_path = src.path if src.kind != "savedmodel" else refs[targets[0]]
        judge, max_drop = foreign_judge(mode, x_test, y_test, gate)
        ref = judge.reference(ref_path)
        ref_out = judge.ref_out
        ref_top1 = ref.value if mode == "accuracy" else None
        steps["reference"] = {"model": str(ref_path), "top1": ref_top1, "split": "test"}
        for fmt, p in refs.items():
            rows.append(_row(p, out_dir, fmt, "float32", "reference", fidelity(ref_out, predict(p, x_test)), None))
        for fmt in targets:
            plan = foreign_plan(cfg, gate, len(x_cal), fmt)
            res = _quantize_gated(src, fmt, refs[fmt], stage_root / f"int8-{fmt}", name + "_int8", meta, plan,
                                  x_cal, judge, ref, max_drop, say)
            steps.setdefault("quantize", {})[fmt] = res["attempts"]
            if res["path"] is None:
                failures.append({"artifact": f"{name}_int8{formats.get(fmt).suffix}", "format": fmt,
                                 "attempts": res["attempts"]})
                continue
            final = promote(res["path"], out_dir / f"{name}_int8{formats.get(fmt).suffix}")
            last = res["attempts"][-1]
            rows.append(_row(final, out_dir, fmt, "int8", "pass", last["fidelity"], last["remedy"]))
        say("measuring size and latency ...")
        _sizes_and_speed(rows, out_dir, bench_runs)
        from .stages import speed_notes

        notes += speed_notes(rows)  # int8 slower than float on this CPU: said, as for edgekit's own models
        steps["seconds"] = round(time.time() - t0, 1)
        rule = (f"top-1 agreement >= {gate.min_agreement:g} and float top-1 in the int8 top-5 >= {gate.min_top5:g}"
                if mode == "fidelity" else f"top-1 drop <= {gate.max_drop:g} points (reference top-1 "
                                           f"{steps['reference']['top1']:.4f})")
        result = CompressReport(out_dir, rows, _jsonable(steps), None, _jsonable(failures), notes, mode, rule)
        write_compress_report(result)
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)
    if failures:
        lines = [f"{f['artifact']}: {attempt_text(_last_tried(f['attempts']), mode)}; tried "
                 + ", ".join(a["remedy"] for a in f["attempts"]) for f in failures]
        err = GateError(f"Artifact(s) missed the {mode} gate and were not written: " + "; ".join(lines)
                        + f". Report: {out_dir / 'report.md'}")
        err.result = result
        raise err
    return result


def _last_tried(attempts: list) -> dict:
    tried = [a for a in attempts if "skipped" not in a]
    return tried[-1] if tried else attempts[-1]


def foreign_plan(cfg: QuantizeConfig, gate: GateConfig, train_size: int, fmt: str):
    """The foreign ladder of ``fmt``: the engine's int8 remedies in its order, with NNCF's accuracy control in
    QAT's place (QAT trains a Keras model that a foreign input doesn't have). Mixed precision is left out (accuracy
    control already puts the layers that cost the metric back in float) and int16x8 isn't offered to foreign
    models; a format's own remedy only in that format (ONNX's nncf, whose quantizer the rungs after it keep:
    ladder.engine_of). On EfficientNet-Lite0 with its ImageNet head (250 held-out photo crops) ONNX Runtime's
    float-sensitive rung agreed with float on 0.92 and kept its 1280x1000 classifier float (0.476x the float
    file); NNCF's on 0.94, and 0.94 with that classifier's weights int8 (0.263x)."""
    from .ladder import Rung
    from .quantize import rungs

    plan = ["accuracy-control" if r == "qat" else r for r in gate.remedies
            if r not in ("mixed-precision", "int16x8") and formats.offers_remedy(fmt, r)]
    return [Rung(remedy, c, "int8") for remedy, c in rungs(cfg, plan, train_size)]


def foreign_judge(mode: str, x_test, y_test, gate: GateConfig):
    """(judge, max_drop in the judge's points) for a foreign model's gate."""
    from .judge import ArrayAccuracyJudge, FidelityJudge

    if mode == "accuracy":
        return ArrayAccuracyJudge(x_test, y_test), gate.max_drop
    j = FidelityJudge(x_test, gate.min_agreement, gate.min_top5)
    return j, j.max_drop


def _quantize_gated(src, fmt, float_path, stage, name, meta, plan, x_cal, judge, ref, max_drop, say) -> dict:
    """One format of a foreign model up the shared ladder (:func:`edgekit.compress.ladder.climb`)."""
    from .ladder import climb, engine_of
    from .quantize import calibration_set
    from .quantizers import AccuracyControl, QuantizeJob, quantize, weight_only_variants

    source = foreign_source(src, fmt, float_path)

    def make(i, rung):
        c = rung.config
        job = QuantizeJob(stage / f"try{i}", name, meta.copy(format="tflite") if fmt == "tflite" else meta, c,
                          calibration_set(None, c.calibration_samples, c.seed, x_cal), "int8", say,
                          engine=engine_of(plan, i))
        if rung.remedy == "accuracy-control":
            # The last remedy ranks layers by their cost on the calibration images: it gets all of them,
            # validated against the float model's top-1 there (the held-out images stay unseen until the judge).
            job.calibration = x_cal
            job.control = AccuracyControl(x_cal, predict(float_path, x_cal).reshape(len(x_cal), -1).argmax(1),
                                          max_drop)
        return quantize(fmt, source, job)

    def check(rung, path, a):
        if rung.remedy != "accuracy-control":
            return
        # Accuracy control can meet any gate by putting (nearly) everything back in float: measured on a
        # PyTorch MobileNetV3-style model with a 0.99 gate, a file 0.996x the float one. That is not int8.
        a.extra["size_x"] = model_size(path) / model_size(float_path)
        a.extra["reverted_fraction"] = reverted_fraction(path)
        if not (read_meta(path).quantization or {}).get("quantizers"):
            a.extra["reverted_fraction"] = 1.0  # NNCF gave up and handed back the float model (measured: OpenVINO)
        if a.extra["reverted_fraction"] > MAX_REVERTED:
            a.passed = False
            a.why = (f"accuracy control put {a.extra['reverted_fraction']:.0%} of the quantized layers back in "
                     f"float (more than {MAX_REVERTED:.0%}; file {a.extra['size_x']:.2f}x the float one): not an "
                     "int8 model")

    path, attempts = climb(plan, make, judge, ref, max_drop, say, fmt, check=check,
                           shrink=lambda rung, p: weight_only_variants(fmt, rung, p))
    return {"path": path, "attempts": [a.to_dict() for a in attempts]}


def _row(path: Path, out_dir: Path, fmt, precision, gate, fid: dict, remedy) -> ArtifactRow:
    return ArtifactRow(str(Path(path).relative_to(out_dir)), fmt, precision, gate,
                       metrics={k: fid[k] for k in ("agreement", "top5", "mean_abs_err")}, remedy=remedy)


def _sizes_and_speed(rows: list[ArtifactRow], out_dir: Path, bench_runs: int) -> None:
    from ..passes import BenchConfig
    from .stages import bench, bench_extra

    cfg = BenchConfig(runs=bench_runs).validate() if bench_runs else None
    for r in rows:
        p = out_dir / r.artifact
        r.size_bytes = model_size(p)
        lat = bench(p, cfg)
        r.p50_ms, r.p99_ms = (lat["p50_ms"], lat["p99_ms"]) if lat else (None, None)
        r.extra.update(bench_extra(lat))
    relate_to_references(rows)


def _jsonable(o):
    from .stages import jsonable

    return jsonable(o)
