"""Labelled keyword streams for testing the keyword spotter: keywords among speech-like distractors,
silence and noise, spoken by any speech source of edgekit.data.tts, with the ground truth of where each
word is.

    audio, events = keyword_stream(60, 20, seed=1)     # voices: the keywords set's held-out test speakers
    audio, events = keyword_stream(60, 20, voices=["dectalk"])   # a synthesizer family it never heard
    write_stream("stream.wav", audio, events)           # stream.wav + stream.json (edgekit demo mic --labels-file)

Data generation, not device code: needs the sources' synthesizers (edgekit.data.tts) and scipy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError

SAMPLE_RATE = 16000
# Short phrases and words a user might say near the device, none of them a keyword or a near-homophone
# of one (no "know"/"now" for "no", "of"/"cup" for "off"/"up", "write" for "right", "good" for "go"...).
DISTRACTORS = ["the weather is nice today", "please call me later", "seven eight nine", "happy birthday",
               "what time is it", "marvin the cat", "thank you very much", "where is the house", "bird and dog",
               "three four five", "hello there", "nice to meet you", "the car is red", "open the window", "sheila",
               "visual", "forward", "learn", "follow", "tree", "bed", "wow", "zero", "backward"]


def stream_speakers(voices: list[str] | None = None, seed: int = 0) -> list:
    """The speakers a stream may use: each entry of ``voices`` is a speaker (``flite:slt~2``, ``espeak:m3``),
    a voice (``dectalk:betty``: all its speakers) or a source (``dectalk``: all of its speakers).
    Default: the ``keywords`` set's test speakers from the built-in sources installed here."""
    from ..data.keywords import resolve_sources, speakers, split_voices

    if not voices:
        use, _ = resolve_sources()
        test = set(split_voices(seed)["test"])
        return [sp for src in use for sp in speakers(seed, src) if sp.name in test]
    out = []
    for v in voices:
        src, _, rest = str(v).partition(":")
        from ..data.tts import get_source

        get_source(src).require()
        pool = speakers(seed, src)
        pick = [sp for sp in pool if not rest or sp.name == v or sp.voice == rest]
        if not pick:
            names = sorted({sp.voice for sp in pool})
            raise ConfigError(f"No {src} speaker or voice {rest!r}. Voices: {', '.join(names)}; "
                              f"speakers look like {pool[0].name}")
        out.extend(sp for sp in pick if sp not in out)
    return out


