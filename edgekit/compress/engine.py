"""``compress(model, data, ...)``: distill → prune → export float → int8 per format → gate → report.

Each step is its own function with a typed config (``distill``, ``prune``, ``quantize`` and
``export_and_gate`` here), so a recipe can run them one by one; ``compress`` chains them and
checks every input before any work starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import formats
from ..artifact import ArtifactMeta, provenance, read_meta, write_meta
from ..errors import ConfigError, DataError, GateError, ModelError
from ..passes import DistillConfig, GateConfig, PruneConfig, QuantizeConfig
from .gate import discard, judge, promote, top1_of
from .report import ArtifactRow, CompressReport, relate_to_references, write_compress_report



@dataclass
class ExportConfig:
    formats: tuple = ("tflite", "onnx", "openvino")
    gate: GateConfig = field(default_factory=GateConfig)
    bench_runs: int = 100  # p50 latency here, 1 thread, per artifact; 0 skips latency
    profile: str | None = None  # pick the fastest passing artifact for this device
    name: str | None = None  # file stem; default: the model's

    def validate(self) -> "ExportConfig":
        from ..export import exporters

        self.formats = tuple(exporters.parse_list(list(self.formats) if not isinstance(self.formats, str)
                                                  else self.formats))
        self.gate.validate()
        if self.bench_runs < 0:
            raise ConfigError(f"bench_runs must be >= 0; received {self.bench_runs}")
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
    from ..data import Dataset, load_dataset

    if isinstance(data, Dataset):
        return data
    return load_dataset(data, **_data_options(meta))


def _check_model_data(model, meta, ds) -> None:
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
def export_float(model, formats, out_dir: Path, name: str, meta: ArtifactMeta, say) -> dict:
    """Float artifacts of ``model``, verified against it (1e-4, as edgekit export does)."""
    from ..export import export_model

    res = export_model(model, list(formats), out_dir, name=name, meta=meta, progress=say)
    return dict(res.artifacts)


def quantize_format(fmt: str, source, job) -> Path:
    """One ``job.precision`` artifact of ``source`` (:class:`~edgekit.compress.quantizers.ModelSource`) in ``fmt``
    under ``job.stage`` (not gated yet), by that format's quantizer in the registry."""
    from .quantizers import quantize

    return quantize(fmt, source, job)


def keras_source(model, float_artifact: Path | None = None):
    """A Keras model as a quantizer's source (attention marks a transformer for NNCF)."""
    from .quantize import _has_attention
    from .quantizers import ModelSource

    return ModelSource(model, float_artifact, transformer=_has_attention(model))


@dataclass
class QuantizeOutcome:
    """Every format x precision, each gated: what passed (staged, with the precision it shipped at and the rung
    of the ladder that passed), every attempt, and the misses."""

    passed: dict  # (format, precision asked) -> {"path": staged path, "precision": shipped, "remedy": rung}
    attempts: dict  # "format/precision" -> list of attempt dicts (remedy, precision, top1, drop, passed, ...)
    failures: list  # [{"format", "precision", "attempts"}] for those no rung rescued

    def remedy(self, fmt: str, precision: str = "int8") -> str:
        return self.passed[(fmt, precision)]["remedy"]


