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

import os
import time
from pathlib import Path
from typing import Callable

import yaml

from .errors import ConfigError, GateError
from .fsutil import write_text_atomic
from .recipe import Recipe, check_names, load_recipe
from .runcache import Run


def plan(recipe: Recipe) -> list[dict]:
    """The steps a run will take, for --dry-run."""
    r = recipe
    rows = []
    distill = next((s for s in r.steps if s.type == "distill"), None)
    if r.model.path is not None:
        rows.append({"step": "source", "what": f"{r.model.path} (not trained here; gated on {r.data.name})"})
    elif distill:
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
    precisions = (["float32"] if r.export.float or not quant else []) + (list(quant.precision) if quant else [])
    rows.append({"step": "export", "what": f"{', '.join(r.export.formats)} × {', '.join(precisions)}"})
    rows.append({"step": "evaluate + gate", "what": _gates_text(r)})
    rows.append({"step": "bench", "what": f"threads={r.bench.threads}, runs={r.bench.runs}"})
    rows.append({"step": "report", "what": "report.md, report.html, report.json"})
    return rows


def _gates_text(r: Recipe) -> str:
    from .steps import is_detection_recipe

    g = r.gates
    parts = []
    if g.max_drop is not None:
        parts.append(f"drop <= {g.max_drop} pt" + (" of mAP@[.5:.95]" if is_detection_recipe(r) else ""))
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
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; a run needs a folder (a new one, or an earlier run's)")
    parent = next((p for p in out_dir.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"--out {out_dir}: {parent} is a file, so the run folder can't be made under it")
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
    from .compress.report import write_report
    from .run_report import render_reports

    md, html = render_reports(report, out_dir)
    paths = {"md": out_dir / "report.md", "html": out_dir / "report.html"}
    report["report_paths"] = {k: str(v) for k, v in paths.items()}
    report["seconds"] = round(time.time() - t0, 1)  # validation, steps and reports: the whole run
    write_report(out_dir, report, md, html)
    failed = [f"{a['format']}/{a['precision']}" for a in report["artifacts"] if not a.get("gates_passed")]
    failed += [f"{f['format']}/{f.get('precision', 'int8')} (not written: missed max_drop after remedies "
               f"{', '.join(x['remedy'] for x in f['attempts'])})" for f in report.get("failures", [])]
    if failed:
        raise GateError(f"Gates failed for {'; '.join(failed)}. Report: {paths['html']}")
    return report


def run_demo(out: str | os.PathLike | None = None, quiet: bool = False, say=None, sets=None,
             streams: bool = True) -> dict:
    """The built-in demo: recipes/kws-ds-cnn.yaml on synthesized keywords, end to end; then (``streams``) each
    shipped artifact's post-processing is calibrated on the built-in calibration streams and measured on the
    held-out test streams (report["streams"]: recall and FA/h beside the clip accuracy)."""
    out_dir = Path(out or Path("runs") / "demo")
    report = run_recipe("kws-ds-cnn", sets=sets, out=out_dir, quiet=quiet, say=say)
    if streams:
        report["streams"] = stream_figures(out_dir, report, quiet=quiet, say=say)
        from .compress.report import write_report

        write_report(out_dir, report)
    return report


def stream_figures(run_dir: Path, report: dict | None = None, target_fa_per_hour: float = 1.0, quiet: bool = True,
                   say=None) -> dict:
    """Calibrate every artifact of a keyword run (written into its metadata) and measure it on the built-in
    test streams at its operating point."""
    from .apps.streams import calibrate_artifacts
    from .data.streams import builtin_streams

    t0 = time.time()
    paths = sorted(p for p in (Path(run_dir) / "artifacts").glob("*") if p.suffix in (".tflite", ".onnx", ".xml"))
    (say or (lambda s: None))(f"keyword streams: calibrating {len(paths)} artifacts for <= {target_fa_per_hour:g} FA/h")
    cal, test = builtin_streams("calibration", quiet=quiet), builtin_streams("test", quiet=quiet)
    rows = calibrate_artifacts(paths, cal, test, target_fa_per_hour, say=say)
    top1 = {(a["format"], a["precision"]): a.get("top1") for a in (report or {}).get("artifacts", [])}
    for r in rows:
        r["top1"] = top1.get((r["format"], r["precision"]))
    hours = {k: round(sum(s.seconds for s in v) / 3600, 3) for k, v in (("calibration", cal), ("test", test))}
    return {"target_fa_per_hour": target_fa_per_hour, "hours": hours, "rows": rows,
            "keywords": {"calibration": sum(len(s.keywords) for s in cal), "test": sum(len(s.keywords) for s in test)},
            "seconds": round(time.time() - t0, 1)}
