"""Every zoo builder builds, trains a step, and exports through the spine (TFLite, ONNX, OpenVINO)."""

import numpy as np
import pytest

from edgekit.errors import ConfigError
from edgekit.zoo import build_model, describe, model_stats, models

# name -> (input shape, options): small inputs so the whole zoo exports in reasonable time
CASES = {
    "mobilenet_v2": ((8, 8, 1), {"alpha": 0.35}),  # smaller than Keras' 32x32 minimum: resized inside
    "mobilenet_v3_small": ((28, 28, 1), {"alpha": 0.75}),
    "ds_cnn_s": ((49, 10), {}),
    "ds_cnn_m": ((49, 10), {}),
    "ds_cnn_l": ((49, 10), {}),
    "kwt": ((49, 10), {"depth": 2}),
    "text_transformer": ((16,), {"vocab_size": 50}),
    "efficientnet_lite0": ((32, 32, 3), {}),
    "efficientnet_lite1": ((32, 32, 3), {}),
    "efficientnet_lite2": ((32, 32, 3), {}),
}
# Detectors: built and stepped here; their exports (boxes checked in every format) are tests/detect's.
DETECTOR_CASES = {
    "centernet_lite0": ((96, 96, 3), {"width": 16}),
    "centernet_mnv2": ((96, 96, 3), {"width": 16}),
    "fomo_mnv2": ((96, 96, 3), {"width": 16}),
}

DETECTOR_STRIDES = {"centernet_lite0": 4, "centernet_mnv2": 8, "fomo_mnv2": 8}


def test_every_registered_model_has_a_case():
    assert sorted({**CASES, **DETECTOR_CASES}) == models.names()


@pytest.mark.parametrize("name", sorted(DETECTOR_CASES))
def test_detector_builds_and_trains_a_step_at_its_output_grid(name):
    import keras

    from edgekit.zoo.detectors import postprocess_params

    shape, opts = DETECTOR_CASES[name]
    keras.utils.set_random_seed(0)
    model = build_model(name, shape, 4, **opts)
    stride = DETECTOR_STRIDES[name]
    post = postprocess_params(name, shape, 4, stride=stride)
    out = model.outputs[0].shape
    assert tuple(out[1:3]) == tuple(post["grid"]) == (shape[0] // stride, shape[1] // stride)
    assert out[-1] >= 4  # one heatmap channel per class (+ box channels for CenterNet)
    x = _batch(shape, n=4)
    before = [w.copy() for w in model.get_weights()]
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    loss = model.train_on_batch(x, np.zeros((4, *out[1:]), np.float32))
    assert np.isfinite(loss) and any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def _batch(shape, n=8, seed=0):
    rng = np.random.default_rng(seed)
    if len(shape) == 1:
        return rng.integers(0, 50, (n, *shape)).astype(np.int32)
    return rng.random((n, *shape), dtype=np.float32)


def _build_train_step_export(name, tmp_path, formats):
    import keras

    from edgekit.artifact import read_meta
    from edgekit.export import export_model
    from edgekit.runtime import load

    shape, opts = CASES[name]
    keras.utils.set_random_seed(0)
    model = build_model(name, shape, 4, **opts)
    assert tuple(model.inputs[0].shape[1:]) == shape
    assert tuple(model.outputs[0].shape) == (None, 4)
    x, y = _batch(shape), np.arange(8) % 4
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    # After one step a deep net's BatchNorm statistics are still the random init's: its inference
    # outputs are ill-conditioned and any parity check on them is noise. Settle them on the batch.
    from edgekit.compat import settle_batchnorm

    settle_batchnorm(model, x)
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)

    result = export_model(model, formats, tmp_path, sample_inputs=[x])
    assert set(result.artifacts) == set(formats)
    for fmt, p in result.artifacts.items():
        assert result.verification[fmt]["passed"]
        sess = load(p)
        np.testing.assert_allclose(sess.predict(x), probs, atol=1e-4, err_msg=fmt)
        assert read_meta(p) is not None


# Lite1 and Lite2 are Lite0's builder with other depth/width (~50 s each here): -m slow. The image backbones
# MobileNetV2, MobileNetV3-Small and Lite0 (~30-50 s each, mostly the TFLite conversion of their many layers)
# run in CI's -m heavy stage; the default run keeps the audio and text models, and its image round trip is the
# tiny CNN's in every format (tests/export).
SLOW_TFLITE = {"efficientnet_lite1", "efficientnet_lite2"}
HEAVY_TFLITE = {"mobilenet_v2", "mobilenet_v3_small", "efficientnet_lite0"}


def _marked(n):
    if n in SLOW_TFLITE:
        return pytest.param(n, marks=pytest.mark.slow)
    return pytest.param(n, marks=pytest.mark.heavy) if n in HEAVY_TFLITE else n