def quantize_and_gate(model, formats_: tuple | list, float_artifacts: dict, stage_root: Path, name: str,
                      meta: ArtifactMeta, cfg: QuantizeConfig, calib_full: np.ndarray, ds, split: str,
                      ref_top1: float, gate: GateConfig, say) -> QuantizeOutcome:
    """Every precision of ``cfg`` in every format, each gated against ``ref_top1``; an int8 miss climbs the
    ladder (``gate.remedies``).

    The stage of ``edgekit compress`` and of a recipe's quantize step alike; QAT, when a remedy needs it,
    is trained once and shared by the formats. ``name`` is the stem the artifacts' precision is appended to.
    """
    formats.check_precisions(formats_, cfg.precision)
    out = QuantizeOutcome({}, {}, [])
    qat_cache: dict = {}
    for prec in cfg.precision:
        for fmt in formats_:
            res = quantize_gated(fmt, model, float_artifacts.get(fmt), stage_root / f"{prec}-{fmt}", name, meta,
                                 cfg, calib_full, ds, split, ref_top1, gate, say, qat_cache, precision=prec)
            key = f"{fmt}/{prec}"
            out.attempts[key] = jsonable(res["attempts"])
            if res["path"] is None:
                out.failures.append({"format": fmt, "precision": prec, "attempts": out.attempts[key]})
            else:
                last = res["attempts"][-1]
                out.passed[(fmt, prec)] = {"path": res["path"], "precision": last["precision"],
                                           "remedy": last["remedy"]}
    return out


def target_arch(profile) -> str | None:
    """The CPU architecture int8 settings follow for a device profile (None: this machine)."""
    return profile.arch[0] if profile is not None and profile.arch else None


@dataclass
class DevicePick:
    row: dict  # the chosen row, as the caller gave it
    formats: list  # the formats the device runs
    note: str | None  # set when the measured pick differs from the profile's preference


def is_this_host(profile) -> bool:
    """Whether latency measured here stands for ``profile``'s device: same CPU architecture and the profile
    runs on a CPU (an NPU, a GPU or another architecture makes this host's timings indicative only)."""
    import platform

    if profile is None:
        return True
    device = ((profile.preferred or {}).get("device") or "cpu").lower()
    return profile.accepts_arch(platform.machine()) and device == "cpu"


def pick_for_device(rows: list[dict], profile, passed: Callable[[dict], bool]) -> DevicePick | None:
    """The row to deploy among those that ``passed``, in every format x precision the device's backends run
    (all formats without a profile).

    On this host (no profile, or a CPU profile of this architecture) the fastest measured row wins. For another
    device this host's latency says little (an NPU, an ARM core), so the profile's preference decides: its
    format first, its precisions in their order, then its backends' order and size; latency only breaks ties.
    When the pick is not a preferred one, the note says why.
    """
    fmts = sorted(formats.formats_for_backends(profile.backends)) if profile is not None else list(formats.FORMATS)
    ok = [r for r in rows if passed(r) and r["format"] in fmts]
    if not ok:
        return None
    pref = (profile.preferred or {}) if profile is not None else {}
    precs = list(pref.get("precision") or [])
    if isinstance(pref.get("precision"), str):
        precs = [pref["precision"]]
    here = is_this_host(profile)

    def rank(r):
        return precs.index(r["precision"]) if r["precision"] in precs else len(precs)

    def latency(r):
        return r["p50_ms"] if r.get("p50_ms") else float("inf")

    def backend_rank(r):
        b = formats.get(r["format"]).backend
        return profile.backends.index(b) if profile is not None and b in profile.backends else len(fmts)

    if here:
        best = min(ok, key=lambda r: (latency(r), r["format"] != pref.get("format"), rank(r), r["size_bytes"]))
    else:
        best = min(ok, key=lambda r: (r["format"] != pref.get("format"), rank(r), backend_rank(r), r["size_bytes"],
                                      latency(r)))
    note = None
    if profile is not None and pref and not (best["format"] == pref.get("format") and rank(best) < len(precs)):
        note = _not_preferred(profile, pref, precs, best, rows, ok, fmts, here)
    if not here:
        note = ((note + " ") if note else "") + (
            f"{profile.name} is not this host: picked by the profile's preference among the passing artifacts; "
            "p50 here is this host's CPU (1 thread), indicative only. Measure on the device (edgekit bench there).")
    return DevicePick(best, fmts, note)


