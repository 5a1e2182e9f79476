import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from edgekit import runtime
from edgekit.artifact import read_embedded, read_meta, sidecar_path
from edgekit.errors import ConfigError, ModelError, VerificationError
from edgekit.export import export_model

from ..conftest import LABELS, PREPROCESSING


def test_every_format_agrees_with_keras(exported_models, keras_classifier):
    from edgekit.compat import load_keras_model

    model = load_keras_model(keras_classifier)
    x = np.random.default_rng(42).random((16, 32, 32, 3), dtype=np.float32)
    ref = np.asarray(model(x, training=False))
    assert ref.std(axis=0).max() > 1e-3, "reference must vary across inputs or agreement is vacuous"
    assert set(exported_models) == {"tflite", "onnx", "openvino"}
    for fmt, path in exported_models.items():
        got = runtime.load(path).predict(x)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-4, fmt
        assert (got.argmax(1) == ref.argmax(1)).all(), fmt


def test_verification_is_recorded_in_metadata(exported_models):
    for fmt, path in exported_models.items():
        meta = read_meta(path)
        assert meta.format == fmt
        assert meta.labels == LABELS
        assert meta.preprocessing == PREPROCESSING
        v = meta.verification
        assert v["passed"] and v["informative"] and v["samples"] == 32
        assert v["max_abs_diff"] <= 1e-4 and v["top1_agreement"] == 1.0
        assert meta.inputs and meta.inputs[0]["shape"][1:] == [32, 32, 3]
        assert meta.provenance["source"].endswith("tiny_cnn.keras") and len(meta.provenance["source_sha256"]) == 64


def test_metadata_is_embedded_in_onnx_and_openvino(exported_models):
    onnx_meta = read_embedded(exported_models["onnx"])
    assert onnx_meta["labels"] == LABELS and onnx_meta["format"] == "onnx"
    root = ET.parse(exported_models["openvino"]).getroot()
    embedded = json.loads(root.find("rt_info").find("edgekit").get("value"))
    assert embedded["labels"] == LABELS and embedded["preprocessing"]["type"] == "image"


def test_embedded_metadata_is_used_without_sidecar(exported_models, tmp_path):
    import shutil

    src = exported_models["onnx"]
    dst = tmp_path / "copy.onnx"
    shutil.copy(src, dst)
    assert not sidecar_path(dst).exists()
    assert runtime.load(dst).labels == LABELS


def test_failed_parity_writes_nothing(keras_classifier, tmp_path):
    # No real converter matches float32 Keras bit for bit on every op; a tolerance of 1e-12 must fail.
    with pytest.raises(VerificationError, match="disagree") as e:
        export_model(keras_classifier, ["tflite", "onnx"], tmp_path, atol=1e-12)
    assert "--no-verify" in str(e.value)
    assert not (tmp_path / "model.tflite").exists() or read_meta(tmp_path / "model.tflite").verification["passed"]
    leftovers = [p.name for p in tmp_path.iterdir() if "partial" in p.name]
    assert leftovers == []


def test_no_verify_writes_and_records_skipped(keras_classifier, tmp_path):
    res = export_model(keras_classifier, ["tflite"], tmp_path, verify=False)
    assert res.artifacts["tflite"].exists()
    assert read_meta(res.artifacts["tflite"]).verification == {}


def test_interrupted_export_leaves_no_partial_file(keras_classifier, tmp_path):
    def interrupt(msg):
        if msg.startswith("verifying onnx"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_model(keras_classifier, ["tflite", "onnx"], tmp_path, progress=interrupt)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "model.onnx" not in names and not any("partial" in n for n in names)
    assert "model.tflite" in names  # finished before the interrupt, verified, complete


def test_export_from_savedmodel_folder(keras_classifier, tmp_path):
    from edgekit.compat import load_keras_model

    model = load_keras_model(keras_classifier)
    sm = tmp_path / "sm"
    model.export(str(sm), verbose=False)
    res = export_model(sm, ["onnx", "openvino"], tmp_path / "out")
    for fmt in ("onnx", "openvino"):
        assert res.verification[fmt]["passed"] and res.verification[fmt]["max_abs_diff"] <= 1e-4


def test_bad_requests_fail_before_work(keras_classifier, tmp_path):
    with pytest.raises(ConfigError, match="Unknown format 'tflitee'. Available: onnx, openvino, tflite"):
        export_model(keras_classifier, "tflitee", tmp_path)
    with pytest.raises(ModelError, match="No such model"):
        export_model(tmp_path / "missing.keras", "tflite", tmp_path)
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="could not be loaded as a Keras model"):
        export_model(junk, "tflite", tmp_path)


