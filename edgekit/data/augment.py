"""Audio augmentation for keyword spotting, shared by the built-in ``keywords`` and Speech Commands folders.

Applied to raw 1-s clips before the front-end (NumPy only, deterministic by the ``rng`` given):
speed perturbation (tempo and pitch together, as in Ko et al. 2015), time shift, gain, and
background noise at a random SNR — from the folder's ``_background_noise_`` recordings when there
are any, mixed with generated noises (white, pink, brown, mains hum) so a model never learns one
room. SpecAugment-style masks work on features and live in the training input pipeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError
from ..features.wav import fit_length

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AudioAugment:
    """What one augmented copy of a training clip may get."""

    # Augmented versions of each training clip (0: none). 3, measured on a 20-word, 750-clip folder of unseen
    # synthesizer voices (ds_cnn_s, default budget): 3 copies 0.91 test top-1, 6 copies 0.83 (the fixed step
    # budget then buys half the epochs); the 4,000-clip built-in set keeps its training time.
    copies: int = 3
    shift_ms: float = 100.0         # time shift, +- this many ms
    gain_db: tuple = (-10.0, 6.0)
    noise_prob: float = 0.8         # chance a clip gets background noise
    snr_db: tuple = (5.0, 30.0)     # signal-to-noise ratio of the mixed noise
    speed: tuple = (0.88, 1.12)     # resampling factor range; (1, 1) turns it off
    keep_clean: bool = False        # also keep the un-augmented clip in the training split

    def __post_init__(self):
        def pair(name):
            v = getattr(self, name)
            if not (isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(a, (int, float)) for a in v)
                    and v[0] <= v[1]):
                raise ConfigError(f"Audio augmentation {name} must be two numbers low,high; received {v!r}")
        for name in ("gain_db", "snr_db", "speed"):
            pair(name)
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or not 0 <= self.copies <= 20:
            raise ConfigError(f"Audio augmentation copies must be 0..20; received {self.copies}")
        if not 0 <= self.noise_prob <= 1:
            raise ConfigError(f"Audio augmentation noise_prob must be in [0, 1]; received {self.noise_prob}")
        if self.shift_ms < 0 or self.shift_ms > 500:
            raise ConfigError(f"Audio augmentation shift_ms must be 0..500; received {self.shift_ms}")
        if not 0.5 <= self.speed[0] <= self.speed[1] <= 2.0:
            raise ConfigError(f"Audio augmentation speed must lie in [0.5, 2.0]; received {self.speed}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def background_noise(n: int, length: int, rng, sample_rate: int = SAMPLE_RATE, chunk: int = 256) -> np.ndarray:
    """Unit-RMS noises of several colours plus mains hum: stand-ins for ``_background_noise_``.

    Draws from ``rng`` clip by clip (a kind, then its samples) and shapes the colours a chunk at a time,
    so the result is bit for bit that of shaping each clip alone, several times faster."""
    out = np.empty((n, length), np.float32)
    freqs = np.fft.rfftfreq(length, 1 / sample_rate)
    t = np.arange(length) / sample_rate
    harmonics = np.arange(1, 6)
    for c0 in range(0, n, chunk):
        rows = range(c0, min(n, c0 + chunk))
        raw = np.empty((len(rows), length))
        kinds = np.empty(len(rows), np.int64)
        for j, i in enumerate(rows):
            kinds[j] = kind = rng.integers(4)
            if kind == 3:  # hum: harmonics of 50/60 Hz with a little hiss
                f0 = rng.choice([50.0, 60.0])
                phase = rng.uniform(0, 6.28, size=len(harmonics))
                w = np.asarray([2 * np.pi * f0 * k for k in harmonics])
                tones = np.sin(w[:, None] * t + phase[:, None]) / harmonics[:, None]
                raw[j] = tones.sum(axis=0) + 0.2 * rng.standard_normal(length)
            else:  # white, pink (1/f), brown (1/f^2): shaped below
                raw[j] = rng.standard_normal(length)
        for kind in (0, 1, 2):
            sel = np.flatnonzero(kinds == kind)
            if sel.size:
                spec = np.fft.rfft(raw[sel], axis=1)
                spec[:, 1:] /= freqs[1:] ** (kind / 2.0)
                spec[:, 0] = 0
                raw[sel] = np.fft.irfft(spec, n=length, axis=1)
        out[c0:c0 + len(rows)] = raw / (np.sqrt(np.mean(raw ** 2, axis=1, keepdims=True)) + 1e-9)
    return out


def _recorded_noise(noises, n: int, length: int, rng) -> np.ndarray | None:
    """``n`` unit-RMS cuts from background recordings at least ``length`` long, or None."""
    long = [a for a in noises or () if len(a) >= length and np.any(a)]
    if not long:
        return None
    out = np.empty((n, length), np.float32)
    for i in range(n):
        a = long[rng.integers(len(long))]
        s = rng.integers(0, len(a) - length + 1)
        x = a[s:s + length]
        out[i] = x / (np.sqrt(np.mean(x ** 2)) + 1e-9)
    return out


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (linear interpolation; length changes by 1/factor)."""
    if abs(factor - 1.0) < 1e-6 or x.size < 2:
        return x
    n = max(2, int(round(len(x) / factor)))
    return np.interp(np.arange(n) * factor, np.arange(len(x)), x).astype(np.float32)


