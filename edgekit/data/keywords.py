"""``keywords``: a Speech Commands-style 12-class KWS task synthesized offline with espeak-ng.

Classes: ``_silence_``, ``_unknown_`` and yes, no, up, down, left, right, on, off, stop, go. Each
"speaker" is an espeak-ng voice variant; every clip draws an accent, speaking rate and pitch.
Speakers are split train/val/test, so test voices never appear in training. Training clips are
augmented (time shift, gain, background noise); the voice split, word choice, rates, pitches and
augmentation are deterministic by ``seed``. espeak-ng's own output wobbles by a few samples between
calls (internal synthesizer state), so the synthesized corpus is cached on disk (``$EDGEKIT_CACHE``
or ``~/.cache/edgekit``) and reloads bit for bit; features come
from edgekit.features, so the model input is the front-end's output and its parameters go in
``preprocessing``.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from ..errors import ConfigError
from .audio import fit_length
from .augment import augment, background_noise  # noqa: F401  (re-exported for apps.synth)
from .base import Dataset, cache_dir, check_classes
from .folders import SILENCE, SPEECH_KEYWORDS, UNKNOWN

UNKNOWN_WORDS = ["backward", "bed", "bird", "cat", "dog", "eight", "five", "follow", "forward", "four", "happy",
                 "house", "learn", "marvin", "nine", "one", "seven", "sheila", "six", "three", "tree", "two",
                 "visual", "wow", "zero"]
ACCENTS = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
# Human-sounding espeak-ng variants (robotic and whispering ones left out): each one is a speaker.
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
            "klatt3", "klatt4", "klatt6", "Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene",
            "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "Reed", "adam",
            "anika", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward", "grandma",
            "grandpa", "gustave", "ian", "iven", "iven2", "john", "linda", "max", "michel", "norbert", "paul",
            "pedro", "quincy", "rob", "robert", "shelby", "steph", "travis", "victor", "zac"]
LABELS = [SILENCE, UNKNOWN] + SPEECH_KEYWORDS
SAMPLE_RATE = 16000
_VERSION = 1  # bump when synthesis changes so old caches are not reused


def split_voices(seed: int = 0, val: float = 0.1, test: float = 0.2) -> dict[str, list[str]]:
    """Disjoint speaker (voice variant) lists per split."""
    order = [VARIANTS[i] for i in np.random.default_rng(seed).permutation(len(VARIANTS))]
    n_test = max(1, int(round(test * len(order))))
    n_val = max(1, int(round(val * len(order))))
    return {"test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
            "train": sorted(order[n_test + n_val:])}


def _synthesize_corpus(variants: list[str], reps: int, seed: int, quiet: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean 1-s clips: (int16 audio [n, 16000], label ids, variant ids), cached on disk."""
    key = hashlib.sha256(json.dumps([_VERSION, variants, reps, seed, ACCENTS, UNKNOWN_WORDS]).encode()).hexdigest()[:16]
    path = cache_dir("keywords") / f"corpus-{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["audio"], z["y"], z["voice"]
    from .espeak import synthesize

    jobs = []
    for vi, variant in enumerate(variants):
        rng = np.random.default_rng([seed, VARIANTS.index(variant)])
        base_pitch, base_rate = rng.uniform(30, 70), rng.uniform(140, 190)
        for li, label in enumerate(LABELS):
            if label == SILENCE:
                continue
            for _ in range(reps):
                word = UNKNOWN_WORDS[rng.integers(len(UNKNOWN_WORDS))] if label == UNKNOWN else label
                voice = f"{ACCENTS[rng.integers(len(ACCENTS))]}+{variant}"
                jobs.append((word, voice, int(base_rate + rng.uniform(-25, 25)),
                             int(np.clip(base_pitch + rng.uniform(-12, 12), 0, 99)), li, vi))
    bar = _progress(len(jobs), "synthesizing keywords", quiet)
    audio = np.zeros((len(jobs), SAMPLE_RATE), np.int16)
    for i, (word, voice, rate, pitch, _, _) in enumerate(jobs):
        a = synthesize(word, voice, rate=rate, pitch=pitch, sample_rate=SAMPLE_RATE)
        a = a / max(float(np.abs(a).max()), 1e-6) * 0.5
        audio[i] = (fit_length(a, SAMPLE_RATE) * 32767).astype(np.int16)
        bar.update(1)
    bar.close()
    y = np.asarray([j[4] for j in jobs], np.int64)
    voice_ids = np.asarray([j[5] for j in jobs], np.int64)
    from ..fsutil import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, audio=audio, y=y, voice=voice_ids)
    return audio, y, voice_ids


def _progress(total, desc, quiet):
    try:
        from tqdm import tqdm

        import sys

        # In a log (not a terminal) update every 10 s, not every 0.1 s.
        return tqdm(total=total, desc=desc, disable=quiet, leave=False,
                    mininterval=0.1 if sys.stderr.isatty() else 10.0)
    except ImportError:  # pragma: no cover
        class _Null:
            def update(self, n): ...
            def close(self): ...
        return _Null()


def load_keywords(seed: int = 0, reps: int = 5, augment_copies: int = 3, frontend: dict | None = None,
                  quiet: bool = True) -> Dataset:
    """The 12-class synthesized keyword task (see module docs).

    ``reps`` clips per speaker and class; ``augment_copies`` augmented versions of each training clip;
    ``frontend`` overrides edgekit.features.Frontend parameters (default 49x10 MFCC).
    """
    from ..features import Frontend

    if reps < 1 or augment_copies < 1:
        raise ConfigError(f"reps and augment_copies must be >= 1; received {reps}, {augment_copies}")
    fe = Frontend(**(frontend or {}))
    if fe.sample_rate != SAMPLE_RATE:
        raise ConfigError(f"The keywords dataset is synthesized at {SAMPLE_RATE} Hz; received sample_rate {fe.sample_rate}")
    voices = split_voices(seed)
    ordered = voices["train"] + voices["val"] + voices["test"]
    audio16, y_all, vid = _synthesize_corpus(ordered, reps, seed, quiet)
    clean_all = audio16.astype(np.float32) / 32767.0
    split_of = {v: s for s, vs in voices.items() for v in vs}
    splits = {}
    for si, s in enumerate(("train", "val", "test")):
        rng = np.random.default_rng([seed, 1000 + si])
        keep = np.asarray([split_of[ordered[v]] == s for v in vid])
        clean, y = clean_all[keep], y_all[keep]
        n_sil = int(round(len(y) / (len(LABELS) - 1)))  # one class's worth of silence
        clean = np.concatenate([clean, np.zeros((n_sil, fe.clip_samples), np.float32)])
        y = np.concatenate([y, np.full(n_sil, LABELS.index(SILENCE))])
        if s == "train":
            audio = np.concatenate([augment(clean, y, rng) for _ in range(augment_copies)])
            y = np.tile(y, augment_copies)
        else:  # held-out splits: real-world-like mild noise, no shifts beyond the speaker's own
            audio = augment(clean, y, rng, shift_ms=50, gain_db=(-6.0, 3.0), noise_prob=0.5, snr_db=(10.0, 30.0))
        order = rng.permutation(len(y))
        splits[s] = (fe.batch(audio[order]), y[order])
    check_classes("keywords", LABELS, splits["train"][1])
    return Dataset("keywords", "audio-classification", list(LABELS), splits, fe.preprocessing(),
                   {"source": "espeak-ng via espeakng-loader", "voices": voices, "reps": reps,
                    "augment_copies": augment_copies, "seed": seed})