def test_cli_export_table_and_json(cli, keras_classifier, tmp_path):
    out = tmp_path / "cli"
    proc = cli("export", str(keras_classifier), "--to", "tflite,openvino", "--out", str(out),
               "--json", str(tmp_path / "r.json"), "-q")
    assert proc.returncode == 0, proc.stderr
    assert "tflite" in proc.stdout and "openvino" in proc.stdout and "passed" in proc.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data["artifacts"]) == {"tflite", "openvino"}
    assert data["verification"]["tflite"]["top1_agreement"] == 1.0
    assert (out / "model.xml").exists() and (out / "model.bin").exists()


def test_cli_export_bad_input_exit_2(cli, keras_classifier, tmp_path):
    proc = cli("export", str(keras_classifier), "--to", "tflite,coreml", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "Unknown format 'coreml'" in proc.stderr and "Available: onnx, openvino, tflite" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli("export", str(tmp_path / "nope.keras"), "--out", str(tmp_path))
    assert proc.returncode == 2 and "No such model" in proc.stderr


def test_resizing_layer_does_not_put_batchnorm_in_training_mode(tmp_path):
    """Regression: model.export() traced BN with batch statistics when a Resizing layer preceded a
    nested model (Keras 3.15); the exported graph then depended on the batch. edgekit exports an
    endpoint that passes training=False explicitly."""
    import keras

    from edgekit.compat import settle_batchnorm

    keras.utils.set_random_seed(0)
    inner_in = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(8, 3, padding="same")(inner_in)
    h = keras.layers.BatchNormalization(momentum=0.9)(h)
    inner = keras.Model(inner_in, keras.layers.ReLU()(h))
    inp = keras.Input((8, 8, 1))
    x = inner(keras.layers.Resizing(16, 16)(inp))
    out = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    settle_batchnorm(model, rng.random((32, 8, 8, 1), dtype=np.float32) * 3 + 1)  # stats far from batch stats
    res = export_model(model, ["tflite"], tmp_path, sample_inputs=[rng.random((16, 8, 8, 1), dtype=np.float32)])
    assert res.verification["tflite"]["max_abs_diff"] <= 1e-5
    sess = runtime.load(res.artifacts["tflite"])
    x = rng.random((8, 8, 8, 1), dtype=np.float32)
    assert np.abs(sess.predict(x)[:1] - sess.predict(x[:1])).max() < 1e-6


@pytest.mark.heavy  # three conversions of a transformer (~20 s on CI): CI runs it with -m heavy
def test_transformer_with_exact_gelu_exports_to_every_format(tmp_path):
    """Regression: tf2onnx passed TensorFlow's Erfc (Keras' exact GELU) through, and ONNX has no Erfc op,
    so every zoo transformer failed onnx.checker. The exporter rewrites it as 1 - Erf(x)."""
    import keras
    import onnx

    from edgekit.zoo import build_model

    keras.utils.set_random_seed(0)
    model = build_model("kwt", (12, 8), 3, dim=16, depth=1, heads=2, mlp_dim=32)
    x = np.random.default_rng(0).standard_normal((8, 12, 8)).astype(np.float32)
    res = export_model(model, ["tflite", "onnx", "openvino"], tmp_path, sample_inputs=[x])
    ops = {n.op_type for n in onnx.load(str(res.artifacts["onnx"])).graph.node}
    assert "Erf" in ops and "Erfc" not in ops
    ref = np.asarray(model(x, training=False))
    for fmt, path in res.artifacts.items():
        assert res.verification[fmt]["max_abs_diff"] <= 1e-4, fmt
        assert np.abs(runtime.load(path).predict(x) - ref).max() <= 1e-4, fmt