@pytest.mark.parametrize("name", [_marked(n) for n in sorted(CASES)])
def test_build_train_step_export_tflite(name, tmp_path):
    _build_train_step_export(name, tmp_path, ("tflite",))


# ONNX (tf2onnx) and OpenVINO conversions take ~10-30 s per model here; edgekit eval's tests cover
# both formats by default, the full zoo x formats matrix runs with -m slow.
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_build_train_step_export_all_formats(name, tmp_path):
    _build_train_step_export(name, tmp_path, ("tflite", "onnx", "openvino"))


def test_stats_ds_cnn_s_by_hand():
    m = build_model("ds_cnn_s", (49, 10), 12)
    st = model_stats(m)
    # conv 10x4 (1->64) on a 25x5 map, 4 x (depthwise 3x3 + pointwise 64x64) on 25x5, dense 64->12
    first = 25 * 5 * 64 * 10 * 4
    blocks = 4 * (25 * 5 * 64 * 9 + 25 * 5 * 64 * 64)
    assert st["macs"] == first + blocks + 64 * 12
    assert st["params"] == m.count_params() and 20_000 < st["params"] < 30_000


def test_stats_transformer_counts_attention():
    small = model_stats(build_model("kwt", (49, 10), 12, depth=1))
    deep = model_stats(build_model("kwt", (49, 10), 12, depth=2))
    per_block = deep["macs"] - small["macs"]
    t, d, mlp = 49, 64, 128
    assert per_block == 4 * t * d * d + 2 * t * t * d + 2 * t * d * mlp


def test_width_multiplier_shrinks_mobilenet():
    a = model_stats(build_model("mobilenet_v2", (96, 96, 3), 10, alpha=0.35))
    b = model_stats(build_model("mobilenet_v2", (96, 96, 3), 10, alpha=1.0))
    assert a["params"] < b["params"] / 3 and a["macs"] < b["macs"] / 3


def test_errors():
    with pytest.raises(ConfigError, match="Unknown model 'ds_cnn_xl'. Available: centernet_lite0, centernet_mnv2, ds_cnn_l"):
        build_model("ds_cnn_xl", (49, 10), 12)
    with pytest.raises(ConfigError, match="input shape"):
        build_model("ds_cnn_s", (16000,), 12)
    with pytest.raises(ConfigError, match="images"):
        build_model("mobilenet_v2", (49, 10), 12)
    with pytest.raises(ConfigError, match="Model 'ds_cnn_s' has no option 'alpha'; options: bn_momentum, dropout"):
        build_model("ds_cnn_s", (49, 10), 12, alpha=0.5)
    with pytest.raises(ConfigError, match="option alpha='wide': expected float"):
        build_model("mobilenet_v2", (32, 32, 3), 10, alpha="wide")


def test_describe_lists_every_model():
    rows = describe()
    assert [r["name"] for r in rows] == models.names()
    assert all(r["params"] > 0 and r["macs"] > 0 for r in rows)


def test_zoo_list_cli(invoke_cli):
    import json

    # Only exit codes and output are read: in process (two subprocesses cost two TensorFlow starts).
    code, out, err = invoke_cli(["zoo", "list", "--models", "ds_cnn_s,kwt", "--input", "49,10", "--json", "-"])
    assert code == 0, err
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["ds_cnn_s"]["macs"] == model_stats(build_model("ds_cnn_s", (49, 10), 12))["macs"]
    code, out, err = invoke_cli(["zoo", "list", "--models", "resnet50"])
    assert code == 2 and "Unknown model 'resnet50'" in err


def test_lite0_detector_fits_a_pi_and_keeps_imagenet_batchnorm():
    """The box detector users train: <= 1 GMAC at its default 192 px, and with ``freeze_bn`` (the default) the
    backbone's BatchNorm layers stay in inference mode while its convolutions and the head train."""
    import keras

    from edgekit.zoo.detectors import centernet_lite0

    model = centernet_lite0((192, 192, 3), 4)
    stats = model_stats(model)
    assert 3.0e6 < stats["params"] < 4.5e6 and stats["macs"] <= 1e9
    backbone = model.get_layer("backbone")
    bns = [l for l in backbone._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and not any(l.trainable for l in bns)
    assert any(l.trainable for l in backbone._flatten_layers() if isinstance(l, keras.layers.Conv2D))
    free = centernet_lite0((96, 96, 3), 4, freeze_bn=False)
    assert all(l.trainable for l in free.get_layer("backbone")._flatten_layers()
               if isinstance(l, keras.layers.BatchNormalization))
    with pytest.raises(ConfigError, match="multiples of 32"):
        centernet_lite0((100, 100, 3), 4)