def augment(clean: np.ndarray, y: np.ndarray, rng, *, shift_ms: float = 100.0, gain_db=(-10.0, 6.0),
            noise_prob: float = 0.8, snr_db=(5.0, 30.0), speed=(1.0, 1.0), noises=None, silence_label: int = 0,
            sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """One augmented copy of ``clean`` (float clips [n, length]): speed, shift, gain and noise at a random
    SNR. Clips of class ``silence_label`` get noise only, from near silence to audible noise."""
    n, length = clean.shape
    shift = int(shift_ms * sample_rate / 1000)
    out = np.empty_like(clean, dtype=np.float32)
    factors = rng.uniform(speed[0], speed[1], size=n)
    for i in range(n):
        x = fit_length(change_speed(clean[i], factors[i]), length) if speed[1] - speed[0] > 0 else clean[i]
        out[i] = np.roll(x, rng.integers(-shift, shift + 1)) if shift else x
    out *= (10 ** (rng.uniform(*gain_db, size=n) / 20)).astype(np.float32)[:, None]
    noise = background_noise(n, length, rng, sample_rate)
    recorded = _recorded_noise(noises, n, length, rng)
    if recorded is not None:  # half recorded, half generated
        pick = rng.random(n) < 0.5
        noise[pick] = recorded[pick]
    sig_rms = np.sqrt(np.mean(out ** 2, axis=1)) + 1e-9
    snr = rng.uniform(*snr_db, size=n)
    level = sig_rms / (10 ** (snr / 20)) * (rng.random(n) < noise_prob)
    silent = np.asarray(y) == silence_label
    level[silent] = 10 ** rng.uniform(-4, -1.3, size=int(silent.sum()))
    return np.clip(out + noise * level[:, None].astype(np.float32), -1, 1)


def augmented_copies(clean: np.ndarray, y: np.ndarray, cfg: AudioAugment, rng, *, noises=None,
                     silence_label: int | None = 0, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """``cfg.copies`` augmented copies of every clip (plus the clean clips if ``keep_clean`` or no copies)."""
    parts, ys = [], []
    if cfg.keep_clean or cfg.copies == 0:
        parts.append(clean.astype(np.float32))
        ys.append(y)
    for _ in range(cfg.copies):
        parts.append(augment(clean, y, rng, shift_ms=cfg.shift_ms, gain_db=cfg.gain_db, noise_prob=cfg.noise_prob,
                             snr_db=cfg.snr_db, speed=cfg.speed, noises=noises,
                             silence_label=-1 if silence_label is None else silence_label, sample_rate=sample_rate))
        ys.append(y)
    return np.concatenate(parts), np.concatenate(ys)


def parse_augment(value) -> AudioAugment:
    """An :class:`AudioAugment` from True/False/None, a dict of its fields, or an existing one."""
    if isinstance(value, AudioAugment):
        return value
    if value is None or value is True:
        return AudioAugment()
    if value is False:
        return AudioAugment(copies=0)
    if isinstance(value, dict):
        known = set(AudioAugment.__dataclass_fields__)
        bad = sorted(set(value) - known)
        if bad:
            raise ConfigError(f"Unknown audio augmentation option(s) {', '.join(bad)}; allowed: {', '.join(sorted(known))}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
        return AudioAugment(**kw)
    raise ConfigError(f"Audio augmentation must be true, false or a mapping of options; received {value!r}")
