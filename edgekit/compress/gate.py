"""The accuracy gate: every exported artifact is evaluated on held-out data against the float model.

An artifact is built in a staging folder and promoted to its final name only when its top-1 drop
(in points) is within ``max_drop``; a miss is deleted, so nothing that failed ever sits under a
final name. Remedies for a quantized miss are tried in order by the pipeline (see ``REMEDIES``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..artifact import model_files, sidecar_path
from ..errors import ConfigError, allowed
from .quantize import REMEDIES


@dataclass
class GateConfig:
    max_drop: float = 1.0  # top-1 points the artifact may lose against the float model
    split: str = "test"
    remedies: tuple = REMEDIES

    def validate(self) -> "GateConfig":
        if not isinstance(self.max_drop, (int, float)) or self.max_drop != self.max_drop:
            raise ConfigError(f"max_drop must be a number of top-1 points; received {self.max_drop!r}")
        for r in self.remedies:
            if r not in REMEDIES:
                raise ConfigError(allowed(r, REMEDIES, "remedy"))
        return self


def top1_of(model_or_path, ds, split: str) -> float:
    """Top-1 on ``ds[split]`` through edgekit.evaluate (runtime sessions for exported files)."""
    from ..evaluate import evaluate

    return float(evaluate(model_or_path, ds, split=split)["top1"])


def judge(top1: float, reference_top1: float, max_drop: float) -> dict:
    drop = 100.0 * (reference_top1 - top1)
    # A rounding hair must not fail an artifact that matches the reference exactly.
    return {"top1": top1, "drop": drop, "passed": bool(drop <= max_drop + 1e-9)}


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
