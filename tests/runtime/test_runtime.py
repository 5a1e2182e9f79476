import json
import subprocess
import sys

import numpy as np
import pytest

from edgekit import runtime
from edgekit.errors import ConfigError, DataError, MissingDependencyError, ModelError, UnsupportedError

from ..conftest import LABELS


@pytest.fixture(scope="module")
def sessions(exported_models):
    s = {fmt: runtime.load(p, threads=1) for fmt, p in exported_models.items()}
    yield s
    for x in s.values():
        x.close()


def test_backend_chosen_by_file_type(sessions):
    assert {f: s.backend for f, s in sessions.items()} == {"tflite": "litert", "onnx": "onnxruntime",
                                                            "openvino": "openvino"}
    for s in sessions.values():
        assert s.device == "cpu" and s.labels == LABELS
        assert len(s.inputs) == 1 and s.inputs[0].shape[1:] == (32, 32, 3) and s.inputs[0].dtype == np.float32
        assert s.outputs[0].shape[-1] == len(LABELS)


def test_run_accepts_array_dict_and_list_and_agrees(sessions):
    x = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)
    outs = []
    for s in sessions.values():
        a = s.predict(x)
        b = s.run({s.inputs[0].name: x})[s.outputs[0].name]
        c = s.run([x])[s.outputs[0].name]
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        assert a.shape == (1, len(LABELS)) and abs(float(a.sum()) - 1) < 1e-5
        outs.append(a)
    for o in outs[1:]:
        assert np.abs(o - outs[0]).max() < 1e-4


def test_batches_match_single_runs(sessions):
    x = np.random.default_rng(1).random((7, 32, 32, 3), dtype=np.float32)
    for fmt, s in sessions.items():
        batched = s.predict(x)
        single = np.concatenate([s.predict(x[i:i + 1]) for i in range(7)])
        assert batched.shape == (7, len(LABELS))
        assert np.abs(batched - single).max() < 1e-5, fmt


def test_run_rows_equals_run_on_the_concatenation_and_results_do_not_alias(sessions):
    """run_rows (the server's batches; LiteRT writes the rows straight into its input buffer) gives exactly what run
    gives on the concatenated feed, also after the batch size changes and for a float64 part (converted by run);
    a result is the caller's: the next run does not change it (OpenVINO's to_tuple() outputs are copies)."""
    rng = np.random.default_rng(2)
    for fmt, s in sessions.items():
        name = s.inputs[0].name
        for sizes in ((1, 3, 2), (2, 2), (1,)):
            parts = [{name: rng.random((n, 32, 32, 3), dtype=np.float32)} for n in sizes]
            got = s.run_rows(parts)[s.outputs[0].name]
            want = s.predict(np.concatenate([p[name] for p in parts]))
            assert got.shape == (sum(sizes), len(LABELS)) and np.array_equal(got, want), (fmt, sizes)
        mixed = [{name: rng.random((1, 32, 32, 3), dtype=np.float32)}, {name: rng.random((2, 32, 32, 3))}]
        want = s.predict(np.concatenate([p[name] for p in mixed]).astype(np.float32))
        assert np.abs(s.run_rows(mixed)[s.outputs[0].name] - want).max() < 1e-6, fmt
        first = s.predict(np.zeros((1, 32, 32, 3), np.float32))
        kept = first.copy()
        s.predict(np.ones((1, 32, 32, 3), np.float32))
        assert np.array_equal(first, kept), fmt


def test_float64_and_uint8_inputs_are_cast(sessions):
    x = np.random.default_rng(2).random((1, 32, 32, 3))
    for s in sessions.values():
        assert np.abs(s.predict(x) - s.predict(x.astype(np.float32))).max() == 0


@pytest.mark.parametrize("shape", [(1, 31, 32, 3), (32, 32, 3), (1, 32, 32, 1)])
def test_wrong_shape_is_a_clear_error(sessions, shape):
    for s in sessions.values():
        with pytest.raises(DataError, match=r"expects shape \(\?, 32, 32, 3\) float32; received"):
            s.predict(np.zeros(shape, np.float32))


def test_wrong_names_and_dtypes(sessions):
    s = sessions["onnx"]
    with pytest.raises(DataError, match="Unknown input\\(s\\) nope. The model takes: image"):
        s.run({"nope": np.zeros((1, 32, 32, 3), np.float32), s.inputs[0].name: np.zeros((1, 32, 32, 3), np.float32)})
    with pytest.raises(DataError, match="Missing input"):
        s.run({})
    with pytest.raises(DataError, match="expects float32; received str"):
        s.predict(np.full((1, 32, 32, 3), "a"))
    with pytest.raises(DataError, match="Unknown output 'x'"):
        s.run(np.zeros((1, 32, 32, 3), np.float32), outputs=["x"])


def test_int8_model_takes_and_gives_float(int8_tflite, exported_models):
    q = runtime.load(int8_tflite)
    f = runtime.load(exported_models["tflite"])
    assert q.inputs[0].dtype == np.int8 and q.inputs[0].quantized
    assert q.outputs[0].dtype == np.int8 and q.outputs[0].quantized
    x = np.random.default_rng(5).random((16, 32, 32, 3), dtype=np.float32)
    yq, yf = q.predict(x), f.predict(x)
    assert yq.dtype == np.float32
    assert np.abs(yq - yf).max() < 0.1  # int8 quantization error on softmax outputs
    assert (yq.argmax(1) == yf.argmax(1)).mean() >= 0.8
    raw = q.run(q.sample_input(raw=True), raw=True)[q.outputs[0].name]
    assert raw.dtype == np.int8
    # raw=True hands back exactly what the interpreter produced; dequantized = scale * (q - zp)
    o = q.outputs[0]
    xr = x[:1]
    qin = np.clip(np.round(xr / q.inputs[0].scale) + q.inputs[0].zero_point, -128, 127).astype(np.int8)
    raw_out = q.run(qin, raw=True)[o.name]
    np.testing.assert_allclose(q.predict(xr), (raw_out.astype(np.float32) - o.zero_point) * o.scale, rtol=1e-6)


