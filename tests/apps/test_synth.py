"""Keyword streams spoken by any speech source: voices, truth, and what a missing source says."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")

from edgekit.apps.synth import keyword_stream, stream_speakers  # noqa: E402
from edgekit.data import tts  # noqa: E402
from edgekit.data.keywords import split_voices  # noqa: E402
from edgekit.errors import ConfigError, DataError  # noqa: E402

needs = {s: pytest.mark.skipif(bool(tts.missing(s)), reason=f"{s} not usable here: {tts.missing(s)}")
         for s in ("flite", "festival", "dectalk")}


def test_default_speakers_are_the_keyword_sets_test_speakers():
    test = set(split_voices(0)["test"])
    pool = stream_speakers()
    assert pool and {sp.name for sp in pool} <= test
    assert {sp.source for sp in pool} >= {"espeak"}


@needs["flite"]
def test_a_stream_spoken_by_one_flite_voice():
    audio, events = keyword_stream(9.0, 3, seed=2, voices=["flite:slt"], n_distractors=1, noise_bursts=0)
    speech = [e for e in events if e["label"] != "_noise_"]
    assert len(speech) == 4 and {e["voice"].split("~")[0] for e in speech} == {"flite:slt"}
    assert sum(e["label"] != "_unknown_" for e in speech) == 3
    for e in speech:  # the truth marks where the word is: loud inside, quiet just before it
        s, t = int(e["start"] * 16000), int(e["end"] * 16000)
        inside = np.sqrt(np.mean(audio[s:t] ** 2))
        before = np.sqrt(np.mean(audio[max(0, s - 4000):s - 800] ** 2))
        assert inside > 2.5 * before, e  # speech 15-30 dB over the noise, clip gains -6..+3 dB


@needs["festival"]
def test_a_source_name_means_all_of_its_speakers():
    assert {sp.voice for sp in stream_speakers(["festival"])} == {"kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"}
    audio, events = keyword_stream(6.0, 2, seed=1, voices=["festival"], n_distractors=0, noise_bursts=0)
    assert all(e["voice"].startswith("festival:") for e in events) and np.abs(audio).max() > 0.1


@needs["dectalk"]
def test_the_unseen_family_speaks_too():
    audio, events = keyword_stream(6.0, 2, seed=0, voices=["dectalk:betty"], n_distractors=0, noise_bursts=0)
    assert [e["voice"].split("~")[0] for e in events] == ["dectalk:betty"] * 2


def test_bad_voices_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="Unknown speech source 'pico'"):
        keyword_stream(5.0, 1, voices=["pico"])
    with pytest.raises(ConfigError, match="No espeak speaker or voice 'm99'"):
        keyword_stream(5.0, 1, voices=["espeak:m99"])
    monkeypatch.setenv("PATH", str(tmp_path))  # no flite on this "machine"
    monkeypatch.setattr(tts, "_missing_cache", {})
    with pytest.raises(DataError, match="apt install flite"):
        keyword_stream(5.0, 1, voices=["flite:slt"])
