"""The multi-source keyword set, in a small configuration: speaker split, sources, holdout, cache, features."""

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")

from edgekit.data import load_dataset, tts  # noqa: E402
from edgekit.data import keywords as kw  # noqa: E402
from edgekit.data.keywords import LABELS, speakers, split_voices  # noqa: E402
from edgekit.errors import ConfigError, DataError  # noqa: E402
from edgekit.features import Frontend  # noqa: E402

needs_cmu = pytest.mark.skipif(tts.missing("flite") or tts.missing("festival"),
                               reason=f"flite/festival not installed ({tts.SOURCES['festival'].install}; apt install flite)")


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


def test_test_speakers_never_in_training(small):
    v = small.info["voices"]
    assert not set(v["test"]) & set(v["train"]) and not set(v["val"]) & set(v["train"])
    assert not set(v["test"]) & set(v["val"])
    full = split_voices(0)
    for s in v:
        assert set(v[s]) <= set(full[s])
    assert split_voices(1) != split_voices(0)


def test_split_keeps_each_person_in_one_split_across_sources():
    split = split_voices(0)
    where = {n: s for s, names in split.items() for n in names}
    person = {}
    for sp in speakers(0):
        person.setdefault(sp.group, set()).add(where[sp.name])
    assert all(len(s) == 1 for s in person.values()), person
    # flite's and festival's kal are one recorded person; so are their slt
    assert {sp.source for sp in speakers(0) if sp.group == "cmu:kal"} == {"flite", "festival"}
    # every family has test speakers, and the split does not depend on what is installed
    fams = {sp.family for sp in speakers(0) if where[sp.name] == "test"}
    assert fams == {"espeak", "cmu", "dectalk"}
    assert len(speakers(0)) == 67 + 4 * 5 + 4 * 3 + 3 * 9


@needs_cmu
def test_info_lists_the_sources_and_voices(small):
    info = small.info
    assert list(info["sources"]) == ["espeak", "flite", "festival"] and info["missing_sources"] == {}
    assert info["sources"]["flite"]["voices"] == ["awb", "kal", "kal16", "rms", "slt"]
    assert info["sources"]["festival"]["family"] == "cmu" and info["sources"]["espeak"]["speakers"] == 67
    srcs = {n.split(":")[0] for s in ("train", "val", "test") for n in info["voices"][s]}
    assert srcs == {"espeak", "flite", "festival"}
    assert "dectalk" not in srcs  # the held-out family is never in the built-in set


@needs_cmu
def test_a_missing_source_is_left_out_with_a_warning(cache, tmp_path, monkeypatch, capsys):
    bare = tmp_path / "bin"
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))  # a machine without flite and festival
    monkeypatch.setenv("EDGEKIT_CACHE", str(cache))
    monkeypatch.setattr(tts, "_missing_cache", {})
    monkeypatch.setattr(kw, "_warned", set())
    ds = load_dataset("keywords", reps=1, augment_copies=1)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("warning: keywords")]
    assert len(lines) == 2 and "apt install flite" in lines[0] and "apt install festival" in lines[1], err
    assert list(ds.info["sources"]) == ["espeak"] and set(ds.info["missing_sources"]) == {"flite", "festival"}
    assert all(n.startswith("espeak:") for s in ds.info["voices"].values() for n in s)
    load_dataset("keywords", reps=1, augment_copies=1)
    assert "warning" not in capsys.readouterr().err  # once per process
    with pytest.raises(DataError, match=r"'flite' speech source can't run here.*apt install flite"):
        load_dataset("keywords", reps=1, augment_copies=1, sources=["espeak", "flite"])


