"""edgekit compress: int8 in every format, pruning (magnitude, channels), distillation, the gate, bad input."""

import json

import numpy as np
import pytest

from edgekit.errors import ConfigError, DataError


def _rows(result):
    return {r["artifact"]: r for r in result.rows}


def test_int8_in_every_format_has_integer_weights_and_holds_accuracy(int8_all):
    rows = _rows(int8_all)
    for fmt, ext in (("tflite", "tflite"), ("onnx", "onnx"), ("openvino", "xml")):
        q, f = rows[f"model_int8.{ext}"], rows[f"reference/model.{ext}"]
        assert q["precision"] == "int8" and q["gate"] == "pass", q
        # Weights really are integers in the file, not float with fake-quant.
        assert q["weights"].get("int8", 0) >= 5 and "float32" not in q["weights"], (fmt, q["weights"])
        assert f["weights"].get("float32", 0) >= 5 and "int8" not in f["weights"], (fmt, f["weights"])
        assert abs(q["top1"] - f["top1"]) <= 0.03, (fmt, q["top1"], f["top1"])
        assert q["drop"] <= 1.0
        assert q["gzip_bytes"] < f["gzip_bytes"]
        assert (int8_all.out_dir / q["artifact"]).exists()
    # TFLite int8 stores one byte per weight: the file shrinks even on a tiny model.
    assert rows["model_int8.tflite"]["size_x"] < 0.8


def test_reports_and_metadata(int8_all):
    from edgekit.artifact import read_meta

    rep = json.loads((int8_all.out_dir / "report.json").read_text())
    assert {r["artifact"] for r in rep["rows"]} == {r["artifact"] for r in int8_all.rows}
    md = (int8_all.out_dir / "report.md").read_text()
    assert "| artifact |" in md and "model_int8.onnx" in md
    onnx_meta = read_meta(int8_all.out_dir / "model_int8.onnx")
    assert onnx_meta.quantization["precision"] == "int8"
    assert onnx_meta.quantization["activation_type"] in ("int8", "uint8")
    assert read_meta(int8_all.out_dir / "model_int8.xml").quantization["scheme"] == "NNCF PTQ"
    for r in int8_all.rows:
        if r["precision"] == "int8" and r["speedup"] is not None and r["speedup"] < 1:
            assert any(r["artifact"] in n and "slower" in n for n in int8_all.notes)
    assert not list(int8_all.out_dir.glob(".compress-*")), "staging folders must be gone"


def test_onnx_activation_choice_follows_the_cpu():
    from edgekit.compress.quantize import QuantizeConfig, ort_activation_settings

    arm = ort_activation_settings(QuantizeConfig(target_arch="aarch64"))
    assert arm["activation_type"] == "int8" and arm["reduce_range"] is False
    forced = ort_activation_settings(QuantizeConfig(activation_type="uint8", reduce_range=True))
    assert forced["activation_type"] == "uint8" and forced["reduce_range"] is True


def test_channel_pruning_builds_a_thinner_model_with_copied_weights(digits_cnn):
    from edgekit.compat import load_keras_model
    from edgekit.compress.prune import channel_plan, clone_with_weights, prunable_convs, rebuild

    model = clone_with_weights(load_keras_model(digits_cnn))
    convs = prunable_convs(model)
    assert len(convs) == 5  # every conv of a DS-CNN: no residual couplings
    plan = channel_plan(model, 0.5, "l1")
    thin, _ = rebuild(model, plan)
    assert thin.count_params() < 0.45 * model.count_params()
    first = convs[0]
    kept = plan[first]
    assert len(kept) == 16 and thin.get_layer(first).filters == 16
    # Kept filters are the highest-L1 ones, copied unchanged.
    k_old = model.get_layer(first).kernel.numpy()
    l1 = np.abs(k_old).reshape(-1, k_old.shape[-1]).sum(0)
    assert set(kept) == set(np.argsort(-l1)[:16])
    np.testing.assert_array_equal(thin.get_layer(first).kernel.numpy(), k_old[..., kept])
    # The next pointwise conv lost the same input channels and its own pruned outputs.
    second = convs[1]
    k2 = model.get_layer(second).kernel.numpy()[:, :, kept, :][..., plan[second]]
    np.testing.assert_array_equal(thin.get_layer(second).kernel.numpy(), k2)
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    assert thin(x).shape == (4, 10)


