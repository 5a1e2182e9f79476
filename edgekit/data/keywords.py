"""``keywords``: a Speech Commands-style 12-class KWS task synthesized offline by several speech sources.

Classes: ``_silence_``, ``_unknown_`` and yes, no, up, down, left, right, on, off, stop, go. The clips
come from the sources in edgekit.data.tts: espeak-ng (always, from the ``espeakng-loader`` wheel) and,
where installed, flite and festival (Debian packages). A source that is missing is left out with a one-line
warning saying what to install; ``sources=`` asks for an exact list (an error if one can't run).
A speaker is a source's voice at a base tempo and pitch (espeak: a voice variant, every clip drawing an
accent); each clip varies tempo and pitch around its speaker's. Speakers are split train/val/test by the
person behind them (flite's and festival's kal are one person), per family, so test voices never appear in
training, and the split depends on the seed only, not on what is installed. ``holdout=SOURCE`` makes every
speaker of SOURCE the test split and trains on the others without anyone SOURCE shares: leave-one-source-out
(benchmarks/kws_sources.py), and with ``holdout="dectalk"`` the built-in model on a family it never heard.

Training clips get edgekit.data.augment's copies (speed, shift, gain, noise; ``augment`` option);
val/test clips mild noise. Everything is deterministic by ``seed``; espeak-ng's output wobbles by a few
samples between calls, so each source's clean corpus is cached on disk (``$EDGEKIT_CACHE`` or
``~/.cache/edgekit``) and reloads bit for bit. Features come from edgekit.features, so the model input is
the front-end's output and its parameters go in ``preprocessing``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .audio import fit_length
from .augment import augment, augmented_copies, background_noise, parse_augment  # noqa: F401  (re-exported for apps.synth)
from .augment import augment as _augment_clips
from .base import Dataset, cache_dir, check_classes
from .folders import SILENCE, SPEECH_KEYWORDS, UNKNOWN
from .tts import BUILTIN, SOURCES, Job, get_source, missing

UNKNOWN_WORDS = ["backward", "bed", "bird", "cat", "dog", "eight", "five", "follow", "forward", "four", "happy",
                 "house", "learn", "marvin", "nine", "one", "seven", "sheila", "six", "three", "tree", "two",
                 "visual", "wow", "zero"]
ACCENTS = list(SOURCES["espeak"].ACCENTS)
VARIANTS = list(SOURCES["espeak"].VARIANTS)
LABELS = [SILENCE, UNKNOWN] + SPEECH_KEYWORDS
SAMPLE_RATE = 16000
# Speakers per recorded voice (base tempo and pitch), so the few voices of flite/festival/DECtalk weigh
# something beside espeak's 67 variants.
VARIANTS_PER_VOICE = {"espeak": 1, "flite": 4, "festival": 4, "dectalk": 3}
_VERSION = 4  # 4: espeak's breath noise seeded per clip (was the clock). Bump when synthesis changes so old caches are not reused


@dataclass(frozen=True)
class Speaker:
    name: str        # "espeak:m3", "flite:slt~2"
    source: str
    voice: str       # the engine's voice name
    group: str       # the person behind it: a split keeps a group together
    family: str
    tempo: float     # base tempo factor
    semitones: float  # base pitch shift


def _rng(seed: int, *names: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def speakers(seed: int = 0, source: str | None = None) -> list[Speaker]:
    """Every speaker of ``source`` (default: of all sources), with its base tempo and pitch."""
    out = []
    for src in ([source] if source else list(SOURCES)):
        s = get_source(src)
        n_var = VARIANTS_PER_VOICE[src]
        for v in s.voices:
            rng = _rng(seed, "speaker", src, v.name)
            for k in range(n_var):
                if src == "espeak":  # the variant is the speaker; accents vary per clip
                    st, tempo = rng.uniform(-5, 5), rng.uniform(0.85, 1.15)
                else:  # spread the variants of one voice over -3..+3 semitones
                    st = -3 + 6 * (k + rng.uniform(0.1, 0.9)) / n_var
                    tempo = rng.uniform(0.85, 1.15)
                name = f"{src}:{v.name}" if n_var == 1 else f"{src}:{v.name}~{k}"
                out.append(Speaker(name, src, v.name, v.speaker, s.family, round(float(tempo), 4), round(float(st), 3)))
    return out


def split_voices(seed: int = 0, val: float = 0.1, test: float = 0.2) -> dict[str, list[str]]:
    """Disjoint speaker lists per split, over every source (installed or not).

    The persons (groups) of each family are split on their own, so each family has test (and, with 3
    or more persons, val) speakers; all speakers of a person land in one split.
    """
    by_family: dict[str, list[str]] = {}
    for sp in speakers(seed):
        by_family.setdefault(sp.family, [])
        if sp.group not in by_family[sp.family]:
            by_family[sp.family].append(sp.group)
    split_of = {}
    for fam, groups in by_family.items():
        # espeak keeps the permutation of the single-source version (same test voices as before).
        rng = np.random.default_rng(seed) if fam == "espeak" else _rng(seed, "split", fam)
        order = [groups[i] for i in rng.permutation(len(groups))]
        n_test = max(1, int(round(test * len(order))))
        n_val = max(1, int(round(val * len(order)))) if len(order) >= 3 else 0
        for i, g in enumerate(order):
            split_of[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    out = {"train": [], "val": [], "test": []}
    for sp in speakers(seed):
        out[split_of[sp.group]].append(sp.name)
    return {k: sorted(v) for k, v in out.items()}


def jobs_for(sp: Speaker, reps: int, seed: int) -> list[tuple[Job, int]]:
    """``reps`` clips per non-silence class for speaker ``sp``: (job, label id), deterministic by seed."""
    rng = _rng(seed, "clips", sp.name)
    jobs = []
    for li, label in enumerate(LABELS):
        if label == SILENCE:
            continue
        for _ in range(reps):
            word = UNKNOWN_WORDS[rng.integers(len(UNKNOWN_WORDS))] if label == UNKNOWN else label
            voice = f"{ACCENTS[rng.integers(len(ACCENTS))]}+{sp.voice}" if sp.source == "espeak" else sp.voice
            jobs.append((Job(word, voice, round(float(sp.tempo * rng.uniform(0.88, 1.12)), 4),
                             round(float(sp.semitones + rng.uniform(-1.5, 1.5)), 3)), li))
    return jobs


def trim_silence(x: np.ndarray, rel: float = 0.02) -> np.ndarray:
    """Drop leading and trailing near-silence (below ``rel`` of the peak): sources pad words differently
    (DECtalk 0.45 s after, flite 0.25 s before), and a centred word must mean the same for all."""
    loud = np.flatnonzero(np.abs(x) > rel * (np.abs(x).max() + 1e-9))
    return x[loud[0]:loud[-1] + 1] if loud.size else x


def _corpus_path(source: str, reps: int, seed: int) -> Path:
    sps = speakers(seed, source)
    key = hashlib.sha256(json.dumps([_VERSION, source, [dataclasses.astuple(s) for s in sps], reps, seed,
                                     ACCENTS, UNKNOWN_WORDS]).encode()).hexdigest()[:16]
    return cache_dir("keywords") / f"corpus-{source}-{key}.npz"


def _corpora(sources: list[str], reps: int, seed: int, quiet: bool) -> dict:
    """``_corpus`` of each source; the ones not cached yet are synthesized at the same time (espeak runs in
    this process, the others as subprocesses: together they take the time of the slowest, not the sum)."""
    todo = [s for s in sources if not _corpus_path(s, reps, seed).exists()]
    out = {}
    if len(todo) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(todo)) as ex:
            futures = {s: ex.submit(_corpus, s, reps, seed, quiet, i) for i, s in enumerate(todo)}
            out = {s: f.result() for s, f in futures.items()}
    return {s: out[s] if s in out else _corpus(s, reps, seed, quiet) for s in sources}


def _corpus(source: str, reps: int, seed: int, quiet: bool, position: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Clean 1-s clips of every speaker of ``source``: (int16 audio [n, 16000], label ids, speaker per clip)."""
    sps = speakers(seed, source)
    path = _corpus_path(source, reps, seed)
    names = [s.name for s in sps]
    if path.exists():
        with np.load(path) as z:
            return z["audio"], z["y"], [names[i] for i in z["speaker"]]
    get_source(source).require()
    jobs, y, who = [], [], []
    for si, sp in enumerate(sps):
        for job, li in jobs_for(sp, reps, seed):
            jobs.append(job)
            y.append(li)
            who.append(si)
    audio = np.zeros((len(jobs), SAMPLE_RATE), np.int16)
    bar = _progress(len(jobs), f"synthesizing keywords ({source})", quiet, position)
    step = 256
    for i in range(0, len(jobs), step):
        for k, a in enumerate(get_source(source).synthesize(jobs[i:i + step])):
            a = trim_silence(a)
            a = a / max(float(np.abs(a).max()), 1e-6) * 0.5
            audio[i + k] = (fit_length(a, SAMPLE_RATE) * 32767).astype(np.int16)
        bar.update(min(step, len(jobs) - i))
    bar.close()
    y, who = np.asarray(y, np.int64), np.asarray(who, np.int64)
    from ..fsutil import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, audio=audio, y=y, speaker=who)
    return audio, y, [names[i] for i in who]