@pytest.mark.parametrize("suffix,kind", [(".tflite", "TFLite"), (".onnx", "ONNX"), (".xml", "OpenVINO IR")])
def test_random_bytes_are_not_a_model(tmp_path, suffix, kind):
    p = tmp_path / f"junk{suffix}"
    p.write_bytes(np.random.default_rng(0).bytes(2048))
    if suffix == ".xml":
        p.with_suffix(".bin").write_bytes(b"\0" * 16)
    with pytest.raises(ModelError, match=f"not a valid {kind} model"):
        runtime.load(p)


def test_missing_file_unknown_extension_and_build_side_files(tmp_path):
    with pytest.raises(ModelError, match="No such model file"):
        runtime.load(tmp_path / "nope.tflite")
    p = tmp_path / "model.pt"
    p.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"Unknown model file type '.pt'.*\.onnx, \.tflite, \.xml"):
        runtime.load(p)
    k = tmp_path / "m.keras"
    k.write_bytes(b"x")
    with pytest.raises(ModelError, match="export it first"):
        runtime.load(k)


def test_openvino_ir_without_weights(exported_models, tmp_path):
    import shutil

    xml = tmp_path / "m.xml"
    shutil.copy(exported_models["openvino"], xml)
    with pytest.raises(ModelError, match="needs its weights file m.bin"):
        runtime.load(xml)


def test_unknown_device_and_bad_threads(exported_models):
    for path in exported_models.values():
        with pytest.raises(ConfigError, match="Unknown device 'tpu9'.*Allowed: cpu, gpu, npu, auto"):
            runtime.load(path, device="tpu9")
    with pytest.raises(ConfigError, match="threads must be a positive integer; received 0"):
        runtime.load(exported_models["tflite"], threads=0)
    with pytest.raises(ConfigError, match="Unknown backend 'tflitee'"):
        runtime.load(exported_models["tflite"], backend="tflitee")


def test_gpu_and_npu_absent_here_say_what_to_install(exported_models):
    with pytest.raises(UnsupportedError, match="onnxruntime-gpu"):
        runtime.load(exported_models["onnx"], device="gpu")
    with pytest.raises(UnsupportedError, match="No LiteRT GPU delegate found"):
        runtime.load(exported_models["tflite"], device="gpu")
    with pytest.raises(UnsupportedError, match="OpenVINO sees no NPU"):
        runtime.load(exported_models["openvino"], device="npu")


def test_auto_and_backend_specific_devices(exported_models):
    assert runtime.load(exported_models["onnx"], device="auto").device == "cpu"
    assert runtime.load(exported_models["onnx"], device="CPUExecutionProvider").detail["providers"] == [
        "CPUExecutionProvider"]
    ov = runtime.load(exported_models["openvino"], device="AUTO")
    assert ov.predict(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 5)
    ref = runtime.load(exported_models["tflite"], device="cpu-ref")
    assert ref.detail["xnnpack"] is False


def test_missing_backend_package_names_the_extra(exported_models):
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "from edgekit import runtime\n"
            "from edgekit.errors import MissingDependencyError\n"
            f"try:\n    runtime.load({str(exported_models['onnx'])!r})\n"
            "except MissingDependencyError as e:\n    print(e); sys.exit(0)\n"
            "sys.exit(1)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'edgekit[onnx]'" in proc.stdout


def test_describe_backends_sees_all_three():
    rows = {r["backend"]: r for r in runtime.describe_backends()}
    assert set(rows) >= {"litert", "onnxruntime", "openvino"}
    for r in rows.values():
        assert r["installed"] and r["version"]
    assert any(d["device"] == "CPUExecutionProvider" for d in rows["onnxruntime"]["devices"])
    assert any(d["device"] == "CPU" for d in rows["openvino"]["devices"])


def test_cli_devices_and_info(cli, exported_models, int8_tflite, tmp_path):
    proc = cli("devices", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    assert {r["backend"] for r in json.loads(proc.stdout)} >= {"litert", "onnxruntime", "openvino"}
    for fmt, path in exported_models.items():
        proc = cli("info", str(path))
        assert proc.returncode == 0, proc.stderr
        assert f"format      {fmt}" in proc.stdout and "cat, dog, bird" in proc.stdout and "float32" in proc.stdout
    proc = cli("info", str(int8_tflite), "--json", "-")
    d = json.loads(proc.stdout)
    assert d["precision"] == "int8" and d["inputs"][0]["dtype"] == "int8" and "scale" in d["inputs"][0]


def test_cli_bad_model_exit_2_one_line(cli, tmp_path):
    p = tmp_path / "junk.tflite"
    p.write_bytes(b"\x00garbage" * 100)
    proc = cli("info", str(p))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("Error:") and "not a valid TFLite model" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli("info", str(tmp_path / "missing.onnx"))
    assert proc.returncode == 2 and "No such model" in proc.stderr
