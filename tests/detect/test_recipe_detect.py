"""recipes/detect-centernet.yaml: a detector's recipe end to end on tiny settings (train, int8 gated on mAP in
every format, bench, report with mAP against latency and size, a PR curve and held-out predictions), and its
mistakes named before any training."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.errors import ConfigError

RECIPE = Path(__file__).parents[2] / "recipes" / "detect-centernet.yaml"
TINY = ["data.limit=40", "train.epochs=2", "train.batch_size=8", "model.options={input_size: 96, width: 16}",
        "steps.0.calibration_samples=16", "bench.runs=3", "bench.warmup=1", "gates.max_drop=100"]


@pytest.mark.parametrize("sets,message", [
    (["data.name=digits"], "data.name: model 'centernet_lite0' is a detector; 'digits' is not detection data"),
    (["steps=[{type: prune, sparsity: 0.5}, {type: quantize}]"], "steps.0: a prune step is not supported for a "
                                                                 "detector"),
    (["model.options={input_size: large}"], "model.options.input_size must be a positive integer"),
    (["data.options={voices: 3}"], "data.options: unknown option 'voices'"),
])
def test_detect_recipe_mistakes_are_named_before_training(sets, message):
    from edgekit.pipeline import run_recipe

    with pytest.raises(ConfigError, match="^" + message.replace(".", r"\.").replace("(", r"\(")):
        run_recipe(RECIPE, sets=sets, dry_run=True)


def test_detect_recipe_plans():
    from edgekit.pipeline import run_recipe

    plan = run_recipe(RECIPE, dry_run=True)["plan"]
    assert [p["step"] for p in plan] == ["train", "export", "evaluate + gate", "bench", "report"]
    assert "mAP@[.5:.95]" in plan[2]["what"]


@pytest.mark.heavy  # ~2-3 minutes on 2 loaded cores: CI runs it with -m heavy
def test_detect_recipe_runs_end_to_end(tmp_path):
    from edgekit.pipeline import run_recipe

    out = tmp_path / "run"
    rep = run_recipe(RECIPE, sets=TINY, out=out, quiet=True)
    assert rep["metric"]["key"] == "map" and rep["metric"]["name"] == "mAP@[.5:.95]"
    assert {(a["format"], a["precision"]) for a in rep["artifacts"]} == {
        (f, p) for f in ("tflite", "onnx", "openvino") for p in ("float32", "int8")}
    for a in rep["artifacts"]:
        assert 0.0 <= a["map"] <= 1.0 and a["p50_ms"] > 0 and a["size_bytes"] > 0 and "top1" not in a
        assert a["drop"] == pytest.approx((rep["reference_map"] - a["map"]) * 100)
        assert a["units"]["drop"] == "points of mAP@[.5:.95]"
        assert (out / a["published"]).exists()
    # Every int8 rung was judged by MapJudge, in points of mAP, against the float artifact of its format.
    for fmt in ("tflite", "onnx", "openvino"):
        tries = rep["compression"]["quantize"]["attempts"][f"{fmt}/int8"]
        assert tries and all("map" in t and t["detection"]["images"] == 40 for t in tries)
    det = rep["detection"]
    assert det["images"] == 40 and len(det["pr50"]["keras float32"]) == 101
    assert all(0.0 <= p <= 1.0 for curve in det["pr50"].values() for p in curve)
    figs = det["figures"]
    assert (out / figs["pr_curve"]).stat().st_size > 5000 and (out / figs["samples"]).stat().st_size > 20000
    assert figs["samples_artifact"].endswith(("_int8.tflite", "_int8.onnx", "_int8.xml"))
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "| mAP@[.5:.95] |" in md and "![pr curve]" in md and "![samples]" in md
    assert "Detection: precision-recall and held-out predictions" in html
    assert html.count("data:image/png;base64,") >= 4  # mAP vs latency and vs size, the PR curve, the samples