def _progress(total, desc, quiet, position=0):
    try:
        from tqdm import tqdm

        # In a log (not a terminal) update every 10 s, not every 0.1 s.
        return tqdm(total=total, desc=desc, disable=quiet, leave=False, position=position,
                    mininterval=0.1 if sys.stderr.isatty() else 10.0)
    except ImportError:  # pragma: no cover
        class _Null:
            def update(self, n): ...
            def close(self): ...
        return _Null()


_warned: set[str] = set()


def resolve_sources(sources=None, holdout: str | None = None) -> tuple[list[str], dict[str, str]]:
    """(sources to use, {missing built-in source: why and what to install}).

    None: the built-in sources that can run here (espeak must). A list or comma-separated string: exactly
    those, each of which must run here.
    """
    if isinstance(sources, str):
        sources = [s.strip() for s in sources.split(",") if s.strip()]
    lacking = {}
    if sources is None:
        use = []
        for name in BUILTIN:
            why = missing(name)
            if why is None:
                use.append(name)
            elif name == "espeak":
                get_source(name).require()
            else:
                lacking[name] = f"{why}; install with: {get_source(name).install}"
    else:
        if not isinstance(sources, (list, tuple)) or not sources:
            raise ConfigError(f"sources must be a non-empty list of speech sources ({', '.join(SOURCES)}); "
                              f"received {sources!r}")
        for name in sources:
            get_source(name).require()
        use = list(dict.fromkeys(sources))
    if holdout is not None:
        get_source(holdout).require()
        if holdout in use and len(use) == 1:
            raise ConfigError(f"holdout {holdout!r} leaves no source to train on (sources: {', '.join(use)})")
    return use, lacking


