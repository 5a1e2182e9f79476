"""Run a recipe: steps in order, each cached by the content hash of its inputs and config.

Run folder::

    runs/<name>/
      recipe.yaml            the resolved recipe (after --set)
      steps/NN-<kind>-<key>/ one folder per step; step.json is written last and marks it done
      artifacts/             the deployable files with sidecars
      report.md, report.html, report.json, plots/

A re-run finds every finished step by its key and skips it; a step interrupted mid-way resumes
(training keeps a checkpoint per epoch). Changing any config or input changes the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from . import __version__
from .errors import ConfigError, GateError
from .fsutil import write_json_atomic, write_text_atomic
from .recipe import Recipe, check_names, load_recipe


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    p = Path(path)
    files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def step_key(kind: str, config: Any, inputs: dict[str, str]) -> str:
    blob = json.dumps({"kind": kind, "config": config, "inputs": inputs, "edgekit": __version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class StepRecord:
    index: int
    kind: str
    key: str
    folder: Path
    cached: bool = False
    seconds: float = 0.0
    outputs: dict = field(default_factory=dict)

    def row(self) -> dict:
        return {"step": f"{self.index:02d}", "kind": self.kind, "key": self.key,
                "status": "cached" if self.cached else "ran", "seconds": round(self.seconds, 1)}


class Run:
    def __init__(self, recipe: Recipe, out: Path, quiet: bool = False, say: Callable[[str], None] | None = None):
        self.recipe = recipe
        self.out = Path(out)
        self.quiet = quiet
        self.say = say or (lambda s: None)
        self.records: list[StepRecord] = []

    def step(self, kind: str, config: Any, inputs: dict[str, str], fn: Callable[[Path], dict]) -> StepRecord:
        """Run ``fn(folder) -> outputs`` unless a finished step with the same key exists."""
        idx = len(self.records) + 1
        key = step_key(kind, config, inputs)
        folder = self.out / "steps" / f"{idx:02d}-{kind}-{key}"
        marker = folder / "step.json"
        if marker.exists():
            rec = StepRecord(idx, kind, key, folder, cached=True, outputs=json.loads(marker.read_text())["outputs"])
            self.say(f"[{idx:02d}] {kind}: cached ({folder.name})")
            self.records.append(rec)
            return rec
        # Stale folders of this step index with another key belong to an older config.
        for old in (self.out / "steps").glob(f"{idx:02d}-{kind}-*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        self.say(f"[{idx:02d}] {kind} ...")
        t0 = time.time()
        outputs = fn(folder)
        rec = StepRecord(idx, kind, key, folder, cached=False, seconds=time.time() - t0, outputs=outputs)
        write_json_atomic(marker, {"kind": kind, "key": key, "config": config, "inputs": inputs,
                                   "outputs": outputs, "seconds": rec.seconds, "finished": time.time()})
        self.say(f"[{idx:02d}] {kind}: done in {rec.seconds:.1f}s")
        self.records.append(rec)
        return rec


def plan(recipe: Recipe) -> list[dict]:
    """The steps a run will take, for --dry-run."""
    r = recipe
    rows = []
    distill = next((s for s in r.steps if s.type == "distill"), None)
    if distill:
        rows.append({"step": "train teacher", "what": f"{distill.teacher.name} on {r.data.name}, "
                                                      f"{distill.teacher_epochs} epochs"})
        rows.append({"step": "train student alone", "what": f"{r.model.name}, {distill.epochs or r.train.epochs} epochs "
                                                            "(baseline for the distillation report)"})
        rows.append({"step": "distill", "what": f"{r.model.name} from {distill.teacher.name}, T={distill.temperature}, "
                                                f"alpha={distill.alpha}"})
    else:
        rows.append({"step": "train", "what": f"{r.model.name} on {r.data.name}, {r.train.epochs} epochs"})
    for s in r.steps:
        if s.type == "prune":
            rows.append({"step": "prune", "what": f"{s.mode} {s.sparsity:.0%}, fine-tune {s.epochs} epochs"})
    quant = next((s for s in r.steps if s.type == "quantize"), None)
    precisions = (["float32"] if r.export.float or not quant else []) + (["int8"] if quant else [])
    rows.append({"step": "export", "what": f"{', '.join(r.export.formats)} × {', '.join(precisions)}"})
    rows.append({"step": "evaluate + gate", "what": _gates_text(r)})
    rows.append({"step": "bench", "what": f"threads={r.bench.get('threads', 1)}, runs={r.bench.get('runs', 100)}"})
    rows.append({"step": "report", "what": "report.md, report.html, report.json"})
    return rows


def _gates_text(r: Recipe) -> str:
    g = r.gates
    parts = []
    if g.max_drop is not None:
        parts.append(f"drop <= {g.max_drop} pt")
    if g.min_top1 is not None:
        parts.append(f"top1 >= {g.min_top1}")
    if g.max_size_kb is not None:
        parts.append(f"size <= {g.max_size_kb} KB")
    if g.max_p50_ms is not None:
        parts.append(f"p50 <= {g.max_p50_ms} ms")
    return ", ".join(parts) or "none"


def prepare(source, sets=None, out=None) -> tuple[Recipe, dict, Path]:
    """Load, validate and name-check a recipe; nothing is trained here."""
    recipe, raw = load_recipe(source, sets)
    check_names(recipe)
    out_dir = Path(out) if out else Path("runs") / recipe.name
    return recipe, raw, out_dir


def run_recipe(source, sets=None, out=None, *, dry_run: bool = False, quiet: bool = False,
               say: Callable[[str], None] | None = None) -> dict:
    """Run a recipe end to end (see module docstring). Returns the report dict."""
    t0 = time.time()
    recipe, raw, out_dir = prepare(source, sets, out)
    if dry_run:
        return {"recipe": recipe.name, "out": str(out_dir), "plan": plan(recipe), "dry_run": True}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "recipe.yaml", yaml.safe_dump(raw, sort_keys=False))
    from .steps import execute

    run = Run(recipe, out_dir, quiet=quiet, say=say)
    report = execute(run)
    report["steps"] = [r.row() for r in run.records]
    from .reporting import write_reports

    paths = write_reports(report, out_dir)
    report["report_paths"] = {k: str(v) for k, v in paths.items()}
    report["seconds"] = round(time.time() - t0, 1)  # validation, steps and reports: the whole run
    write_json_atomic(out_dir / "report.json", report)
    failed = [f"{a['format']}/{a['precision']}" for a in report["artifacts"] if not a.get("gates_passed")]
    failed += [f"{f['format']}/int8 (not written: missed max_drop after remedies "
               f"{', '.join(x['remedy'] for x in f['attempts'])})" for f in report.get("failures", [])]
    if failed:
        raise GateError(f"Gates failed for {'; '.join(failed)}. Report: {paths['html']}")
    return report


def run_demo(out: str | os.PathLike | None = None, quiet: bool = False, say=None, sets=None) -> dict:
    """The built-in demo: recipes/kws-ds-cnn.yaml on synthesized keywords, end to end."""
    return run_recipe("kws-ds-cnn", sets=sets, out=out or Path("runs") / "demo", quiet=quiet, say=say)
