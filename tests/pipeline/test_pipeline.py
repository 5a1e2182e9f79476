"""A real run of a tiny recipe: artifacts, gates, reports, cache reuse, and the page in a browser."""

import json
import shutil
import subprocess
import time

import pytest

from edgekit.pipeline import run_recipe


def test_run_produces_gated_artifacts_and_reports(tiny_run):
    rep, out = tiny_run["report"], tiny_run["out"]
    assert [s["kind"] for s in rep["steps"]] == ["train-float", "prune-magnitude", "export-float", "quantize-int8",
                                                 "evaluate", "bench"]
    assert {(a["format"], a["precision"]) for a in rep["artifacts"]} == {
        (f, p) for f in ("tflite", "onnx", "openvino") for p in ("float32", "int8")}
    assert rep["reference_top1"] > 0.6, "the tiny model must learn, or the gates say nothing"
    # the bar is the float model before pruning, not the pruned one
    assert rep["reference_top1"] == rep["training"]["float"]["top1"]
    for a in rep["artifacts"]:
        assert a["drop"] == pytest.approx((rep["reference_top1"] - a["top1"]) * 100)
    pruned = rep["compression"]["prune-magnitude"]
    assert 0.45 <= pruned["sparsity"] <= 0.55
    for a in rep["artifacts"]:
        assert a["gates"]["max_drop"]["passed"] and a["gates"]["max_size_kb"]["passed"]
        assert a["gates_passed"] and 0 < a["p50_ms"] <= a["p99_ms"]
        assert a["drop"] <= 2.0
        assert (out / a["published"]).exists() and (out / (a["published"] + ".json")).exists()
        if a["precision"] == "float32":
            # verified against Keras at export, so they score what the pruned Keras model scores
            assert a["top1"] == pytest.approx(rep["compressed_keras_top1"], abs=1e-9)
            assert 0.45 <= a["sparsity"] <= 0.55 and a["gzip_bytes"] < 0.8 * a["size_bytes"]
        else:
            # At 24k parameters graph overhead dominates raw file size (OpenVINO's XML most); gzip size
            # tracks the weights. The <=0.30x goal on zoo-sized models is in benchmarks/compress_goals.py.
            fl = next(f for f in rep["artifacts"] if f["format"] == a["format"] and f["precision"] == "float32")
            assert a["gzip_bytes"] < 0.6 * fl["gzip_bytes"], a["format"]
            assert a["size_ratio"] < 1.0
    # The target (raspberry-pi-5: ARM) is not this host, so the pick follows its profile (tflite int8) among what
    # passed, not this CPU's latency (issue 23); the note says the host's p50 is indicative only.
    assert (rep["best"]["format"], rep["best"]["precision"], rep["best"]["by"]) == ("tflite", "int8",
                                                                                    "profile preference")
    assert "indicative only" in rep["best"]["note"]
    for f in ("report.md", "report.html", "report.json", "recipe.yaml", "plots/accuracy_vs_latency.png",
              "plots/accuracy_vs_size.png"):
        assert (out / f).exists(), f
    md = (out / "report.md").read_text()
    assert "| tflite | int8 |" in md and "| openvino | float32 |" in md
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    assert json.loads((out / "report.json").read_text())["recipe"] == "tiny"


def test_second_run_reuses_every_step(tiny_run):
    t0 = time.time()
    rep = run_recipe(tiny_run["recipe"], out=tiny_run["out"], quiet=True)
    assert all(s["status"] == "cached" for s in rep["steps"])
    assert [a["top1"] for a in rep["artifacts"]] == [a["top1"] for a in tiny_run["report"]["artifacts"]]
    assert time.time() - t0 < 120  # generous on a loaded CI box; the 30 s goal is timed in the closing note


def test_changing_one_step_reruns_only_what_depends_on_it(tiny_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_run["out"], out)
    rep = run_recipe(tiny_run["recipe"], sets=["bench.runs=12"], out=out, quiet=True)
    status = {s["kind"]: s["status"] for s in rep["steps"]}
    assert status == {"train-float": "cached", "prune-magnitude": "cached", "export-float": "cached",
                      "quantize-int8": "cached", "evaluate": "cached", "bench": "ran"}


def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium); can't check the page renders")
    shot = tmp_path / "report.png"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600", f"--screenshot={shot}",
           (tiny_run["out"] / "report.html").as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    colors = img.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 200, "the screenshot is (nearly) blank: the page didn't render its plots"


def test_dry_run_trains_nothing(cli, tiny_run, tmp_path):
    out = tmp_path / "dry"
    proc = cli("run", str(tiny_run["recipe"]), "--dry-run", "--out", str(out))
    assert proc.returncode == 0 and "train" in proc.stdout and not out.exists()


def test_compression_that_loses_too_much_stops_before_export(cli, tiny_run, tmp_path):
    out = tmp_path / "harsh"
    shutil.copytree(tiny_run["out"], out)
    shutil.rmtree(out / "artifacts")
    proc = cli("run", str(tiny_run["recipe"]), "--out", str(out), "-q",
               "--set", "steps.0.sparsity=0.99", "--set", "steps.0.epochs=1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "points lost, gate max_drop is 2" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "artifacts").exists(), "nothing may be published when the gate is missed"
