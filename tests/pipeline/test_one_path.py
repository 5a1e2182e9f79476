"""A recipe's steps run the stages ``edgekit compress`` chains (edgekit/compress/stages.py). Each test here
checks, on the recipe face, a rule where the two faces once drifted apart; nothing is trained."""

import pytest

from .conftest import BASE, write_recipe


def _run(tmp_path, text):
    from edgekit.recipe import load_recipe
    from edgekit.runcache import Run

    recipe, _ = load_recipe(write_recipe(tmp_path, text))
    return Run(recipe, tmp_path / "run", quiet=True)


def _untrained(run, ds, name: str, filters: int) -> dict:
    """An untrained ds_cnn_s saved as a recipe step saves its model (sidecar, top-1 on the test split)."""
    from edgekit import steps
    from edgekit.artifact import ArtifactMeta
    from edgekit.zoo import build_model

    data = ds.get()
    folder = run.out / name
    folder.mkdir(parents=True)
    model = build_model("ds_cnn_s", data.input_shape, data.num_classes, filters=filters)
    meta = ArtifactMeta(task=data.task, labels=list(data.labels), preprocessing=dict(data.preprocessing))
    return steps._save_model(run, model, meta, folder, data, name, {})


def _momenta(model) -> set:
    import keras

    return {round(float(layer.momentum), 4) for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)}


@pytest.mark.parametrize("options, momentum", [("{filters: 8}", 0.9), ("{filters: 8, bn_momentum: 0.95}", 0.95)])
def test_a_recipe_builds_the_distillation_student_by_the_commands_rule(tmp_path, monkeypatch, options, momentum):
    """edgekit compress --distill-from builds its student with BatchNorm momentum 0.9; a recipe built it with
    Keras' 0.99 unless model.options said otherwise. One rule now (stages.distill): 0.9 unless the options set
    it, because 0.99 leaves the moving statistics unsettled in a few hundred steps."""
    import importlib

    from edgekit import steps
    from edgekit.compress.distill import student_model

    distill_module = importlib.import_module("edgekit.compress.distill")  # the package exports a function of that name

    trained = []

    def no_training(student, teacher, ds, cfg, say=None):
        trained.append(student)
        return student, {"alone_top1": None}

    monkeypatch.setattr(distill_module, "distill", no_training)
    text = (BASE.replace("options: {bn_momentum: 0.9}", f"options: {options}")
            + "steps:\n  - {type: distill, teacher: {name: ds_cnn_s, options: {filters: 8}}, epochs: 1}\n")
    run = _run(tmp_path, text)
    ds = steps._Data(run.recipe)
    teacher = _untrained(run, ds, "teacher", 8)
    folder = run.out / "distill"
    folder.mkdir()
    out = steps._distill(run, ds, teacher, run.recipe.steps[0], 1, folder)
    assert len(trained) == 1 and _momenta(trained[0]) == {momentum}
    assert (run.out / out["model"]).exists()
    # The command's student (no options): the same rule.
    assert _momenta(student_model("ds_cnn_s", ds.get())) == {0.9}


def test_a_recipe_gates_every_float_artifact_as_the_command_does(tmp_path):
    """edgekit compress judged every exported float artifact against the reference and dropped a miss; a recipe
    judged only its Keras model. Now both run stages.gate_floats: a miss is deleted, is no quantization source,
    and is a failure (format, float32, drop in points) that fails the run."""
    from edgekit import steps

    run = _run(tmp_path, BASE.replace("formats: [tflite, onnx, openvino]", "formats: [onnx]"))
    ds = steps._Data(run.recipe)
    current = _untrained(run, ds, "float", 8)
    top1 = float(current["top1"])
    # One export (a conversion is the slow part): the passing side is every recipe run's (tiny_run's floats).
    # A reference 5 points above what the model scores: gates.max_drop is 2.
    missed_dir = run.out / "missed"
    missed_dir.mkdir()
    missed = steps._export_float(run, ds, current, top1 + 0.05, missed_dir)
    assert missed["artifacts"] == []
    assert [(f["format"], f["precision"]) for f in missed["failures"]] == [("onnx", "float32")]
    for f in missed["failures"]:
        (a,) = f["attempts"]
        assert a["remedy"] == "none" and not a["passed"] and a["drop"] == pytest.approx(5.0, abs=0.5)
    assert not any(missed_dir.rglob("*.onnx"))


def test_a_recipe_measures_latency_with_its_bench_settings(tiny_run):
    """Every recipe row says how its latency was measured: the recipe's bench: section (threads 1, 15 runs,
    2 warmup), by the stage edgekit compress measures with (tests/compress/test_stages.py checks that face)."""
    rows = tiny_run["report"]["artifacts"]
    assert {r["precision"] for r in rows} == {"float32", "int8"}  # the floats passed their gate and were measured
    for row in rows:
        assert {k: row["bench"][k] for k in ("threads", "runs", "warmup")} == {"threads": 1, "runs": 15, "warmup": 2}
        assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"]
