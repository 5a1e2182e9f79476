"""The NumPy audio front-end against tf.signal, streaming vs batch, metadata round trip."""

import json
import subprocess
import sys

import numpy as np
import pytest

from edgekit.errors import ConfigError
from edgekit.features import Frontend, decode_pcm, mel_matrix

# float32 FFTs in two libraries: differences of a few 1e-6 on values up to ~60 are expected.
ATOL = 1e-4


def test_import_leaves_tensorflow_and_keras_out():
    code = ("import sys, edgekit.features, numpy as np; fe = edgekit.features.Frontend(); fe(np.zeros(16000, 'float32'));"
            "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _speechlike(n=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) * np.hanning(n) + 0.02 * rng.standard_normal(n)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def _tf_features(tf, x, fe: Frontend):
    stft = tf.signal.stft(x, fe.frame_length, fe.frame_step, fe.fft_length)  # periodic Hann by default
    mel = tf.signal.linear_to_mel_weight_matrix(fe.num_mel_bins, fe.fft_length // 2 + 1, fe.sample_rate,
                                                fe.lower_hz, fe.upper_hz)
    log_mel = tf.math.log(tf.tensordot(tf.abs(stft) ** fe.power, mel, 1) + fe.log_offset)
    if fe.kind == "logmel":
        return log_mel.numpy()
    return tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :fe.num_mfcc].numpy()


@pytest.mark.parametrize("params", [
    {},  # Hello Edge MFCC 49x10
    {"kind": "logmel", "num_mel_bins": 40, "upper_hz": 7600.0},
    {"kind": "mfcc", "frame_length": 640, "frame_step": 320, "fft_length": 1024, "num_mfcc": 13, "power": 2.0},
])
def test_matches_tf_signal(tf, params):
    fe = Frontend(**params)
    x = np.stack([_speechlike(seed=s) for s in range(3)])
    ours = fe(x)
    ref = _tf_features(tf, x, fe)
    assert ours.shape == ref.shape == (3,) + fe.output_shape
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)
    # not vacuous: the features vary a lot across frames and coefficients
    assert ours.std() > 0.5


def test_mel_matrix_matches_tf(tf):
    ref = tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, 20.0, 4000.0).numpy()
    np.testing.assert_allclose(mel_matrix(40, 257, 16000, 20.0, 4000.0), ref, atol=1e-5)


def test_default_shape_is_hello_edge():
    assert Frontend().output_shape == (49, 10)
    assert Frontend(kind="logmel").output_shape == (49, 40)


def test_streaming_equals_batch():
    fe = Frontend()
    x = _speechlike()
    batch = fe(x)
    s = fe.stream()
    rows = [s.push(x[i:i + 137]) for i in range(0, len(x), 137)]  # odd chunk size on purpose
    streamed = np.concatenate(rows)
    assert streamed.shape == batch.shape
    np.testing.assert_allclose(streamed, batch, atol=1e-5)
    np.testing.assert_allclose(s.window(), batch, atol=1e-5)
    s.reset()
    assert s.window() is None and s.push(x[:100]).shape == (0, 10)


def test_preprocessing_round_trip():
    fe = Frontend(kind="logmel", num_mel_bins=32, upper_hz=6000.0)
    pre = json.loads(json.dumps(fe.preprocessing()))  # what travels in ArtifactMeta
    assert pre["type"] == "audio" and pre["sample_rate"] == 16000
    fe2 = Frontend.from_preprocessing(pre)
    x = _speechlike()
    np.testing.assert_array_equal(fe(x), fe2(x))


@pytest.mark.parametrize("bad", [{"kind": "stft"}, {"fft_length": 256, "frame_length": 480},
                                 {"upper_hz": 9000.0}, {"num_mfcc": 41}])
def test_bad_parameters_are_config_errors(bad):
    with pytest.raises(ConfigError):
        Frontend(**bad)


def test_unknown_parameter_named():
    with pytest.raises(ConfigError, match="hop"):
        Frontend.from_dict({"hop": 160})
    with pytest.raises(ConfigError):
        Frontend.from_preprocessing({"type": "image"})


def test_decode_pcm():
    pcm16 = (np.array([0, 16384, -32768, 32767], "<i2")).tobytes()
    np.testing.assert_allclose(decode_pcm(pcm16, 2), [0, 0.5, -1, 32767 / 32768])
    stereo = np.array([100, 300, -200, 200], "<i2").tobytes()
    np.testing.assert_allclose(decode_pcm(stereo, 2, channels=2), [200 / 32768, 0])
    with pytest.raises(ValueError):
        decode_pcm(b"\0\0\0", 3)
