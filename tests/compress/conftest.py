"""One small trained conv net (DS-CNN, 32 channels, on digits) and one int8 compression of it in every
format, shared by the compress tests."""

import pytest


@pytest.fixture(scope="session")
def digits_cnn(digits_ds_cnn):
    """The session's one trained ds_cnn_s on digits (tests/conftest.py; 32 channels), as its .keras path with
    the sidecar edgekit.train wrote."""
    return digits_ds_cnn.model_path


@pytest.fixture(scope="session")
def int8_all(digits_cnn, tmp_path_factory):
    from edgekit.compress import ExportConfig, QuantizeConfig, compress

    out = tmp_path_factory.mktemp("compress-int8")
    return compress(digits_cnn, "digits", out, quantize=QuantizeConfig(calibration_samples=100),
                    export=ExportConfig(bench_runs=5))


@pytest.fixture(scope="session")
def cli(cli_in_process):
    """The tests here read only exit codes and output: ``edgekit`` runs in process (a fresh Python + TensorFlow
    per call cost 5-10 s each)."""
    return cli_in_process


@pytest.fixture(scope="session")
def cancel_net():
    """conv 3x3 "first" (eight equal output channels) -> 1x1 conv "cancel" whose weights nearly cancel on them (+1,
    -1, ... plus 1 % each: small outputs, large weights, so int8 rounding errs by many of its output steps) -> an
    ordinary 1x1 conv "mid" -> global pool -> dense "fc". Returns (keras model, 40 calibration images)."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inp = keras.Input((8, 8, 3))
    first = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="first")
    cancel = keras.layers.Conv2D(8, 1, name="cancel")
    mid = keras.layers.Conv2D(16, 1, activation="relu", name="mid")
    h = mid(cancel(first(inp)))
    m = keras.Model(inp, keras.layers.Dense(5, name="fc")(keras.layers.GlobalAveragePooling2D()(h)))
    first.kernel.assign(np.repeat(first.kernel.numpy()[..., :1], 8, axis=-1))  # eight equal channels
    signs = np.tile([1.0, -1.0], 4)[:, None] * np.ones((8, 8))
    cancel.kernel.assign((signs + rng.normal(0, 0.01, (8, 8))).reshape(1, 1, 8, 8).astype(np.float32))
    return m, rng.uniform(0, 1, (40, 8, 8, 3)).astype(np.float32)
