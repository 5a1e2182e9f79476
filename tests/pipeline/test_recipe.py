"""Recipe validation: every mistake is named before any work starts (exit code 2)."""

import pytest

from edgekit.errors import ConfigError
from edgekit.recipe import load_recipe

from .conftest import BASE, write_recipe


def test_shipped_recipes_validate_and_plan(cli):
    for name in ("kws-ds-cnn", "image-mobilenet", "kws-transformer"):
        proc = cli("run", name, "--dry-run")
        assert proc.returncode == 0, proc.stderr
        assert f"Recipe {name}" in proc.stdout and "evaluate + gate" in proc.stdout
    proc = cli("run", "kws-ds-cnn", "--dry-run", "--json", "-")
    import json

    plan = json.loads(proc.stdout)["plan"]
    assert [p["step"] for p in plan] == ["train", "prune", "export", "evaluate + gate", "bench", "report"]


def test_quantize_step_takes_several_precisions_and_plans_each(tmp_path):
    from edgekit.pipeline import run_recipe

    from .conftest import TINY

    p = write_recipe(tmp_path, TINY)
    rep = run_recipe(p, sets=["steps.1.precision=int8,fp16", "export.formats=[tflite, onnx]"], dry_run=True)
    export = next(s for s in rep["plan"] if s["step"] == "export")
    assert export["what"] == "tflite, onnx × float32, int8, fp16"
    # A list in YAML works the same; a precision the formats can't make is named before anything runs.
    r, _ = load_recipe(p, ["steps.1.precision=[int16x8]", "export.formats=[tflite, onnx]"])
    assert r.steps[1].precision == ["int16x8"]
    with pytest.raises(ConfigError, match=r"steps\.1\.precision: OpenVINO IR cannot make int16x8"):
        run_recipe(p, sets=["steps.1.precision=[int16x8]"], dry_run=True)


@pytest.mark.parametrize("edit,message", [
    ("steps: [{type: sparsify, sparsity: 0.5}]", "unknown step type 'sparsify' (allowed: distill, prune, quantize)"),
    ("steps: [{type: prune, sparsity: 1.5}]", "steps.0.prune.sparsity: Pruning sparsity must be strictly between 0 and 1; received 1.5"),
    ("gates: {max_size_kb: -10}", "gates.max_size_kb: Input should be greater than 0; received -10"),
    ("train: {epochs: 2, epoch: 3}", "train.epoch: unknown field (allowed: augment, batch_size, epochs,"),
    ("steps: [{type: quantize}, {type: prune, sparsity: 0.5}]", "quantize must be the last step"),
])
def test_invalid_fields_are_named(tmp_path, edit, message):
    base = "\n".join(line for line in BASE.splitlines()
                     if not line.startswith(edit.split(":")[0] + ":"))
    p = write_recipe(tmp_path, base + "\n" + edit + "\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(p)
    assert message in str(e.value)


def test_set_overrides_and_rejects_paths_that_do_not_exist(tmp_path):
    p = write_recipe(tmp_path, BASE)
    r, raw = load_recipe(p, ["train.epochs=5", "gates.max_p50_ms=3.5", "data.options={seed: 2}"])
    assert r.train.epochs == 5 and r.gates.max_p50_ms == 3.5 and r.data.options == {"seed": 2}
    with pytest.raises(ConfigError, match=r"--set path 'train.epoch' does not exist: no 'epoch' in train. "
                                          r"Available: .*epochs"):
        load_recipe(p, ["train.epoch=5"])
    with pytest.raises(ConfigError, match="--set needs key=value"):
        load_recipe(p, ["train.epochs"])
    with pytest.raises(ConfigError, match=r"steps is a list of 0; received index '0'"):
        load_recipe(p, ["steps.0.sparsity=0.3"])


def test_cli_bad_recipes_exit_2_before_training(cli, tmp_path):
    cases = {
        "missing dataset": (BASE.replace("name: digits", "name: no-such-data"), "data.name: no dataset 'no-such-data'"),
        "unknown model": (BASE.replace("ds_cnn_s", "resnet9000"), "Unknown model 'resnet9000'"),
        "negative size": (BASE.replace("max_size_kb: 5000", "max_size_kb: -1"), "gates.max_size_kb"),
        "unknown profile": (BASE.replace("raspberry-pi-5", "toaster"), "toaster"),
    }
    for label, (text, msg) in cases.items():
        p = write_recipe(tmp_path, text, f"{label.replace(' ', '_')}.yaml")
        out = tmp_path / f"out_{label.replace(' ', '_')}"
        proc = cli("run", str(p), "--out", str(out))
        assert proc.returncode == 2, (label, proc.stderr)
        assert msg in proc.stderr, (label, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert not out.exists(), f"{label}: a run folder was created before validation passed"
    proc = cli("run", "no-such-recipe")
    assert proc.returncode == 2 and "Shipped: detect-centernet, image-mobilenet, kws-ds-cnn, kws-transformer" in proc.stderr
    proc = cli("run", str(write_recipe(tmp_path, BASE)), "--set", "train.nope=1")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