def test_bad_source_options(cache, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE", str(cache))
    with pytest.raises(ConfigError, match="Unknown speech source 'pico'. Available: espeak, flite, festival, dectalk"):
        load_dataset("keywords", reps=1, sources="espeak,pico")
    with pytest.raises(ConfigError, match="leaves no source to train on"):
        load_dataset("keywords", reps=1, sources=["espeak"], holdout="espeak")
    with pytest.raises(ConfigError, match="disagree"):
        load_dataset("keywords", reps=1, augment_copies=2, augment={"copies": 3})


@needs_cmu
def test_holdout_tests_on_every_speaker_of_a_source_and_trains_on_no_one_it_shares(small, cache, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE", str(cache))
    ds = load_dataset("keywords", reps=1, augment_copies=1, holdout="flite")
    v = ds.info["voices"]
    assert v["test"] == sorted(sp.name for sp in speakers(0, "flite"))
    trained = v["train"] + v["val"]
    assert not [n for n in trained if n.startswith("flite:")]
    group = {sp.name: sp.group for sp in speakers(0)}
    assert {group[n] for n in trained} & {"cmu:kal", "cmu:slt", "cmu:awb", "cmu:rms"} == set()
    assert any(n.startswith("festival:ked_diphone") for n in trained)  # ked is festival's alone
    assert ds.info["sources"]["flite"]["role"] == "held out (test only)"
    assert len(ds.split("test")[1]) == 20 * 11 + 20  # 20 speakers x 11 classes x 1 rep, plus silence


def test_cached_and_deterministic(small, cache, tmp_path, monkeypatch):
    assert {p.name.split("-")[1] for p in (cache / "keywords").glob("corpus-*.npz")} >= {"espeak"}
    monkeypatch.setenv("EDGEKIT_CACHE", str(cache))
    cached = load_dataset("keywords", reps=1, augment_copies=1)  # from the cache: identical
    for s in ("train", "test"):
        np.testing.assert_array_equal(cached.split(s)[0], small.split(s)[0])
    # Within one process espeak-ng's output wobbles a little from call to call (synthesizer state carries
    # over), so a fresh synthesis here is the same task -- same clips, labels, voices and augmentation --
    # not the same bits; the same calls in a fresh process give the same bits (next test).
    # (espeak alone: a fresh synthesis of all three sources is slow.)
    first = load_dataset("keywords", reps=1, augment_copies=1, sources=["espeak"])
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path))
    again = load_dataset("keywords", reps=1, augment_copies=1, sources=["espeak"])
    assert not list((tmp_path / "keywords").glob("corpus-flite-*"))
    for s in ("train", "test"):
        np.testing.assert_array_equal(again.split(s)[1], first.split(s)[1])
        a, b = again.split(s)[0][:, :, 0].max(1), first.split(s)[0][:, :, 0].max(1)
        assert np.corrcoef(a, b)[0, 1] > 0.9


def test_breathy_espeak_voices_sound_the_same_in_every_process(tmp_path):
    """espeak-ng seeds the noise of its breathy voices from the clock at start-up; edgekit seeds it per
    request, so a keyword corpus synthesized on another machine (or a second later) is the same bits."""
    import ctypes
    import subprocess
    import sys
    import time

    import espeakng_loader

    if not hasattr(ctypes.CDLL(espeakng_loader.get_library_path()), "espeak_ng_SetRandSeed"):
        pytest.skip("this espeak-ng library has no espeak_ng_SetRandSeed: its breathy voices follow the clock")
    code = ("import hashlib, sys; from edgekit.data import espeak; "
            "print(hashlib.sha256(b''.join(espeak.synthesize(w, v).tobytes() for v in "
            "('en-us+f2', 'en-us+f3', 'en-us+f5', 'en-us+Alicia', 'en-us+victor') for w in ('yes', 'stop'))).hexdigest())")
    digests = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        digests.append(r.stdout.strip())
        time.sleep(1.1)  # the library's clock seed has 1-s resolution: the second process gets another
    assert len(digests[0]) == 64 and digests[0] == digests[1]


@needs_cmu
@pytest.mark.parametrize("source", ["flite", "festival", "dectalk"])
def test_each_source_speaks_the_words_at_the_tempo_and_pitch_asked(source):
    if tts.missing(source):
        pytest.skip(f"{source} not usable here: {tts.missing(source)}")
    s = tts.SOURCES[source]
    voice = s.voices[-1].name
    base, fast, high = s.synthesize([tts.Job("forward", voice), tts.Job("forward", voice, tempo=1.4),
                                     tts.Job("forward", voice, semitones=3.0)])

    def speech(a):  # samples above 2% of the peak: the word without leading/trailing silence
        loud = np.flatnonzero(np.abs(a) > 0.02 * np.abs(a).max())
        return loud[-1] - loud[0]

    assert 0.3 < speech(base) / 16000 < 1.2
    assert speech(fast) < 0.85 * speech(base)  # 1.4x faster
    assert abs(speech(high) / speech(base) - 1) < 0.12  # pitch up, tempo kept

    def centroid(a):
        p = np.abs(np.fft.rfft(a)) ** 2
        return float((p * np.arange(len(p))).sum() / p.sum()) * 16000 / (2 * (len(p) - 1))

    assert centroid(high) > 1.05 * centroid(base)  # 3 semitones up: the spectrum moves up ~19%


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



@needs_cmu
def test_words_sit_in_the_middle_of_their_clip_whatever_the_source(small, cache, monkeypatch):
    """Sources pad words differently (DECtalk after, flite before): each clip is trimmed, then centred."""
    monkeypatch.setenv("EDGEKIT_CACHE", str(cache))
    for source in ("espeak", "flite", "festival"):
        audio, y, _ = kw._corpus(source, 1, 0, True)  # cached by the fixture
        mid = []
        for a in audio[:: max(1, len(audio) // 60)]:
            loud = np.flatnonzero(np.abs(a) > 0.02 * np.abs(a).max())
            mid.append((loud[0] + loud[-1]) / 2 / 16000)
        assert abs(np.median(mid) - 0.5) < 0.02 and np.max(np.abs(np.asarray(mid) - 0.5)) < 0.08, (source, mid)