def keyword_stream(duration_s: float = 60.0, n_keywords: int = 20, *, seed: int = 0, voices: list[str] | None = None,
                   n_distractors: int | None = None, noise_bursts: int = 3, snr_db: tuple = (15.0, 30.0),
                   sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, list[dict]]:
    """A ``duration_s`` stream with ``n_keywords`` keywords; returns (float32 audio, events).

    Events are ``{"label", "start", "end", "text", "voice"}`` in seconds: keywords carry their label,
    distractor speech ``_unknown_`` and noise bursts ``_noise_``. Keywords are at least 0.5 s away
    from any other speech and 1 s from another keyword. ``voices``: see :func:`stream_speakers` (default:
    the ``keywords`` dataset's held-out test speakers).
    """
    from ..data.audio import resample
    from ..data.folders import SPEECH_KEYWORDS
    from ..data.keywords import ACCENTS, background_noise, trim_silence
    from ..data.tts import Job, get_source

    if n_keywords < 1 or duration_s <= 0:
        raise ConfigError(f"Need n_keywords >= 1 and duration_s > 0; received {n_keywords}, {duration_s}")
    rng = np.random.default_rng(seed)
    pool = stream_speakers(voices)
    n_distractors = int(round(0.7 * n_keywords)) if n_distractors is None else n_distractors

    def speak(text):
        sp = pool[rng.integers(len(pool))]
        voice = f"{ACCENTS[rng.integers(len(ACCENTS))]}+{sp.voice}" if sp.source == "espeak" else sp.voice
        job = Job(text, voice, float(sp.tempo * rng.uniform(0.88, 1.12)), float(sp.semitones + rng.uniform(-1.5, 1.5)))
        a = get_source(sp.source).synthesize([job])[0]
        a = trim_silence(resample(a, 16000, sample_rate))  # so the truth marks the word itself
        gain = 0.5 * 10 ** (rng.uniform(-6, 3) / 20)  # the training clips' peak 0.5, give or take
        return (a / (np.abs(a).max() + 1e-9) * gain).astype(np.float32), f"{sp.name}" + (
            f" ({voice})" if sp.source == "espeak" else "")

    words = [SPEECH_KEYWORDS[i % len(SPEECH_KEYWORDS)] for i in range(n_keywords)]
    items = [("kw", w) for w in words] + [("speech", DISTRACTORS[i % len(DISTRACTORS)])
                                          for i in rng.permutation(max(n_distractors, 0))]
    items = [items[i] for i in rng.permutation(len(items))]
    clips = [(kind, text, *speak(text)) for kind, text in items]
    n = int(round(duration_s * sample_rate))
    speech_len = sum(c[2].shape[0] for c in clips)
    # 0.5 s of quiet around any utterance, 1 s between two keywords in a row (people pause between commands).
    min_gaps = np.full(len(clips) + 1, int(0.5 * sample_rate))
    for i in range(1, len(clips)):
        if clips[i][0] == "kw" and clips[i - 1][0] == "kw":
            min_gaps[i] = sample_rate
    spare = n - speech_len - int(min_gaps.sum())
    if spare < 0:
        raise ConfigError(f"{len(clips)} utterances ({speech_len / sample_rate:.1f} s) don't fit in {duration_s} s "
                          "with pauses between them; lengthen the stream or use fewer words")
    gaps = min_gaps + np.floor(rng.dirichlet(np.ones(len(clips) + 1)) * spare).astype(int)
    audio = np.zeros(n, np.float32)
    events, pos = [], 0
    for (kind, text, clip, voice), gap in zip(clips, gaps):
        pos += int(gap)
        audio[pos:pos + clip.shape[0]] += clip
        events.append({"label": text if kind == "kw" else "_unknown_", "start": round(pos / sample_rate, 3),
                       "end": round((pos + clip.shape[0]) / sample_rate, 3), "text": text, "voice": voice})
        pos += clip.shape[0]
    # Background: noise of changing colour (white, pink, brown, hum) in 5-s stretches, at a level
    # that puts the speech 15-30 dB above it, crossfaded so the changes themselves are not events.
    speech_rms = float(np.sqrt(np.mean(np.concatenate([c[2] for c in clips]) ** 2)))
    audio += noise_bed(n, speech_rms, rng, snr_db, sample_rate)
    # Loud noise bursts in the longest silent gaps: a door, a fan, a passing car.
    bounds = [(0.0, events[0]["start"])] + [(a["end"], b["start"]) for a, b in zip(events, events[1:])] + [
        (events[-1]["end"], duration_s)]
    for lo, hi in sorted(bounds, key=lambda g: g[0] - g[1])[:noise_bursts]:
        length = min(1.0, hi - lo - 0.4)
        if length < 0.3:
            continue
        s = int((lo + (hi - lo - length) / 2) * sample_rate)
        m = int(length * sample_rate)
        env = np.sin(np.linspace(0, np.pi, m)).astype(np.float32)
        audio[s:s + m] += background_noise(1, m, rng)[0] * speech_rms * 10 ** (rng.uniform(-6, 0) / 20) * env
        events.append({"label": "_noise_", "start": round(s / sample_rate, 3), "end": round((s + m) / sample_rate, 3),
                       "text": "", "voice": ""})
    events.sort(key=lambda e: e["start"])
    return np.clip(audio, -1, 1), events


def noise_bed(n: int, speech_rms: float, rng, snr_db: tuple = (15.0, 30.0), sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Background noise of changing colour (white, pink, brown, hum) in 5-s stretches, at a level that puts
    speech of ``speech_rms`` ``snr_db`` above it, crossfaded so the changes themselves are not events."""
    from ..data.keywords import background_noise

    seg = 5 * sample_rate
    fade = np.minimum(1.0, np.minimum(np.arange(seg), np.arange(seg)[::-1]) / (0.2 * sample_rate)).astype(np.float32)
    bg = np.zeros(n + seg, np.float32)
    for start in range(0, n, seg // 2):
        level = speech_rms / 10 ** (rng.uniform(*snr_db) / 20)
        bg[start:start + seg] += background_noise(1, seg, rng)[0] * level * fade
    return bg[:n]


def write_stream(wav_path: str | Path, audio: np.ndarray, events: list[dict], sample_rate: int = SAMPLE_RATE,
                 labels_path: str | Path | None = None) -> tuple[Path, Path]:
    """Write the WAV and its truth (``{"sample_rate", "events"}``) next to it as ``.json``."""
    from ..data.audio import write_wav

    wav_path = Path(wav_path)
    labels_path = Path(labels_path) if labels_path else wav_path.with_suffix(".json")
    write_wav(wav_path, audio, sample_rate)
    labels_path.write_text(json.dumps({"sample_rate": sample_rate, "duration": round(len(audio) / sample_rate, 3),
                                       "events": events}, indent=1) + "\n")
    return wav_path, labels_path


def streaming_keywords(reps: int, augment_copies: int, shift_ms: float, seed: int = 0, **options):
    """The ``keywords`` dataset (same speakers and splits) with training clips shifted up to ``shift_ms``.

    For streaming: a sliding 1-s window sees a word off-centre most of the time (the dataset's own
    shift is +-100 ms). A model that recognises it there gives posteriors that stay up for several
    hops, which smoothing can average, instead of one short peak that smoothing dilutes.
    """
    from ..data import load_dataset

    ds = load_dataset("keywords", reps=reps, seed=seed, augment={"copies": augment_copies, "shift_ms": shift_ms},
                      **options)
    ds.info.update(train_shift_ms=shift_ms)
    return ds