def test_mobilenet_v2_prunes_expansions_not_residuals():
    from edgekit.compress.prune import prunable_convs
    from edgekit.zoo import build_model

    names = prunable_convs(build_model("mobilenet_v2", (32, 32, 3), 10))
    assert "block_1_expand" in names and "block_2_expand" in names
    # block_1's output is added to block_2's (a residual): both projections stay whole.
    assert "block_1_project" not in names and "block_2_project" not in names
    assert "block_16_project" in names  # the last block has no residual


@pytest.mark.parametrize("formats", [
    # Minutes on a loaded 2-core machine: CI runs it after the default suite (-m heavy); magnitude pruning also
    # runs end to end in the default suite through tests/pipeline's tiny recipe.
    pytest.param(("tflite",), marks=pytest.mark.heavy),
    pytest.param(("onnx", "openvino"), marks=pytest.mark.slow),
])
def test_magnitude_pruning_sparsity_survives_export_and_shrinks_gzip(formats, digits_cnn, tmp_path):
    from edgekit.compress import ExportConfig, GateConfig, PruneConfig, compress

    res = compress(digits_cnn, "digits", tmp_path, prune=PruneConfig(0.8, "magnitude", epochs=1),
                   export=ExportConfig(formats=formats, bench_runs=0, gate=GateConfig(max_drop=100.0)))
    rows = _rows(res)
    for ext in [{"openvino": "xml"}.get(f, f) for f in formats]:
        sparse, dense = rows[f"model_float.{ext}"], rows[f"reference/model.{ext}"]
        assert sparse["sparsity"] >= 0.7, (ext, sparse["sparsity"])
        assert dense["sparsity"] < 0.2
        assert sparse["gzip_x"] < 0.6, (ext, sparse["gzip_x"])
    assert res.steps["prune"]["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert (tmp_path / "model_compressed.keras").exists()
    # The artifact records what was done; the per-epoch history is in the report only.
    from edgekit.artifact import read_meta

    ext = {"openvino": "xml"}.get(formats[0], formats[0])
    done = read_meta(tmp_path / f"model_float.{ext}").provenance["compress"]["prune"]
    assert done["target"] == 0.8 and done["epochs"] == 1 and "history" not in done
    assert res.steps["prune"]["history"]["loss"]


@pytest.mark.heavy  # QAT trained and six real conversions; the rung order is unit-tested in test_ladder.py
def test_gate_refuses_an_artifact_and_leaves_no_file(digits_cnn, tmp_path, cli):
    import numpy as np

    out = tmp_path / "out"
    # A negative allowance is refused up front (issue 17); to miss the gate for real, calibrate on silence:
    # every activation range collapses to zero, and no remedy can recover what calibration never saw.
    assert cli("compress", str(digits_cnn), "--data", "digits", "--quantize", "int8", "--max-drop", "-50",
               "--out", str(out)).returncode == 2 and not out.exists()
    zeros = tmp_path / "zeros.npy"
    np.save(zeros, np.zeros((50, 8, 8, 1), np.float32))
    p = cli("compress", str(digits_cnn), "--data", "digits", "--quantize", "int8", "--formats", "tflite",
            "--max-drop", "0", "--bench-runs", "0", "--calibration", str(zeros), "--out", str(out), "-q")
    assert p.returncode == 2, p.stderr
    last = p.stderr.strip().splitlines()[-1]  # TensorFlow logs above it are not ours
    assert last.startswith("Error: ") and "missed the accuracy gate" in last
    assert not (out / "model_int8.tflite").exists()
    assert (out / "reference" / "model.tflite").exists()
    rep = json.loads((out / "report.json").read_text())
    tried = [a["remedy"] for a in rep["failures"][0]["attempts"]]
    # More calibration can't help: the user's array (50 examples) is all there is, so that remedy is skipped.
    assert tried[:2] == ["none", "per-channel"] and "float-sensitive" in tried
    # The ladder goes on past the int8 remedies: the sensitive ops in float, then int16 activations.
    assert tried[-2:] == ["mixed-precision", "int16x8"], tried
    assert [a["precision"] for a in rep["failures"][0]["attempts"]][-2:] == ["int8", "int16x8"]
    assert not (out / "model_int16x8.tflite").exists()
    assert not list(out.glob(".compress-*")) and not list(out.glob("*.partial"))


@pytest.mark.parametrize("args,needle", [
    (["--prune", "1.5"], "between 0 and 1"),
    (["--prune", "0"], "between 0 and 1"),
    (["--quantize", "int8", "--formats", "tflite,coreml"], "Unknown format 'coreml'"),
    (["--quantize", "int4"], "Unknown --quantize 'int4'. Available: int8"),
    (["--quantize", "int8", "--profile", "toaster"], "toaster"),
    (["--prune", "0.5", "--prune-mode", "channels", "--prune-stages", "0"], "--prune-stages must be >= 1; received 0"),
])
def test_bad_input_fails_fast_with_exit_2(args, needle, digits_cnn, tmp_path, cli):
    out = tmp_path / "o"
    p = cli("compress", str(digits_cnn), "--data", "digits", "--out", str(out), *args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert needle in p.stderr and p.stderr.startswith("Error:")
    assert not out.exists()


def test_calibration_of_the_wrong_shape_is_refused(digits_cnn, tmp_path):
    from edgekit.compress import QuantizeConfig, compress

    with pytest.raises(DataError, match=r"shape \(4, 4, 1\).*\(8, 8, 1\)"):
        compress(digits_cnn, "digits", tmp_path / "o", quantize=QuantizeConfig(),
                 calibration=np.zeros((10, 4, 4, 1), np.float32))
    assert not (tmp_path / "o").exists()


def test_teacher_with_other_labels_is_refused(digits_cnn, tmp_path):
    from edgekit.artifact import read_meta, write_meta
    from edgekit.compress import DistillConfig, compress

    teacher = tmp_path / "teacher.keras"
    teacher.write_bytes(digits_cnn.read_bytes())
    meta = read_meta(digits_cnn)
    meta.labels = [f"class{i}" for i in range(10)]
    write_meta(teacher, meta)
    with pytest.raises(DataError, match="Teacher labels"):
        compress(digits_cnn, "digits", tmp_path / "o", distill=DistillConfig(epochs=1), teacher=teacher)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_distillation_reports_the_student_alone_too(digits_cnn):
    from edgekit.compress.distill import DistillConfig, distill
    from edgekit.compat import load_keras_model
    from edgekit.data import load_dataset
    from edgekit.zoo import build_model

    ds = load_dataset("digits")
    student = build_model("ds_cnn_s", ds.input_shape, 10, filters=16, bn_momentum=0.9)
    s, info = distill(student, load_keras_model(digits_cnn), ds, DistillConfig(epochs=4, temperature=3.0))
    assert s.count_params() == student.count_params()
    for k in ("teacher_top1", "alone_top1", "distilled_top1", "gain_points"):
        assert k in info
    # Both runs learned (10 classes: chance is 0.1); which one wins is reported, not assumed.
    assert info["distilled_top1"] > 0.3 and info["alone_top1"] > 0.3
    assert info["gain_points"] == pytest.approx(100 * (info["distilled_top1"] - info["alone_top1"]))


def test_prune_config_validation():
    from edgekit.compress import PruneConfig

    with pytest.raises(ConfigError, match="between 0 and 1"):
        PruneConfig(sparsity=1.0).validate()
    with pytest.raises(ConfigError, match="Unknown pruning mode 'random'"):
        PruneConfig(mode="random").validate()


def test_profile_picks_the_fastest_passing_artifact_the_device_can_run():
    from edgekit.compress.engine import pick_for_profile
    from edgekit.devices import load_profile

    rows = [
        {"artifact": "model_int8.xml", "format": "openvino", "precision": "int8", "gate": "pass", "p50_ms": 0.1,
         "top1": 0.9, "size_bytes": 10},
        {"artifact": "model_int8.tflite", "format": "tflite", "precision": "int8", "gate": "pass", "p50_ms": 0.4,
         "top1": 0.9, "size_bytes": 10},
        {"artifact": "reference/model.tflite", "format": "tflite", "precision": "float32", "gate": "reference",
         "p50_ms": 0.3, "top1": 0.91, "size_bytes": 40},
        {"artifact": "model_int8.onnx", "format": "onnx", "precision": "int8", "gate": "FAIL", "p50_ms": 0.01,
         "top1": 0.5, "size_bytes": 10},
    ]
    pi = load_profile("raspberry-pi-4")  # litert and onnxruntime, no OpenVINO; prefers tflite int8
    chosen = pick_for_profile(rows, pi)
    # An ARM board is not this host: its preference order picks among what passed (issue 23), not this CPU's
    # latency (the float reference ran faster here).
    assert chosen["artifact"] == "model_int8.tflite", chosen
    assert "measured on this host, indicative only" in chosen["why"]
    import platform

    here = load_profile("x86-cpu")
    if here.accepts_arch(platform.machine()):  # this host: the fastest passing artifact, as before
        chosen = pick_for_profile(rows, here)
        assert chosen["artifact"] == "model_int8.xml", chosen
        assert "measured on this host, not on the device" in chosen["why"]


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_scopes_hit_the_target_exactly(scope):
    from edgekit.compress.prune import _prunable_kernels, kernel_sparsity, magnitude_callback
    from edgekit.zoo import build_model

    model = build_model("ds_cnn_s", (49, 10), 12)
    kernels = _prunable_kernels(model, 64)
    cb = magnitude_callback(kernels, 0.8, end_step=10, scope=scope)
    cb.on_train_end()
    assert kernel_sparsity(model) == pytest.approx(0.8, abs=1e-3)
    per_layer = [float(np.mean(np.asarray(v.numpy()) == 0)) for v in kernels]
    if scope == "layer":
        assert all(abs(s - 0.8) < 0.01 for s in per_layer)
    else:  # ranked together, layers end up pruned unequally
        assert max(per_layer) - min(per_layer) > 0.05


@pytest.mark.heavy  # a pruning fine-tune with a teacher: CI runs it after the default suite
def test_channel_pruning_can_recover_by_distilling_from_the_unpruned_model(digits_cnn):
    from edgekit.compat import load_keras_model
    from edgekit.compress import PruneConfig, prune
    from edgekit.data import load_dataset

    ds = load_dataset("digits")
    dense = load_keras_model(digits_cnn)
    before = [w.copy() for w in dense.get_weights()]
    x, y = ds.split("test")
    runs = {}
    for recover in ("labels", "distill"):
        # 6 epochs (120 steps): at 3 the distilled recovery sat at 0.59-0.74 by machine and test order, too near
        # the bound; measured at 6 here: labels 0.82, distill 0.75.
        cfg = PruneConfig(0.5, "channels", epochs=6, learning_rate=3e-3, recover=recover, seed=0)
        thin, info = prune(dense, ds, cfg)
        assert info["recover"] == recover and info["params_after"] < 0.45 * info["params_before"]
        top1 = float(np.mean(np.argmax(thin.predict(x, verbose=0), 1) == y))
        assert top1 > 0.7, (recover, top1)  # 10 classes: chance is 0.1
        runs[recover] = thin.get_weights()
    # A different objective, the same start and seed: different weights; the teacher is left as it was.
    assert any(not np.allclose(a, b) for a, b in zip(runs["labels"], runs["distill"]))
    for a, b in zip(dense.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert dense.trainable
    with pytest.raises(ConfigError, match="Unknown pruning recover .teacher."):
        PruneConfig(recover="teacher").validate()


def test_channel_pruning_in_rounds_reaches_the_same_widths_and_tracks_original_filters(digits_cnn):
    from edgekit.compat import load_keras_model
    from edgekit.compress import PruneConfig, prune
    from edgekit.compress.prune import clone_with_weights, prunable_convs
    from edgekit.data import load_dataset

    ds = load_dataset("digits")
    dense = clone_with_weights(load_keras_model(digits_cnn))
    one, info1 = prune(dense, ds, PruneConfig(0.5, "channels", epochs=0))
    three, info3 = prune(dense, ds, PruneConfig(0.5, "channels", epochs=0, stages=3))
    assert info3["stages"] == 3 and info3["layers"] == info1["layers"]
    assert three.count_params() == one.count_params()
    first = prunable_convs(dense)[0]
    kept = info3["kept"][first]
    assert len(set(kept)) == len(kept) == 16 and max(kept) < 32
    # No fine-tuning between rounds: the first conv's L1 ranking cannot change, so the rounds keep the
    # same filters as one cut, and the kept weights are the originals at the recorded indices.
    assert kept == info1["kept"][first]
    np.testing.assert_array_equal(three.get_layer(first).kernel.numpy(),
                                  dense.get_layer(first).kernel.numpy()[..., kept])
    with pytest.raises(ConfigError, match="stages"):
        PruneConfig(stages=0).validate()


def test_a_killed_compress_leaves_its_stage_folder_for_the_next_run_to_sweep(digits_cnn, cli, tmp_path,
                                                                              leftover_partials):
    """Issue 25's leftovers: compress staged in a ``.compress-XXXX`` folder removed only by its own ``finally``,
    so one killed mid-ladder stayed for ever. Stage folders now carry the pid; the next compress into the same
    folder removes those whose process is gone, and never one a live process owns."""
    out = tmp_path / "c"
    stale, live = leftover_partials(out, "compress", "float/model.tflite")
    p = cli("compress", str(digits_cnn), "--data", "digits", "--quantize", "int8", "--formats", "tflite",
            "--max-drop", "100", "--bench-runs", "0", "--out", str(out), "-q")
    assert p.returncode == 0, p.stderr
    assert (out / "model_int8.tflite").is_file()
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".partial")) == [live.name]
