"""The stages of compression: distill, prune, export-float (gated), quantize (gated, on the ladder), measure,
pick.

``edgekit compress`` (:func:`edgekit.compress.engine.compress`) chains them; a recipe's steps
(:mod:`edgekit.steps`) wrap each in their content-hash cache. Each rule lives here once, so the two faces
cannot drift:

* the distillation student is built by :func:`distill` from a zoo name and the model's options, BatchNorm
  momentum 0.9 unless the options set it (:func:`edgekit.compress.distill.student_model`);
* every exported float artifact is gated against the reference before it becomes a quantization source
  (:func:`gate_floats`), not only the Keras model;
* latency is measured by :func:`bench` with a typed :class:`~edgekit.passes.BenchConfig` (threads, runs,
  warmup) in a fresh process, for every artifact whichever face asked, and :func:`pick_for_device` picks from
  those numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import formats
from ..artifact import ArtifactMeta
from ..passes import BenchConfig, DistillConfig, GateConfig, PruneConfig, QuantizeConfig
from .gate import discard, judge, top1_of
from .report import ArtifactRow, relate_to_references


# --- distill, prune --------------------------------------------------------------------------------------
def distill(student, teacher, ds, cfg: DistillConfig, say: Callable[[str], None] = lambda s: None,
            options: dict | None = None):
    """``(distilled student, info)``. ``student`` is a Keras model or a zoo name; a name is built with
    ``options`` (the recipe's ``model.options``; none for ``edgekit compress``) by the one student rule,
    BatchNorm momentum 0.9 unless ``options`` set it."""
    from .distill import distill as run_distill
    from .distill import student_model

    if isinstance(student, str):
        student = student_model(student, ds, options)
    return run_distill(student, teacher, ds, cfg, say)


def prune(model, ds, cfg: PruneConfig, say: Callable[[str], None] = lambda s: None):
    """``(pruned model, info)``; ``info`` without the kept-channel masks (they are not JSON)."""
    from .prune import prune as run_prune

    pruned, info = run_prune(model, ds, cfg, say)
    return pruned, {k: v for k, v in info.items() if k != "kept"}


# --- export float, gated ---------------------------------------------------------------------------------
def export_float(model, formats, out_dir: Path, name: str, meta: ArtifactMeta, say) -> dict:
    """Float artifacts of ``model``, verified against it (1e-4, as edgekit export does)."""
    from ..export import export_model

    res = export_model(model, list(formats), out_dir, name=name, meta=meta, progress=say)
    return dict(res.artifacts)


@dataclass
class FloatGate:
    """The float artifacts that passed (still where they were staged) and one failure per miss."""

    passed: dict  # format -> staged path
    failures: list  # [{"format", "path", "attempts": [{"remedy": "none", "top1", "drop", "passed"}]}]


def gate_floats(staged: dict, ds, split: str, ref_top1: float, max_drop: float,
                say: Callable[[str], None] = lambda s: None, score=None) -> FloatGate:
    """Every exported float artifact judged on ``ds[split]`` against ``ref_top1`` (points of top-1, as the
    int8 gate): a miss is deleted and is no quantization source. The rule of both faces (recipes gated only
    their Keras model before). ``score`` (a :class:`~edgekit.compress.gate.TaskScore` whose reference was taken)
    judges another task's metric (a detector's mAP) in its points."""
    out = FloatGate({}, [])
    key, name = (score.key, score.name) if score is not None else ("top1", "top-1")
    for fmt, p in staged.items():
        j = judge(score(p) if score is not None else top1_of(p, ds, split), ref_top1, max_drop, key)
        say(f"float {fmt}: {name} {j[key]:.4f}, drop {j['drop']:.2f} points -> " + ("pass" if j["passed"] else "miss"))
        if j["passed"]:
            out.passed[fmt] = Path(p)
        else:
            out.failures.append({"format": fmt, "path": str(p), "attempts": [{"remedy": "none", **j}]})
            discard(Path(p))
    return out


# --- measure ---------------------------------------------------------------------------------------------
def bench(path: Path, cfg: BenchConfig | None) -> dict | None:
    """Latency of one artifact with ``cfg``'s threads, runs and warmup, in a fresh process (as ``edgekit
    bench``): the one measurement both faces feed the pick. ``None`` measures nothing."""
    if cfg is None:
        return None
    from .measure import latency

    # threads and runs as the benchmark reports them, so a row says what was measured, not what was asked.
    return {**latency(Path(path), threads=cfg.threads, runs=cfg.runs, warmup=cfg.warmup), "warmup": cfg.warmup}


# --- quantize, on the ladder ---------------------------------------------------------------------------
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



def measured_gates(rows: list[ArtifactRow], gate: GateConfig, ref_top1: float, out_dir: Path,
                   key: str = "top1") -> list:
    """The gates measured after the ladder (min_top1, max_size_kb, max_p50_ms; as a recipe's): a compressed
    artifact that misses one is deleted, its row says which, and it is a failure."""
    from .gate import check_gates

    if all(getattr(gate, k) is None for k in ("min_top1", "max_size_kb", "max_p50_ms")):
        return []
    failures = []
    for r in rows:
        if r.gate == "reference":
            continue
        g = check_gates(gate, top1=r.metrics[key], reference_top1=ref_top1, size_bytes=r.size_bytes,
                        p50_ms=r.p50_ms)
        missed = [k for k, v in g.items() if not v["passed"]]
        if missed:
            r.gate = "FAIL " + ",".join(missed)
            discard(out_dir / r.artifact)
            failures.append({"artifact": r.artifact, "format": r.format, "precision": r.precision,
                             "gates": g, "attempts": []})
    return failures


def measure_rows(entries, ds, split, ref_top1, bench_cfg: BenchConfig | None, out_dir: Path,
                 say=lambda s: None, score=None) -> list[ArtifactRow]:
    """Every artifact of ``entries`` ((kind, format, path, params, extra)) measured: top-1 (``score``'s metric
    when given: a detector's mAP) and its drop against ``ref_top1``, size, gzip size, sparsity, weight dtypes,
    latency by :func:`bench`; related to its format's float reference."""
    from ..artifact import model_size
    from .measure import gzip_size, weight_bytes, weight_dtypes, weight_sparsity

    rows = []
    for kind, fmt, path, params, extra in entries:
        path = Path(path)
        say(f"measuring {path.name} ...")
        top1 = score(path) if score is not None else top1_of(path, ds, split)
        lat = bench(path, bench_cfg)
        rows.append(ArtifactRow(str(path.relative_to(out_dir)), fmt, extra.get("precision", "float32"),
                                gate="reference" if kind == "reference" else "pass",
                                metrics={score.key if score is not None else "top1": top1,
                                         "drop": 100.0 * (ref_top1 - top1)},
                                drop_unit=score.unit if score is not None else "points of top-1", size_bytes=model_size(path), gzip_bytes=gzip_size(path),
                                p50_ms=lat["p50_ms"] if lat else None, p99_ms=lat["p99_ms"] if lat else None,
                                remedy=extra.get("remedy"), sparsity=round(weight_sparsity(path), 4),
                                params=params, weights=weight_dtypes(path), weight_bytes=weight_bytes(path),
                                extra=bench_extra(lat)))
    relate_to_references(rows)
    return rows


def bench_extra(lat: dict | None) -> dict:
    """What a report row says of how its latency was measured (the same keys in every face)."""
    if not lat:
        return {}
    return {"bench": {k: lat[k] for k in ("threads", "runs", "warmup", "backend") if k in lat}}


def speed_notes(rows: list[ArtifactRow]) -> list:
    """What the measured latencies say that a reader would not expect (int8 or fp16 slower than float on this
    CPU, and why), for every face's report."""
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


def ladder(fmt: str, precision: str, cfg: QuantizeConfig, gate: GateConfig, detection: bool = False) -> list[str]:
    """The rungs tried for ``precision`` in ``fmt``, in order, after the plain attempt ("none").

    int8: the configured remedies; int16x8 only where the format makes it and it was not asked for on its
    own (then it is gated on its own). int16x8: the calibration remedies. fp16 and int8-weights: none.
    """
    if precision == "int8":
        f = formats.get(fmt)
        # QAT retrains with the classification loss: a detector's ladder stops before it.
        rem = [r for r in gate.remedies if (r != "qat" or not detection)
               and formats.offers_remedy(fmt, r)]
        # With --int8-io the caller wants int8 tensors at the edges; 16x8 would hand back float ones.
        return [r for r in rem if r != "int16x8" or ("int16x8" in f.precisions and not cfg.int8_io
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
    from .ladder import Rung, climb, engine_of
    from .quantize import calibration_set, rungs
    from .quantizers import QuantizeJob, weight_only_variants

    plan = [Rung(remedy, c, "int16x8" if remedy == "int16x8" else precision)
            for remedy, c in rungs(cfg, ladder(fmt, precision, cfg, gate, getattr(ds, "task", None) == "detection"),
                                   len(calib_full))]

    def make(i: int, rung: Rung) -> Path:
        c, prec = rung.config, rung.precision
        job = QuantizeJob(stage / f"try{i}", f"{name}_{prec}", meta, c,
                          calibration_set(None, c.calibration_samples, c.seed, calib_full), prec, say,
                          engine=engine_of(plan, i))
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
    path, attempts = climb(plan, make, judge, ref, gate.max_drop, say, fmt,
                           shrink=lambda rung, p: weight_only_variants(fmt, rung, p))
    return {"path": path, "attempts": [a.to_dict() for a in attempts]}



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
