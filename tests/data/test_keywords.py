"""The espeak-ng keyword set, in a small configuration: voice split, determinism, cache, features."""

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")

from edgekit.data import load_dataset  # noqa: E402
from edgekit.data.keywords import LABELS, split_voices  # noqa: E402
from edgekit.features import Frontend  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def small(cache):
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEKIT_CACHE", str(cache))
    try:
        yield load_dataset("keywords", reps=1, augment_copies=1)
    finally:
        mp.undo()


def test_layout(small):
    assert small.labels == LABELS and len(LABELS) == 12
    assert small.labels[:2] == ["_silence_", "_unknown_"]
    assert small.input_shape == (49, 10)
    counts = small.counts()
    for s in ("train", "val", "test"):
        assert min(counts[s]) > 0 and max(counts[s]) == min(counts[s])  # balanced, nothing empty


def test_test_voices_never_in_training(small):
    v = small.info["voices"]
    assert not set(v["test"]) & set(v["train"]) and not set(v["val"]) & set(v["train"])
    assert v == split_voices(0)
    assert split_voices(1) != split_voices(0)


def test_cached_and_deterministic(small, cache, tmp_path, monkeypatch):
    assert list((cache / "keywords").glob("corpus-*.npz"))
    cached = load_dataset("keywords", reps=1, augment_copies=1)  # from the cache: identical
    for s in ("train", "test"):
        np.testing.assert_array_equal(cached.split(s)[0], small.split(s)[0])
    # espeak-ng's output wobbles by a few samples between calls (internal synthesizer state), so a
    # fresh synthesis is the same task -- same clips, labels, voices and augmentation -- not the same bits.
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path))
    again = load_dataset("keywords", reps=1, augment_copies=1)
    for s in ("train", "test"):
        np.testing.assert_array_equal(again.split(s)[1], small.split(s)[1])
        a, b = again.split(s)[0][:, :, 0].max(1), small.split(s)[0][:, :, 0].max(1)
        assert np.corrcoef(a, b)[0, 1] > 0.9


def test_features_are_the_frontend(small):
    fe = Frontend.from_preprocessing(small.preprocessing)
    assert fe.output_shape == small.input_shape
    x, y = small.split("test")
    # the loudest frame (first MFCC) of a spoken clip is far above that of a _silence_ clip
    peak = x[:, :, 0].max(axis=1)
    assert np.median(peak[y != 0]) > np.median(peak[y == 0]) + 20


def test_logmel_option(cache, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE", str(cache))
    ds = load_dataset("keywords", reps=1, augment_copies=1, frontend={"kind": "logmel", "num_mel_bins": 32})
    assert ds.input_shape == (49, 32) and ds.preprocessing["frontend"]["kind"] == "logmel"
