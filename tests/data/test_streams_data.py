"""Negative speech for keyword streams: the prose corpus, conversation streams, and long speech recordings in
a Speech Commands folder's ``_background_speech_/`` as training ``_unknown_``."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgekit.data import load_dataset
from edgekit.data.folders import SPEECH_KEYWORDS
from edgekit.data.streams import PROSE_DIR, _reverb, conversation, prose_sentences, split_speakers
from edgekit.errors import ConfigError, DataError
from edgekit.features.wav import write_wav


def test_prose_holds_no_keyword(tmp_path):
    (tmp_path / "a.txt").write_text("You may stop here and go home. This sentence has only ordinary words in it. "
                                    "THIS IS A HEADING WITH FIVE WORDS. Short one. Nobody says those words here at all!")
    assert prose_sentences(tmp_path) == ["Nobody says those words here at all!",
                                         "This sentence has only ordinary words in it."]
    with pytest.raises(DataError, match="No prose texts"):
        prose_sentences(tmp_path / "none")
    if PROSE_DIR.is_dir():
        s = prose_sentences()
        assert len(s) > 100
        banned = set(SPEECH_KEYWORDS)
        assert not any(banned & set(re.findall(r"[a-z']+", x.lower())) for x in s)


def test_a_conversation_stream_is_laid_out_as_its_events_say():
    pytest.importorskip("espeakng_loader")
    sps = [sp for sp in split_speakers("test") if sp.source == "espeak"][:2]
    sentences = ["This is a plain sentence with nothing special in it.", "Another sentence follows the first."]
    audio, events = conversation(12.0, sps, sentences, np.random.default_rng(1), reverb=0.5)
    assert audio.shape == (12 * 16000,) and np.abs(audio).max() <= 1.0
    speech = [e for e in events if e["label"] == "_unknown_"]
    assert speech and all(0 <= e["start"] < e["end"] <= 12.0 for e in events)
    for a, b in zip(speech, speech[1:]):
        assert b["start"] >= a["end"] + 0.19  # a pause between turns
    # Loud where the events say speech is, and only the noise bed (>= 10 dB down) in the pauses.
    inside = np.concatenate([audio[int(e["start"] * 16000):int(e["end"] * 16000)] for e in speech])
    first = int(speech[0]["start"] * 16000)
    if first > 1600:
        assert np.sqrt(np.mean(audio[:first] ** 2)) < np.sqrt(np.mean(inside ** 2)) / 3
    with pytest.raises(ConfigError, match="Unknown stream split"):
        split_speakers("nope")


def test_reverb_keeps_the_level():
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    y = _reverb(x, np.random.default_rng(1))
    assert y.shape[0] > x.shape[0] and abs(np.sqrt(np.mean(y ** 2)) - 0.1) < 1e-3


def test_background_speech_joins_the_training_unknown_class(speech_folder):
    base = load_dataset(speech_folder, keywords="yes,no", augment=False).counts()
    (speech_folder / "_background_speech_").mkdir()
    write_wav(speech_folder / "_background_speech_" / "talk.wav",
              np.random.default_rng(0).uniform(-0.2, 0.2, 5 * 16000).astype(np.float32))
    ds = load_dataset(speech_folder, keywords="yes,no", augment=False)
    c = ds.counts()
    # 4 clips a keyword in train: 4 more _unknown_ windows; val and test as recorded.
    assert c["train"][1] == base["train"][1] + 4 and c["train"][2:] == base["train"][2:]
    assert c["val"] == base["val"] and c["test"] == base["test"]
    assert ds.info["background_speech_files"] == 1
    assert "_background_speech_" not in load_dataset(speech_folder, augment=False).labels
