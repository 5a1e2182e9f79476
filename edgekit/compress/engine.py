"""``compress(model, data, ...)``: distill → prune → export float → int8 per format → gate → report.

``compress`` checks every input before any work starts, then chains the stage functions of
:mod:`edgekit.compress.stages` (the same ones a recipe's steps wrap in their cache).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import formats
from ..artifact import ArtifactMeta, provenance, read_meta, write_meta
from ..errors import ConfigError, DataError, GateError, ModelError
from ..fsutil import owned_partial
from ..passes import BenchConfig, DistillConfig, GateConfig, PruneConfig, QuantizeConfig
from . import stages
from .gate import TaskScore, judge, promote, top1_of
from .report import CompressReport, write_compress_report
# The stages, importable from here as before.
from .stages import (DevicePick, QuantizeOutcome, export_float, is_this_host, jsonable, keras_source,  # noqa: F401
                     ladder, measure_rows, pick_for_device, quantize_and_gate, quantize_format, quantize_gated,
                     target_arch)


@dataclass
class ExportConfig:
    formats: tuple = ("tflite", "onnx", "openvino")
    gate: GateConfig = field(default_factory=GateConfig)
    bench: BenchConfig | None = None  # latency of every artifact (threads, runs, warmup), as a recipe's bench:
    bench_runs: int | None = None  # shorthand for bench=BenchConfig(runs=N); 0 skips latency
    profile: str | None = None  # pick the fastest passing artifact for this device
    name: str | None = None  # file stem; default: the model's

    def validate(self) -> "ExportConfig":
        from ..export import exporters

        self.formats = tuple(exporters.parse_list(list(self.formats) if not isinstance(self.formats, str)
                                                  else self.formats))
        self.gate.validate()
        if self.bench_runs is not None and self.bench_runs < 0:
            raise ConfigError(f"bench_runs must be >= 0; received {self.bench_runs}")
        if self.bench is not None and self.bench_runs is not None and self.bench_runs != self.bench.runs:
            raise ConfigError(f"bench_runs ({self.bench_runs}) and bench.runs ({self.bench.runs}) disagree; give one")
        if self.bench is None and self.bench_runs != 0:
            self.bench = BenchConfig(**({"runs": self.bench_runs} if self.bench_runs else {}))
        if self.bench is not None:
            self.bench.validate()
        return self


# One result type for every face of compression (a Keras model here, a foreign one in foreign.py).
CompressResult = CompressReport


# --- inputs ------------------------------------------------------------------------------------------
def _load_model(model):
    """A keras.Model, or a .keras path with its sidecar metadata."""
    if isinstance(model, (str, os.PathLike)):
        from ..compat import load_keras_model

        p = Path(model)
        if p.suffix.lower() not in (".keras", ".h5"):
            raise ModelError(f"compress takes a Keras model (.keras); received {p.name}. Export comes after "
                             "compression, from the Keras model")
        return load_keras_model(p), read_meta(p), p
    return model, None, None


def _data_options(meta) -> dict:
    if meta is None:
        return {}
    opts = dict((meta.provenance or {}).get("data_options") or {})
    pre = meta.preprocessing or {}
    if pre.get("type") == "audio" and "frontend" in pre and "frontend" not in opts:
        opts["frontend"] = pre["frontend"]
    return opts


def _load_data(data, meta):
    """The dataset of the model's task: a detection set (YOLO, COCO, VOC or a built-in) for a detector, else a
    classification dataset; the other kind is a one-line DataError."""
    from ..data import Dataset, load_dataset
    from ..data.detection import DetectionSet, is_detection_data, load_detection

    detector = meta is not None and meta.task == "detection"
    if isinstance(data, (Dataset, DetectionSet)):
        ds = data
    elif detector:
        if not is_detection_data(data):
            raise DataError(f"The model is a detector; --data must be a detection dataset (a YOLO data.yaml, a COCO "
                            f"or VOC folder, or shapes); received {data}")
        ds = load_detection(data, seed=int((meta.provenance or {}).get("seed") or 0))
        if isinstance(data, (str, os.PathLike)):
            ds.name = str(data)  # as training recorded it: export's box check reloads held-out images from it
        return ds
    elif is_detection_data(data):
        raise DataError(f"{data} is a detection dataset, but the model is not a detector (task "
                        f"{getattr(meta, 'task', None) or 'classification'!r}); compress a detector on it")
    else:
        ds = load_dataset(data, **_data_options(meta))
    if (getattr(ds, "task", None) == "detection") != detector:
        raise DataError(f"Dataset {ds.name!r} is {'a detection' if not detector else 'not a detection'} dataset but "
                        f"the model {'is' if detector else 'is not'} a detector")
    return ds


def _check_detector_data(model, meta, ds) -> None:
    size = tuple(int(v) for v in (meta.preprocessing or {}).get("size") or ())
    want = tuple(model.inputs[0].shape[1:3])
    if size and want != size:
        raise DataError(f"Detector input {want} differs from its recorded preprocessing size {size}")
    if meta.labels and list(meta.labels) != list(ds.labels):
        raise DataError(f"Detector labels ({', '.join(map(str, meta.labels[:6]))}) differ from dataset "
                        f"{ds.name!r} labels ({', '.join(map(str, ds.labels[:6]))})")
    if "postprocess" not in (meta.extra or {}):
        raise ModelError("The detector's metadata has no extra.postprocess (its box decoding); re-export it with "
                         "edgekit train")


def _check_model_data(model, meta, ds) -> None:
    if getattr(ds, "task", None) == "detection":
        return _check_detector_data(model, meta, ds)
    want = tuple(model.inputs[0].shape[1:])
    if want != tuple(ds.input_shape):
        raise DataError(f"Model input shape {want} doesn't match dataset {ds.name!r} examples {ds.input_shape}")
    n = int(model.outputs[0].shape[-1])
    if n != ds.num_classes:
        raise DataError(f"Model has {n} outputs but dataset {ds.name!r} has {ds.num_classes} classes")
    if meta is not None and meta.labels and list(meta.labels) != list(ds.labels):
        raise DataError(f"Model labels ({', '.join(map(str, meta.labels[:6]))}...) differ from dataset "
                        f"{ds.name!r} labels ({', '.join(map(str, ds.labels[:6]))}...)")


def base_meta(meta: ArtifactMeta | None, ds, source) -> ArtifactMeta:
    m = meta.copy() if meta is not None else ArtifactMeta()
    m.task = ds.task
    m.labels = list(ds.labels)
    m.preprocessing = m.preprocessing or dict(ds.preprocessing)
    m.provenance = dict(m.provenance or {}, data=ds.name)
    if source is not None:
        m.provenance.setdefault("source", str(source))
    return m


# --- steps ---------------------------------------------------------------------------------------------
def _move_tree_files(src: dict, out_dir: Path, suffix_name: Callable[[str], str]) -> dict:
    out = {}
    for fmt, p in src.items():
        out[fmt] = promote(Path(p), out_dir / (suffix_name(fmt) + formats.get(fmt).suffix))
    return out


def pick_for_profile(rows, profile) -> dict | None:
    """The fastest artifact that passed the gate in a format the device runs (measured here)."""
    pick = pick_for_device(rows, profile, lambda r: r["gate"] in ("pass", "reference"))
    if pick is None:
        return None
    best = pick.row
    return {"profile": profile.name, "artifact": best["artifact"], "format": best["format"],
            "precision": best["precision"], "p50_ms": best.get("p50_ms"), "top1": best["top1"],
            "why": ("fastest artifact passing the gate among the device's formats "
                    f"({', '.join(pick.formats)}) and every precision made; latency measured on this host, not on "
                    "the device") if is_this_host(profile) else
                   ("the profile's preferred format and precision among the artifacts passing the gate in the "
                    f"device's formats ({', '.join(pick.formats)}); latency measured on this host, indicative only"),
            "note": pick.note}


def _inputs(model, data, teacher, distill, prune=None):
    """The model to compress (a zoo name is a distillation student), its teacher and the data, loaded and
    checked against each other: (student_is_name, model, meta, path, teacher, teacher meta, teacher path, ds)."""
    t_model = t_meta = t_path = None
    student_is_name = isinstance(model, str) and not Path(model).suffix and distill is not None
    if student_is_name:
        from ..zoo import models as zoo_models

        zoo_models.get(model)
        t_model, t_meta, t_path = _load_model(teacher)
        ds = _load_data(data, t_meta)
        from .distill import student_model

        src_model = student_model(model, ds)
        src_meta, src_path = None, None
    else:
        src_model, src_meta, src_path = _load_model(model)
        ds = _load_data(data, src_meta)
    if getattr(ds, "task", None) == "detection" and (distill is not None or prune is not None):
        raise ConfigError(f"{'Distillation' if distill is not None else 'Pruning'} of a detector is not supported "
                          "yet (its fine-tuning is classification training); give --quantize only")
    _check_model_data(src_model, src_meta, ds)
    if distill is not None:
        from .distill import check_teacher

        if not student_is_name:
            t_model, t_meta, t_path = _load_model(teacher)
        check_teacher(t_model, t_meta, src_model, ds)
    return student_is_name, src_model, src_meta, src_path, t_model, t_meta, t_path, ds


# --- the whole thing -----------------------------------------------------------------------------------
def compress(model, data, out_dir, *, prune: PruneConfig | None = None, distill: DistillConfig | None = None,
             teacher=None, quantize: QuantizeConfig | None = None, export: ExportConfig | None = None,
             calibration: np.ndarray | None = None, progress: Callable[[str], None] | None = None) -> CompressResult:
    """Compress a Keras model (``.keras`` path or keras.Model; with ``distill``, also a zoo model name)
    on ``data`` and write gated artifacts, ``report.json`` and ``report.md`` to ``out_dir``.

    Raises GateError (after writing the report) when an artifact misses ``max_drop`` and no
    remedy rescues it; that artifact is not written.
    """
    say = progress or (lambda s: None)
    export = (export or ExportConfig()).validate()
    for c in (prune, distill, quantize):
        if c is not None:
            c.validate()
    if distill is not None and teacher is None:
        raise ConfigError("Distillation needs a teacher model (--distill-from)")
    if teacher is not None and distill is None:
        distill = DistillConfig().validate()
    profile = None
    if export.profile:
        from ..devices import load_profile

        profile = load_profile(export.profile)
        if quantize is not None and quantize.target_arch is None:
            quantize.target_arch = target_arch(profile)
    if quantize is not None:
        formats.check_precisions(export.formats, quantize.precision)
    out_dir = Path(out_dir)

    # Inputs, all checked before any training or conversion.
    student_is_name, src_model, src_meta, src_path, t_model, t_meta, t_path, ds = _inputs(model, data, teacher,
                                                                                          distill, prune)
    calib_full = None
    if quantize is not None:
        from .quantize import calibration_set, check_calibration

        if calibration is not None:  # a detection set has no fixed example shape: the detector's input is it
            check_calibration(calibration, getattr(ds, "input_shape", None) or tuple(src_model.inputs[0].shape[1:]))
        if getattr(ds, "task", None) == "detection" and calibration is None:
            from .quantize import detection_calibration

            calib_full = detection_calibration(ds, src_meta, quantize)
        else:
            calib_full = calibration_set(ds, 10 ** 9, quantize.seed, calibration)
    split = export.gate.split if export.gate.split in ds.splits else "val"
    name = export.name or (src_path.stem if src_path is not None else str(getattr(src_model, "name", "model")))
    meta0 = base_meta(src_meta, ds, src_path or model)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage_root = owned_partial(out_dir, "compress")  # and sweeps those a killed compress left behind
    steps: dict[str, Any] = {}
    failures: list = []
    entries: list = []  # (kind, fmt, path, params, extra)
    t_start = time.time()
    try:
        current, changed = src_model, False
        if distill is not None:
            say(f"distilling {name} from {getattr(t_model, 'name', 'teacher')} ...")
            current, steps["distill"] = stages.distill(current, t_model, ds, distill, say)
            changed = True
        if prune is not None:
            say(f"pruning ({prune.mode}, {prune.sparsity:.0%}) ...")
            current, steps["prune"] = stages.prune(current, ds, prune, say)
            changed = True
        # The float reference: the model as given (for distillation, the teacher is the bar).
        ref_model = t_model if student_is_name else src_model
        score = TaskScore(ds, split, t_meta if student_is_name else src_meta)
        ref_top1 = score.reference(ref_model)
        steps["reference"] = {score.key: ref_top1, "metric": score.name, "unit": score.unit, "split": split,
                              "model": str(src_path or t_path or name)}
        say(f"float reference {score.name} on {split}: {ref_top1:.4f}")

        # Reference float artifacts (for size, latency and speed-up comparisons).
        ref_dir = out_dir / "reference"
        ref_name = name if not student_is_name else f"{name}_teacher"
        ref_src = (t_path or t_model) if student_is_name else (src_path or src_model)
        say("exporting the float reference ...")
        ref_stage = export_float(ref_src, export.formats, stage_root / "ref", ref_name, base_meta(
            t_meta if student_is_name else src_meta, ds, ref_src if isinstance(ref_src, Path) else None), say)
        ref_arts = _move_tree_files(ref_stage, ref_dir, lambda f: ref_name)
        ref_params = int(ref_model.count_params())
        for fmt, p in ref_arts.items():
            entries.append(("reference", fmt, p, ref_params, {"precision": "float32"}))

        params = int(current.count_params())
        float_src = {}
        comp_meta = meta0.copy()
        float_ok = True
        if changed:
            # The compressed Keras model is gated first: if it already misses, no export or int8 can
            # rescue it, and it is not saved.
            j = judge(score(current), ref_top1, export.gate.max_drop)
            steps["compressed_keras"] = j
            say(f"compressed float model: top-1 {j['top1']:.4f}, drop {j['drop']:.2f} points -> "
                + ("pass" if j["passed"] else "miss"))
            float_ok = j["passed"]
            if not float_ok:
                failures.append({"artifact": f"{name}_compressed.keras", "format": "keras",
                                 "attempts": [{"remedy": "none", **j}]})
        if changed and float_ok:
            # What was done, not how training went: per-epoch histories stay in report.json, out of every
            # artifact (they were 4 KB of each ds_cnn_s file, a tenth of its gzip size when 80% sparse).
            comp_meta.provenance = provenance(src_path or name, data=ds.name, step="compress", compress={
                k: jsonable({kk: vv for kk, vv in v.items() if kk != "history"})
                for k, v in steps.items() if k in ("prune", "distill")})
            comp_meta.metrics = {"top1": steps["compressed_keras"]["top1"], "split": split}
            _save_keras(current, out_dir / f"{name}_compressed.keras", comp_meta.copy(format="keras"))
            say(f"exporting the compressed float model ({params:,} parameters) ...")
            staged = export_float(current, export.formats, stage_root / "float", name, comp_meta, say)
            fg = stages.gate_floats(staged, ds, split, ref_top1, export.gate.max_drop, say, score)
            for fmt, p in fg.passed.items():
                float_src[fmt] = promote(p, out_dir / f"{name}_float{formats.get(fmt).suffix}")
                entries.append(("compressed", fmt, float_src[fmt], params, {"precision": "float32"}))
            for f in fg.failures:
                failures.append({"artifact": f"{name}_float{formats.get(f['format']).suffix}",
                                 "format": f["format"], "attempts": f["attempts"]})
        elif not changed:
            float_src = {f: p for f, p in ref_arts.items()}

        # Every precision per format, each gated, an int8 miss climbing the ladder.
        if quantize is not None and float_ok:
            q = quantize_and_gate(current, export.formats, float_src, stage_root, name, comp_meta, quantize,
                                  calib_full, ds, split, ref_top1, export.gate, say)
            steps["quantize"] = q.attempts
            for f in q.failures:
                failures.append({"artifact": f"{name}_{f['precision']}{formats.get(f['format']).suffix}", **f})
            for (fmt, _asked), got in q.passed.items():
                final = promote(got["path"], out_dir / f"{name}_{got['precision']}{formats.get(fmt).suffix}")
                entries.append(("compressed", fmt, final, params, {"precision": got["precision"],
                                                                   "remedy": got["remedy"]}))

        say("measuring artifacts (accuracy, size, gzip, sparsity, latency) ...")
        rows = measure_rows(entries, ds, split, ref_top1, export.bench, out_dir, say, score)
        failures += stages.measured_gates(rows, export.gate, ref_top1, out_dir, score.key)
        notes = stages.speed_notes(rows)
        chosen = pick_for_profile(rows, profile) if profile is not None else None
        steps["seconds"] = round(time.time() - t_start, 1)
        result = CompressReport(out_dir, rows, jsonable(steps), chosen, failures, notes)
        write_compress_report(result)
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)
    if failures:
        raise _gate_error(failures, export.gate.max_drop, out_dir, result, score.key, score.unit)
    return result


def _gate_error(failures: list, max_drop: float, out_dir: Path, result: CompressReport, key: str = "top1",
                unit: str = "points of top-1") -> GateError:
    """One error naming every artifact that missed a gate (after the report is written)."""
    lines = []
    for f in failures:
        if f.get("gates"):
            lines.append(f"{f['artifact']}: " + "; ".join(f"{k} {g['value']:.4g} (limit {g['limit']:g})"
                                                          for k, g in f["gates"].items() if not g["passed"]))
            continue
        last = f["attempts"][-1]
        tried = ", ".join(a["remedy"] for a in f["attempts"])
        lines.append(f"{f['artifact']}: {key} {last.get(key, float('nan')):.4f}, drop {last.get('drop', 0):.2f} "
                     f"{unit} (max {max_drop:g}); tried {tried}")
    what = "the accuracy gate" if not any(f.get("gates") for f in failures) else "a gate"
    err = GateError(f"Artifact(s) missed {what} and were not written: " + "; ".join(lines)
                    + f". Report: {out_dir / 'report.md'}")
    err.result = result  # the CLI still prints the table of what passed
    return err


def _save_keras(model, path: Path, meta: ArtifactMeta) -> None:
    # Keras insists on the .keras suffix, so the temporary name keeps it.
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_meta(path, meta)


