"""A recipe on a model edgekit did not train (model.path): the foreign ONNX model of the byom fixture, int8 in
ONNX and OpenVINO IR up the shared ladder, evaluated, benched, gated, picked and published like a trained
model's, cached on a re-run; and what such a recipe can't do is refused at --dry-run."""

import pytest

from .conftest import write_recipe


def _recipe(byom, **over) -> str:
    v = {"formats": "[onnx, openvino]", "steps": "[{type: quantize, precision: int8, calibration_samples: 30}]",
         "extra": "", **over}
    return f"""
name: byom-onnx
data: {{name: '{byom['labelled']}'}}
model: {{path: '{byom['onnx']}', preprocess: imagenet, labels: '{byom['labels']}'{v['extra']}}}
steps: {v['steps']}
export: {{formats: {v['formats']}}}
target: x86-cpu
gates: {{max_drop: 5.0}}
bench: {{threads: 1, runs: 5, warmup: 1}}
"""


def test_a_recipe_runs_a_foreign_onnx_model_end_to_end(byom, tmp_path):
    from edgekit.artifact import read_meta
    from edgekit.pipeline import run_recipe

    p = write_recipe(tmp_path, _recipe(byom))
    out = tmp_path / "run"
    rep = run_recipe(p, out=out, quiet=True)
    assert {(a["format"], a["precision"]) for a in rep["artifacts"]} == {
        (f, q) for f in ("onnx", "openvino") for q in ("float32", "int8")}
    assert 0.5 < rep["reference_top1"] <= 1.0
    for a in rep["artifacts"]:
        assert a["gates_passed"] and a["p50_ms"] > 0 and a["size_bytes"] > 0
        assert a["drop"] == pytest.approx((rep["reference_top1"] - a["top1"]) * 100)
        assert (out / a["published"]).exists()
    int8 = next(a for a in rep["artifacts"] if (a["format"], a["precision"]) == ("onnx", "int8"))
    meta = read_meta(out / int8["published"])
    assert meta.labels == list(byom["classes"]) and meta.quantization["precision"] == "int8"
    assert meta.preprocessing["layout"] == "NCHW"
    assert rep["best"]["format"] in ("onnx", "openvino") and rep["best"]["by"] == "latency here"
    assert "| int8 |" in (out / "report.md").read_text()
    again = run_recipe(p, out=out, quiet=True)
    assert {s["status"] for s in again["steps"]} == {"cached"}
    assert [a["top1"] for a in again["artifacts"]] == [a["top1"] for a in rep["artifacts"]]


@pytest.mark.parametrize("over,message", [
    ({"formats": "[tflite]"}, "export.formats: tflite from an ONNX model: not available"),
    ({"steps": "[{type: prune, sparsity: 0.5}, {type: quantize}]"}, "--prune needs a trainable Keras model"),
    ({"steps": "[{type: quantize, precision: [int8, fp16]}]"}, "int8 only"),
    ({"extra": ", name: ds_cnn_s"}, "give either name"),
    ({"extra": ", options: {alpha: 1}"}, "options are zoo builder options"),
])
def test_a_foreign_recipe_is_checked_before_any_work(byom, tmp_path, over, message, invoke_cli):
    p = write_recipe(tmp_path, _recipe(byom, **over))
    code, out, err = invoke_cli(["run", str(p), "--dry-run", "--out", str(tmp_path / "o")])
    assert code == 2 and "Traceback" not in err, err
    assert message in err, err
    assert not (tmp_path / "o").exists()


def test_a_foreign_recipe_plans_without_training(byom, tmp_path, invoke_cli):
    p = write_recipe(tmp_path, _recipe(byom))
    code, out, err = invoke_cli(["run", str(p), "--dry-run", "--out", str(tmp_path / "o")])
    assert code == 0, err
    steps = [line.split()[0] for line in out.splitlines()[3:] if line.strip()]
    assert steps[0] == "source" and not any(s.startswith("train") for s in steps), out
