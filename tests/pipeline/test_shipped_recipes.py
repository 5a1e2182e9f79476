"""Every shipped recipe (recipes/*.yaml) runs end to end on tiny settings, through report.md and report.html.

The settings are derived from each recipe's own structure (one epoch per training, a data limit, a
few calibration examples, loose accuracy gates), so a recipe added to recipes/ is covered without
editing this file. What is asserted is what a user gets: every format in both precisions, the
reports, and for a distilling recipe the teacher / student-alone / distilled numbers.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


def tiny_sets(raw: dict) -> list[str]:
    sets = ["data.limit=300", "train.epochs=1", "gates.max_drop=100", "bench.runs=3"]
    for key in ("min_top1", "max_p50_ms"):  # absolute bars mean nothing after one epoch on a loaded machine
        if key in (raw.get("gates") or {}):
            sets.append(f"gates.{key}=null")
    for i, step in enumerate(raw.get("steps") or []):
        if step["type"] == "distill":
            sets += [f"steps.{i}.teacher_epochs=1", f"steps.{i}.epochs=1"]
        elif step["type"] == "prune":
            sets.append(f"steps.{i}.epochs=1")
        elif step["type"] == "quantize":
            sets.append(f"steps.{i}.calibration_samples=32")
    return sets


def test_every_shipped_recipe_is_covered():
    assert {p.stem for p in RECIPES} >= {"image-mobilenet", "kws-ds-cnn", "kws-transformer", "detect-centernet"}


@pytest.mark.heavy  # minutes each: CI runs them after the default suite (.ci/run: -m heavy)
@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipe_runs_end_to_end(recipe, tmp_path):
    from edgekit.pipeline import run_recipe

    raw = yaml.safe_load(recipe.read_text())
    out = tmp_path / "run"
    rep = run_recipe(recipe, sets=tiny_sets(raw), out=out, quiet=True)

    formats = raw.get("export", {}).get("formats", ["tflite", "onnx", "openvino"])
    assert {(a["format"], a["precision"]) for a in rep["artifacts"]} == {
        (f, p) for f in formats for p in ("float32", "int8")}
    key = (rep.get("metric") or {}).get("key", "top1")  # a detector's recipe reports mAP@[.5:.95]
    for a in rep["artifacts"]:
        assert 0.0 <= a[key] <= 1.0 and a["p50_ms"] > 0 and a["size_bytes"] > 0
        assert a["drop"] == pytest.approx((rep[f"reference_{key}"] - a[key]) * 100)
        assert (out / a["published"]).exists()
    assert rep["best"] is not None and rep["best"]["format"] in formats
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert md.startswith(f"# {raw['name']}") and "| int8 |" in md
    assert "data:image/png;base64," in html and raw["name"] in html
    if any(s["type"] == "distill" for s in raw.get("steps") or []):
        d = rep["distillation"]
        for k in ("teacher_top1", "student_alone_top1", "student_distilled_top1"):
            assert 0.0 <= d[k] <= 1.0, (k, d)
        assert f"student trained alone {d['student_alone_top1']:.4f}" in md
    _renders(out / "report.html", tmp_path)


def _renders(page: Path, tmp: Path) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        return  # tests/pipeline/test_pipeline.py says why it skips; the HTML was checked above
    shot = tmp / "report.png"
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    f"--user-data-dir={tmp / 'profile'}", "--window-size=1200,1600", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=120)
    from PIL import Image

    colors = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 200, "the report page rendered (nearly) blank"