def _warn_missing(lacking: dict[str, str], use: list[str]) -> None:
    for name, why in lacking.items():
        if name not in _warned:
            _warned.add(name)
            print(f"warning: keywords: the {name} speech source is left out ({why}); the set is built from "
                  f"{', '.join(use)} only", file=sys.stderr)


def load_keywords(seed: int = 0, reps: int = 5, augment_copies: int | None = None, frontend: dict | None = None,
                  quiet: bool = True, sources=None, holdout: str | None = None, augment=True,
                  extra_unknown=None) -> Dataset:
    """The 12-class synthesized keyword task (see module docs).

    ``reps`` clips per speaker and class; ``augment`` the training augmentation (True, False or a dict of
    edgekit.data.augment.AudioAugment fields); ``augment_copies`` a shorthand for its ``copies``;
    ``sources`` the speech sources (default: the built-in ones installed here); ``holdout`` a source whose
    speakers are all the test split and none of whose persons train; ``frontend`` overrides
    edgekit.features.Frontend parameters (default 49x10 MFCC); ``extra_unknown`` (float32 [n, 16000]) joins the
    training ``_unknown_`` class before augmentation (the registered ``keywords`` loader,
    edgekit.data.streams.load_keywords, fills it with windows of the training voices' prose: ``prose_unknown``).
    """
    from ..features import Frontend

    if not isinstance(reps, int) or reps < 1:
        raise ConfigError(f"reps must be an integer >= 1; received {reps!r}")
    if augment_copies is not None:
        if isinstance(augment, dict) and "copies" in augment and augment["copies"] != augment_copies:
            raise ConfigError(f"augment_copies={augment_copies} and augment copies={augment['copies']} disagree; give one")
        if not isinstance(augment_copies, int) or augment_copies < 0:
            raise ConfigError(f"augment_copies must be an integer >= 0; received {augment_copies!r}")
    cfg = parse_augment(augment)
    if augment_copies is not None:
        cfg = dataclasses.replace(cfg, copies=augment_copies)
    fe = Frontend(**(frontend or {}))
    if fe.sample_rate != SAMPLE_RATE:
        raise ConfigError(f"The keywords dataset is synthesized at {SAMPLE_RATE} Hz; received sample_rate {fe.sample_rate}")
    use, lacking = resolve_sources(sources, holdout)
    _warn_missing(lacking, use)
    split = split_voices(seed)
    split_of = {n: s for s, names in split.items() for n in names}
    train_sources = [s for s in use if s != holdout]
    shared = {sp.group for sp in speakers(seed, holdout)} if holdout else set()
    clean_by = {"train": [], "val": [], "test": []}
    corpora = _corpora(list(dict.fromkeys(train_sources + ([holdout] if holdout else []))), reps, seed, quiet)
    for src, (audio16, y_all, who) in corpora.items():
        group = {sp.name: sp.group for sp in speakers(seed, src)}
        for s in clean_by:
            if src == holdout:
                keep = np.full(len(who), s == "test")
            elif holdout:  # train/val as usual, minus anyone the held-out source shares
                keep = np.asarray([split_of[w] == s and s != "test" and group[w] not in shared for w in who])
            else:
                keep = np.asarray([split_of[w] == s for w in who])
            if keep.any():
                clean_by[s].append((audio16[keep], y_all[keep], [w for w, k in zip(who, keep) if k]))
    splits, voices = {}, {}
    for si, s in enumerate(("train", "val", "test")):
        if not clean_by[s]:
            raise ConfigError(f"No {s} speakers in sources {', '.join(use)}"
                              + (f" with {holdout} held out" if holdout else ""))
        rng = np.random.default_rng([seed, 1000 + si])
        clean = np.concatenate([a for a, _, _ in clean_by[s]]).astype(np.float32) / 32767.0
        y = np.concatenate([b for _, b, _ in clean_by[s]])
        voices[s] = sorted({w for _, _, ws in clean_by[s] for w in ws})
        n_sil = int(round(len(y) / (len(LABELS) - 1)))  # one class's worth of silence
        clean = np.concatenate([clean, np.zeros((n_sil, fe.clip_samples), np.float32)])
        y = np.concatenate([y, np.full(n_sil, LABELS.index(SILENCE))])
        if s == "train" and extra_unknown is not None and len(extra_unknown):
            clean = np.concatenate([clean, np.asarray(extra_unknown, np.float32)])
            y = np.concatenate([y, np.full(len(extra_unknown), LABELS.index(UNKNOWN))])
        if s == "train":
            audio, y = augmented_copies(clean, y, cfg, rng, silence_label=LABELS.index(SILENCE))
        else:  # held-out splits: real-world-like mild noise, no shifts beyond the speaker's own
            audio = _augment_clips(clean, y, rng, shift_ms=50, gain_db=(-6.0, 3.0), noise_prob=0.5, snr_db=(10.0, 30.0))
        order = rng.permutation(len(y))
        splits[s] = (fe.batch(audio[order]), y[order])
    check_classes("keywords", LABELS, splits["train"][1])
    info_sources = {}
    for src in dict.fromkeys(train_sources + ([holdout] if holdout else [])):
        sps = speakers(seed, src)
        info_sources[src] = {"family": get_source(src).family, "voices": sorted({sp.voice for sp in sps}),
                             "speakers": len(sps), "role": "held out (test only)" if src == holdout else "train/val/test"}
    return Dataset("keywords", "audio-classification", list(LABELS), splits, fe.preprocessing(),
                   {"source": " + ".join(f"{s} ({get_source(s).family})" for s in info_sources),
                    "sources": info_sources, "missing_sources": lacking, "holdout": holdout, "voices": voices,
                    "reps": reps, "augment": cfg.to_dict(), "augment_copies": cfg.copies, "seed": seed,
                    **({"extra_unknown": len(extra_unknown)} if extra_unknown is not None else {})})
