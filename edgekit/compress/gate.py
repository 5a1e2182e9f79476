"""The accuracy gate: every exported artifact is evaluated on held-out data against the float model.

An artifact is built in a staging folder and promoted to its final name only when its top-1 drop
(in points) is within ``max_drop``; a miss is deleted, so nothing that failed ever sits under a
final name. Remedies for a quantized miss are tried in order by the pipeline (see ``REMEDIES``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..artifact import model_files, sidecar_path
from ..passes import GateConfig
from .judge import top1_of  # noqa: F401  (defined beside the judges, which read it; callers import it from here)


def is_detection(ds) -> bool:
    return getattr(ds, "task", None) == "detection"


def task_judge(ds, split: str, meta=None):
    """The judge of ``ds``'s task (top-1, or mAP for a detection set), ``meta`` the float model's when the
    judge reads a Keras model in memory (a detector's post-processing parameters)."""
    from . import task_judges  # noqa: F401  (registers the judges of tasks beyond classification)
    from .judge import judge_for

    j = judge_for(ds, split)
    if meta is not None and hasattr(j, "meta"):
        j.meta = meta
    return j


class TaskScore:
    """The headline metric of ``ds``'s task on ``ds[split]``, as a fraction: top-1 (:func:`top1_of`), or for a
    detection set mAP@[.5:.95] (centroid F1 for a FOMO model) through the device runtime and the one box decoding.
    ``reference(float model)`` fixes the metric (a detector's kind) and must come first; then ``key`` (the report
    column), ``name`` and ``unit`` (of drops) are known and ``__call__(artifact)`` scores any artifact."""

    def __init__(self, ds, split: str, meta=None):
        self.ds, self.split = ds, split
        self.judge = task_judge(ds, split, meta) if is_detection(ds) else None
        self.key = self.judge.key if self.judge else "top1"
        self.unit = "points of top-1"
        self.name = "top-1"

    def reference(self, model_or_path) -> float:
        if self.judge is None:
            return top1_of(model_or_path, self.ds, self.split)
        s = self.judge.reference(model_or_path)
        self.unit, self.name = self.judge.unit, s.unit
        return s.value

    def __call__(self, model_or_path) -> float:
        if self.judge is None:
            return top1_of(model_or_path, self.ds, self.split)
        return self.judge.score(model_or_path).value


def judge(top1: float, reference_top1: float, max_drop: float, key: str = "top1") -> dict:
    """``top1`` (or the task's metric, reported under ``key``) against the reference: drop in points, passed."""
    drop = 100.0 * (reference_top1 - top1)
    # A rounding hair must not fail an artifact that matches the reference exactly.
    return {key: top1, "drop": drop, "passed": bool(drop <= max_drop + 1e-9)}


def check_gates(gates, *, top1: float, reference_top1: float, size_bytes: int, p50_ms: float | None) -> dict:
    """Every gate ``gates`` sets (max_drop, min_top1, max_size_kb, max_p50_ms): limit, value, passed."""
    out = {}
    if getattr(gates, "max_drop", None) is not None:
        j = judge(top1, reference_top1, gates.max_drop)
        out["max_drop"] = {"limit": gates.max_drop, "value": j["drop"], "passed": j["passed"]}
    if getattr(gates, "min_top1", None) is not None:
        out["min_top1"] = {"limit": gates.min_top1, "value": top1, "passed": top1 >= gates.min_top1}
    if getattr(gates, "max_size_kb", None) is not None:
        kb = size_bytes / 1024
        out["max_size_kb"] = {"limit": gates.max_size_kb, "value": kb, "passed": kb <= gates.max_size_kb}
    if getattr(gates, "max_p50_ms", None) is not None:
        out["max_p50_ms"] = {"limit": gates.max_p50_ms, "value": p50_ms,
                             "passed": p50_ms is not None and p50_ms <= gates.max_p50_ms}
    return out


def promote(staged: Path, final: Path) -> Path:
    """Move a staged artifact (all its files and its sidecar) to its final name."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staged_files = model_files(staged)
    for f in staged_files[1:]:  # companions (OpenVINO .bin) first: the .xml must find its weights
        os.replace(f, final.with_suffix(f.suffix))
    if sidecar_path(staged).exists():
        os.replace(sidecar_path(staged), sidecar_path(final))
    os.replace(staged, final)
    return final


def discard(staged: Path) -> None:
    for f in model_files(staged) + [sidecar_path(staged)]:
        if f.exists():
            f.unlink()
    parent = staged.parent
    if parent.name.startswith(".") and parent.exists() and not any(parent.iterdir()):
        shutil.rmtree(parent, ignore_errors=True)