def _not_preferred(profile, pref, precs, best, rows, ok, fmts, here: bool = True) -> str:
    """Why the measured pick is not the profile's preferred format and precision."""
    want = f"{pref.get('format')} {'/'.join(precs) or 'any precision'}"
    wanted = [r for r in ok if r["format"] == pref.get("format") and (not precs or r["precision"] in precs)]
    got = f"{best['format']} {best['precision']}"
    if wanted and not here:
        why = "it comes first in the profile's order among what passed"
    elif wanted:
        w = min(wanted, key=lambda r: r["p50_ms"] or float("inf"))
        why = (f"{got} ran {best['p50_ms']:.3g} ms against {w['p50_ms']:.3g} ms for {w['format']} {w['precision']}"
               if best.get("p50_ms") and w.get("p50_ms") else f"{got} measured faster")
    else:
        missed = [f"{r['format']} {r['precision']}" for r in rows if r["format"] == pref.get("format")
                  and (not precs or r["precision"] in precs) and r not in ok]
        why = (f"{', '.join(missed)} missed the gate" if missed else
               f"no {want} artifact was made (add it: --quantize {','.join(p for p in precs if p != 'float32')})"
               if [p for p in precs if p != "float32"] else f"no {want} artifact was made")
    device = f" on {pref['device']}" if pref.get("device") else ""
    if not here:
        return f"{profile.name} prefers {want}{device}; picked {got} because {why}."
    return (f"{profile.name} prefers {want}{device}; picked {got} because {why} on this build machine's CPU "
            "(1 thread). Measure on the device before choosing (edgekit bench there).")


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
    _check_model_data(src_model, src_meta, ds)
    if distill is not None:
        from .distill import check_teacher

        if not student_is_name:
            t_model, t_meta, t_path = _load_model(teacher)
        check_teacher(t_model, t_meta, src_model, ds)
    calib_full = None
    if quantize is not None:
        from .quantize import calibration_set, check_calibration

        if calibration is not None:
            check_calibration(calibration, ds.input_shape)
        calib_full = calibration_set(ds, 10 ** 9, quantize.seed, calibration)
    split = export.gate.split if export.gate.split in ds.splits else "val"
    name = export.name or (src_path.stem if src_path is not None else str(getattr(src_model, "name", "model")))
    meta0 = base_meta(src_meta, ds, src_path or model)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage_root = Path(tempfile.mkdtemp(prefix=".compress-", dir=out_dir))
    steps: dict[str, Any] = {}
    failures: list = []
    entries: list = []  # (kind, fmt, path, params, extra)
    t_start = time.time()
    try:
        current, changed = src_model, False
        if distill is not None:
            from .distill import distill as run_distill

            say(f"distilling {name} from {getattr(t_model, 'name', 'teacher')} ...")
            current, info = run_distill(current, t_model, ds, distill, say)
            steps["distill"] = info
            changed = True
        if prune is not None:
            from .prune import prune as run_prune

            say(f"pruning ({prune.mode}, {prune.sparsity:.0%}) ...")
            current, info = run_prune(current, ds, prune, say)
            steps["prune"] = {k: v for k, v in info.items() if k != "kept"}
            changed = True
        # The float reference: the model as given (for distillation, the teacher is the bar).
        ref_model = t_model if student_is_name else src_model
        ref_top1 = top1_of(ref_model, ds, split)
        steps["reference"] = {"top1": ref_top1, "split": split, "model": str(src_path or t_path or name)}
        say(f"float reference top-1 on {split}: {ref_top1:.4f}")

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
            j = judge(top1_of(current, ds, split), ref_top1, export.gate.max_drop)
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
            for fmt, p in staged.items():
                j = judge(top1_of(p, ds, split), ref_top1, export.gate.max_drop)
                if j["passed"]:
                    float_src[fmt] = promote(p, out_dir / f"{name}_float{formats.get(fmt).suffix}")
                    entries.append(("compressed", fmt, float_src[fmt], params, {"precision": "float32"}))
                else:
                    failures.append({"artifact": f"{name}_float{formats.get(fmt).suffix}", "format": fmt,
                                     "attempts": [{"remedy": "none", **j}]})
                    discard(p)
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
        rows = measure_rows(entries, ds, split, ref_top1, export.bench_runs, out_dir, say)
        failures += _measured_gates(rows, export.gate, ref_top1, out_dir)
        notes = _notes(rows, quantize)
        chosen = pick_for_profile(rows, profile) if profile is not None else None
        steps["seconds"] = round(time.time() - t_start, 1)
        result = CompressReport(out_dir, rows, jsonable(steps), chosen, failures, notes)
        write_compress_report(result)
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)
    if failures:
        lines = []
        for f in failures:
            if f.get("gates"):
                lines.append(f"{f['artifact']}: " + "; ".join(f"{k} {g['value']:.4g} (limit {g['limit']:g})"
                                                              for k, g in f["gates"].items() if not g["passed"]))
                continue
            last = f["attempts"][-1]
            tried = ", ".join(a["remedy"] for a in f["attempts"])
            lines.append(f"{f['artifact']}: top-1 {last.get('top1', float('nan')):.4f}, drop {last.get('drop', 0):.2f} "
                         f"points (max {export.gate.max_drop:g}); tried {tried}")
        what = "the accuracy gate" if not any(f.get("gates") for f in failures) else "a gate"
        err = GateError(f"Artifact(s) missed {what} and were not written: " + "; ".join(lines)
                        + f". Report: {out_dir / 'report.md'}")
        err.result = result  # the CLI still prints the table of what passed
        raise err
    return result


