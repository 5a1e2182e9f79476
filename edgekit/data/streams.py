"""Built-in keyword streams: conversation-like negative speech and keyword streams, per speaker split.

    streams = builtin_streams("test")          # held-out voices: what the goals are measured on
    streams = builtin_streams("calibration")   # the keywords set's validation voices: calibration only
    streams = builtin_streams("dectalk")       # a synthesizer family never trained or calibrated on
    windows = prose_windows("train", 2000)     # 1-s cuts of training voices' prose, for the _unknown_ class

Negative streams are turns of ordinary English prose (sentences of the texts in /usr/share/common-licenses
with none of the ten keywords in them) spoken by the split's voices of the built-in sources, with pauses
between turns, a changing noise bed 10-30 dB under the speech, loud noise bursts over speech, and room
reverberation on a third of the turns. Keyword streams are edgekit.apps.synth.keyword_stream (keywords among
distractor phrases and noise). Voices follow edgekit.data.keywords.split_voices: the test voices never train
or calibrate, calibration uses the validation voices, training windows come from training voices only.

Everything is drawn from ``seed`` and cached in ``$EDGEKIT_CACHE/streams`` (int16 WAV plus events JSON), so
the streams reload bit for bit (espeak-ng varies by a few samples between calls in one process). A user's own
streams are a WAV with an events file, or a folder of them (edgekit.apps.streams.load_streams).
Build side (synthesizers); the streams themselves are plain files any device can evaluate on.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import zlib
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError

SAMPLE_RATE = 16000
PROSE_DIR = Path("/usr/share/common-licenses")
_VERSION = 1  # bump when the generation changes so old caches are not reused
# Per split: minutes of negative prose in streams of ``neg_min`` minutes, keyword streams of ``kw_s`` seconds
# with ``kw_n`` keywords each, and where the voices come from. An hour of negatives where a rate per hour is
# judged or picked: with half an hour "<= 1 FA/h" meant no false alarm at all, and calibration overshot.
SPLITS = {
    "calibration": {"voices": "val", "neg_streams": 6, "neg_min": 10.0, "kw_streams": 4, "kw_s": 180.0, "kw_n": 40},
    "test": {"voices": "test", "neg_streams": 6, "neg_min": 10.0, "kw_streams": 5, "kw_s": 180.0, "kw_n": 40},
    "dectalk": {"voices": "dectalk", "neg_streams": 6, "neg_min": 10.0, "kw_streams": 5, "kw_s": 180.0, "kw_n": 40},
    "train": {"voices": "train", "neg_streams": 4, "neg_min": 10.0, "kw_streams": 0, "kw_s": 0.0, "kw_n": 0},
}


def _rng(seed: int, *names: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def prose_sentences(root: Path = PROSE_DIR, keywords: list[str] | None = None) -> list[str]:
    """Sentences of 5-30 words from the texts in ``root`` with none of ``keywords`` (or their plurals) in them,
    deduplicated and sorted."""
    from .folders import SPEECH_KEYWORDS

    words = {w.lower() for w in (keywords or SPEECH_KEYWORDS)}
    banned = words | {w + "s" for w in words} | {w + "'s" for w in words}
    files = sorted(p for p in Path(root).glob("*") if p.is_file() and not p.is_symlink()) if Path(root).is_dir() else []
    if not files:
        raise DataError(f"No prose texts in {root} to build negative speech from (Debian's base-files puts license "
                        "texts there); give your own negative recordings as a folder of WAVs instead")
    out = set()
    for p in files:
        text = p.read_text(errors="replace")
        text = re.sub(r"https?://\S+|<[^>]*>|\S+@\S+", " ", text)
        text = re.sub(r"\s+", " ", text)
        for sent in re.split(r"(?<=[.!?])\s+", text):
            sent = re.sub(r"[^A-Za-z0-9,;:'()\- .!?]", " ", sent)
            sent = re.sub(r"\s+", " ", sent).strip()
            toks = re.findall(r"[A-Za-z']+", sent.lower())
            if not 5 <= len(toks) <= 30 or sent.upper() == sent or banned & set(toks):
                continue
            if sum(c.isdigit() for c in sent) > 4:  # section numbers and dates read badly
                continue
            out.add(sent)
    return sorted(out)


def split_speakers(split: str, seed: int = 0) -> list:
    """The speakers of a stream split (see SPLITS): the keywords set's val/test/train voices of the built-in
    sources installed here, or every DECtalk speaker."""
    from ..data.keywords import resolve_sources, speakers, split_voices

    if split not in SPLITS:
        raise ConfigError(f"Unknown stream split {split!r}. Available: {', '.join(SPLITS)}")
    which = SPLITS[split]["voices"]
    if which == "dectalk":
        from .tts import get_source

        get_source("dectalk").require()
        return speakers(seed, "dectalk")
    use, _ = resolve_sources()
    names = set(split_voices(seed)[which])
    return [sp for src in use for sp in speakers(seed, src) if sp.name in names]


def _reverb(x: np.ndarray, rng, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A room: the direct sound plus exponentially decaying noise (RT60 0.2-0.7 s), energy kept."""
    rt60 = rng.uniform(0.2, 0.7)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    rir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60) * 10 ** (rng.uniform(-12, -4) / 20)
    rir[0] = 1.0
    m = x.shape[0] + n - 1
    size = 1 << (m - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(rir, size), size)[:x.shape[0] + n // 2]
    return (y / (np.sqrt(np.mean(y ** 2)) + 1e-9) * np.sqrt(np.mean(x ** 2))).astype(np.float32)


def conversation(duration_s: float, speakers: list, sentences: list[str], rng, *, snr_db=(10.0, 30.0),
                 reverb: float = 1 / 3, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, list[dict]]:
    """``duration_s`` of turns (1-3 sentences by one speaker) with pauses, noise and reverb; (audio, events:
    each turn as ``_unknown_`` speech and each noise burst as ``_noise_``)."""
    from ..apps.synth import noise_bed
    from .keywords import ACCENTS, background_noise, trim_silence
    from .tts import Job, get_source

    n = int(round(duration_s * sample_rate))
    turns, planned = [], 0.0
    while planned < duration_s:  # ~2.6 words a second and 0.2-1.5 s pauses
        sp = speakers[rng.integers(len(speakers))]
        text = " ".join(sentences[rng.integers(len(sentences))] for _ in range(rng.integers(1, 4)))
        voice = f"{ACCENTS[rng.integers(len(ACCENTS))]}+{sp.voice}" if sp.source == "espeak" else sp.voice
        job = Job(text, voice, round(float(sp.tempo * rng.uniform(0.9, 1.1)), 4),
                  round(float(sp.semitones + rng.uniform(-1.0, 1.0)), 3))
        turns.append((sp, job, float(rng.uniform(0.2, 1.5)), float(rng.uniform(-6, 3)), bool(rng.random() < reverb)))
        planned += len(text.split()) / 2.6 + turns[-1][2]
    clips: list = [None] * len(turns)
    by_source: dict = {}
    for i, (sp, job, *_rest) in enumerate(turns):
        by_source.setdefault(sp.source, []).append(i)
    for src, idx in by_source.items():
        for i, a in zip(idx, get_source(src).synthesize([turns[i][1] for i in idx])):
            clips[i] = trim_silence(a)
    audio = np.zeros(n, np.float32)
    events, pos = [], 0
    for (sp, job, gap, gain_db, rev), clip in zip(turns, clips):
        pos += int(gap * sample_rate)
        if pos >= n:
            break
        c = clip / (np.abs(clip).max() + 1e-9) * 0.5 * 10 ** (gain_db / 20)
        if rev:
            c = _reverb(c, rng, sample_rate)
        c = c[:n - pos]
        audio[pos:pos + c.shape[0]] += c
        events.append({"label": "_unknown_", "start": round(pos / sample_rate, 3),
                       "end": round((pos + c.shape[0]) / sample_rate, 3), "text": job.text[:80], "voice": sp.name,
                       "reverb": rev})
        pos += c.shape[0]
    speech = audio[np.abs(audio) > 0]
    rms = float(np.sqrt(np.mean(speech ** 2))) if speech.size else 0.1
    audio += noise_bed(n, rms, rng, snr_db, sample_rate)
    # Loud noise bursts (a door, a fan, a passing car) anywhere, over speech too: one a minute.
    for _ in range(int(duration_s // 60)):
        m = int(rng.uniform(0.3, 1.5) * sample_rate)
        s = int(rng.integers(0, max(1, n - m)))
        env = np.sin(np.linspace(0, np.pi, m)).astype(np.float32)
        audio[s:s + m] += background_noise(1, m, rng)[0] * rms * 10 ** (rng.uniform(-6, 0) / 20) * env
        events.append({"label": "_noise_", "start": round(s / sample_rate, 3), "end": round((s + m) / sample_rate, 3)})
    events.sort(key=lambda e: e["start"])
    return np.clip(audio, -1, 1), events


def _key(split: str, seed: int, speakers: list, sentences: list[str]) -> str:
    import dataclasses

    return hashlib.sha256(json.dumps([_VERSION, split, SPLITS[split], seed, [dataclasses.astuple(s) for s in speakers],
                                      hashlib.sha256("\n".join(sentences).encode()).hexdigest()]).encode()).hexdigest()[:16]


def stream_folder(split: str = "test", seed: int = 0, quiet: bool = True) -> Path:
    """The cached folder of a split's streams (NN-neg.wav, NN-kw.wav + NN-kw.json), generated when missing."""
    from ..fsutil import atomic_path
    from .base import cache_dir

    sps = split_speakers(split, seed)
    if not sps:
        raise DataError(f"No speakers for the {split!r} streams with the speech sources installed here")
    sentences = prose_sentences()
    folder = cache_dir("streams") / f"{split}-{_key(split, seed, sps, sentences)}"
    if (folder / "streams.json").exists():
        return folder
    cfg = SPLITS[split]
    from ..apps.synth import keyword_stream
    from .keywords import _progress
    from .audio import write_wav

    total = cfg["neg_streams"] + cfg["kw_streams"]
    bar = _progress(total, f"synthesizing {split} streams", quiet)
    with atomic_path(folder, is_dir=True) as tmp:
        tmp.mkdir()
        index = []
        for i in range(cfg["neg_streams"]):
            audio, events = conversation(60 * cfg["neg_min"], sps, sentences, _rng(seed, "neg", split, str(i)))
            write_wav(tmp / f"{i:02d}-neg.wav", audio)
            (tmp / f"{i:02d}-neg.json").write_text(json.dumps({"events": events}) + "\n")
            index.append({"wav": f"{i:02d}-neg.wav", "seconds": round(len(audio) / SAMPLE_RATE, 2), "keywords": 0})
            bar.update(1)
        for i in range(cfg["kw_streams"]):
            audio, events = keyword_stream(cfg["kw_s"], cfg["kw_n"], seed=int(_rng(seed, "kw", split, str(i)).integers(2**31)),
                                           voices=[sp.name for sp in sps], snr_db=(10.0, 30.0))
            write_wav(tmp / f"{i:02d}-kw.wav", audio)
            (tmp / f"{i:02d}-kw.json").write_text(json.dumps({"sample_rate": SAMPLE_RATE, "events": events}) + "\n")
            index.append({"wav": f"{i:02d}-kw.wav", "seconds": round(len(audio) / SAMPLE_RATE, 2),
                          "keywords": sum(1 for e in events if not e["label"].startswith("_"))})
            bar.update(1)
        (tmp / "streams.json").write_text(json.dumps({"split": split, "seed": seed, "speakers": [s.name for s in sps],
                                                      "streams": index, "sentences": len(sentences)}, indent=1) + "\n")
    bar.close()
    return folder


def builtin_streams(split: str = "test", seed: int = 0, quiet: bool = True):
    """The built-in streams of ``split`` as edgekit.apps.streams.Stream objects (negatives: no events)."""
    from ..apps.streams import load_streams

    folder = stream_folder(split, seed, quiet)
    out = load_streams(folder)  # NN-kw.json: keywords; NN-neg.json: only negative speech and noise
    for s in out:
        s.name = f"{split}/{s.name}"
    return out


def prose_windows(split: str = "train", n: int = 2000, seed: int = 0, quiet: bool = True) -> np.ndarray:
    """``n`` 1-s windows (float32 [n, 16000]) cut at random from the split's negative prose streams: continuous
    speech for the ``_unknown_`` class, from training voices only by default."""
    from ..features.wav import read_wav

    folder = stream_folder(split, seed, quiet)
    audio = [read_wav(p, SAMPLE_RATE) for p in sorted(folder.glob("*-neg.wav"))]
    if not audio:
        raise DataError(f"The {split} streams hold no negative speech")
    rng = _rng(seed, "windows", split)
    out = np.empty((n, SAMPLE_RATE), np.float32)
    for i in range(n):
        a = audio[rng.integers(len(audio))]
        s = rng.integers(0, len(a) - SAMPLE_RATE)
        out[i] = a[s:s + SAMPLE_RATE]
    return out


def load_keywords(seed: int = 0, reps: int = 5, augment_copies: int | None = None, frontend: dict | None = None,
                  quiet: bool = True, sources=None, holdout: str | None = None, augment=True,
                  prose_unknown: int = 0):
    """The ``keywords`` dataset (edgekit.data.keywords.load_keywords, same options) with ``prose_unknown`` 1-s
    windows of continuous prose spoken by the training voices in the training ``_unknown_`` class, so a
    streaming model has heard running speech that holds no keyword."""
    from .keywords import load_keywords as load
    from .tts import BUILTIN

    if isinstance(prose_unknown, bool) or not isinstance(prose_unknown, int) or prose_unknown < 0:
        raise ConfigError(f"prose_unknown must be an integer >= 0; received {prose_unknown!r}")
    if prose_unknown and holdout in BUILTIN:
        raise ConfigError(f"prose_unknown speaks with every built-in source's training voices; it can't be combined "
                          f"with holding out the built-in source {holdout!r}")
    extra = prose_windows("train", prose_unknown, seed, quiet) if prose_unknown else None
    ds = load(seed, reps, augment_copies, frontend, quiet, sources, holdout, augment, extra_unknown=extra)
    if prose_unknown:
        ds.info.pop("extra_unknown", None)
        ds.info["prose_unknown"] = prose_unknown
    return ds


if __name__ == "__main__":  # pragma: no cover - python -m edgekit.data.streams SPLIT: build a split's cache
    for name in sys.argv[1:] or ["calibration", "test"]:
        print(stream_folder(name, quiet=False))