def _measured_gates(rows: list[ArtifactRow], gate: GateConfig, ref_top1: float, out_dir: Path) -> list:
    """The gates measured after the ladder (min_top1, max_size_kb, max_p50_ms; as a recipe's): a compressed
    artifact that misses one is deleted, its row says which, and it is a failure."""
    from .gate import check_gates

    if all(getattr(gate, k) is None for k in ("min_top1", "max_size_kb", "max_p50_ms")):
        return []
    failures = []
    for r in rows:
        if r.gate == "reference":
            continue
        g = check_gates(gate, top1=r.metrics["top1"], reference_top1=ref_top1, size_bytes=r.size_bytes,
                        p50_ms=r.p50_ms)
        missed = [k for k, v in g.items() if not v["passed"]]
        if missed:
            r.gate = "FAIL " + ",".join(missed)
            discard(out_dir / r.artifact)
            failures.append({"artifact": r.artifact, "format": r.format, "precision": r.precision,
                             "gates": g, "attempts": []})
    return failures


def measure_rows(entries, ds, split, ref_top1, bench_runs, out_dir: Path, say=lambda s: None) -> list[ArtifactRow]:
    """Every artifact of ``entries`` ((kind, format, path, params, extra)) measured: top-1 and its drop against
    ``ref_top1``, size, gzip size, sparsity, weight dtypes, p50 here; related to its format's float reference."""
    from .measure import measure

    rows = []
    for kind, fmt, path, params, extra in entries:
        say(f"measuring {Path(path).name} ...")
        m = measure(Path(path), ds, split, bench_runs)
        rows.append(ArtifactRow(str(Path(path).relative_to(out_dir)), fmt, extra.get("precision", "float32"),
                                gate="reference" if kind == "reference" else "pass",
                                metrics={"top1": m["top1"], "drop": 100.0 * (ref_top1 - m["top1"])},
                                drop_unit="points of top-1", size_bytes=m["size"], gzip_bytes=m["gzip"],
                                p50_ms=m["p50_ms"], remedy=extra.get("remedy"), sparsity=round(m["sparsity"], 4),
                                params=params, weights=m["weights"]))
    relate_to_references(rows)
    return rows


def ladder(fmt: str, precision: str, cfg: QuantizeConfig, gate: GateConfig) -> list[str]:
    """The rungs tried for ``precision`` in ``fmt``, in order, after the plain attempt ("none").

    int8: the configured remedies; int16x8 only where the format makes it and it was not asked for on its
    own (then it is gated on its own). int16x8: the calibration remedies. fp16 and int8-weights: none.
    """
    if precision == "int8":
        f = formats.get(fmt)
        # With --int8-io the caller wants int8 tensors at the edges; 16x8 would hand back float ones.
        return [r for r in gate.remedies if r != "int16x8" or ("int16x8" in f.precisions and not cfg.int8_io
                                                               and "int16x8" not in cfg.precision)]
    if precision == "int16x8":
        return [r for r in gate.remedies if r in ("more-calibration", "per-channel")]
    return []


def quantize_gated(fmt, model, float_artifact, stage, name, meta, cfg, calib_full, ds, split, ref_top1,
                   gate: GateConfig, say, qat_cache: dict, precision: str = "int8") -> dict:
    """Quantize, evaluate, and on a miss climb the ladder in order (the remedies are cumulative; the int16x8
    rung starts again from the calibration remedies, without the float-kept layers): a Keras source on the
    shared ladder (:func:`edgekit.compress.ladder.climb`) with the accuracy judge."""
    from . import task_judges  # noqa: F401  (registers the judges of tasks beyond classification)
    from .judge import AccuracyJudge, Score, judge_for
    from .ladder import Rung, climb
    from .quantize import calibration_set, rungs
    from .quantizers import QuantizeJob

    plan = [Rung(remedy, c, "int16x8" if remedy == "int16x8" else precision)
            for remedy, c in rungs(cfg, ladder(fmt, precision, cfg, gate), len(calib_full))]

    def make(i: int, rung: Rung) -> Path:
        c, prec = rung.config, rung.precision
        job = QuantizeJob(stage / f"try{i}", f"{name}_{prec}", meta, c,
                          calibration_set(None, c.calibration_samples, c.seed, calib_full), prec, say)
        if rung.remedy == "qat":
            # Trained once, shared by every format that needs it.
            if qat_cache.get("model") is None:
                from .qat import qat_model

                qat_cache["model"] = qat_model(model, ds, say=say)
            qm = qat_cache["model"]
            return quantize_format(fmt, keras_source(qm, None if fmt == "onnx" else float_artifact), job)
        return quantize_format(fmt, keras_source(model, float_artifact), job)

    judge = judge_for(ds, split)
    # Top-1's bar is the model before compression (ref_top1); another task's judge sets its own on the float
    # artifact of this format.
    ref = Score(float(ref_top1), "top-1") if isinstance(judge, AccuracyJudge) else judge.reference(float_artifact)
    path, attempts = climb(plan, make, judge, ref, gate.max_drop, say, fmt)
    return {"path": path, "attempts": [a.to_dict() for a in attempts]}


def _notes(rows: list[ArtifactRow], quantize) -> list:
    from .quantize import has_int8_dot

    notes = []
    for r in rows:
        if r.speedup is None:
            continue
        if r.precision in ("int8", "int16x8", "int8-weights") and r.speedup < 1.0:
            notes.append(f"{r.artifact}: {r.precision} is slower than float here ({r.p50_ms:.3g} ms vs float "
                         f"{r.p50_ms * r.speedup:.3g} ms, 1 thread); this CPU "
                         + ("has" if has_int8_dot() else "lacks") + " int8 dot-product instructions (VNNI). "
                         "Its win here is size; measure on the device.")
        elif r.precision == "fp16" and r.speedup < 0.95:
            notes.append(f"{r.artifact}: fp16 is slower than float here ({r.speedup:.2f}x, 1 thread): this "
                         "CPU computes it in float32 after converting the weights; fp16 pays on GPUs and NPUs.")
    return notes


def _save_keras(model, path: Path, meta: ArtifactMeta) -> None:
    # Keras insists on the .keras suffix, so the temporary name keeps it.
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_meta(path, meta)


def jsonable(o):
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if o is None or isinstance(o, (str, bool, int, float)):
        return o
    return str(o)  # Path and anything else JSON cannot hold
