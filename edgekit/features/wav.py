"""WAV reading, writing and resampling on the device side: the standard library and NumPy, no scipy.

The demo apps read recordings at any rate and channel count through here; the build-side audio datasets
(``edgekit.data``) use the same functions.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import decode_pcm


def lowpass_taps(up: int, down: int, beta: float = 5.0) -> np.ndarray:
    """The anti-aliasing FIR of a rational resampler: a Kaiser-windowed sinc cut at 1/max(up, down) of
    Nyquist, 20·max(up, down)+1 taps, unit DC gain per output phase (the filter scipy's resample_poly uses)."""
    rate = max(up, down)
    half = 10 * rate
    m = np.arange(2 * half + 1) - half
    h = np.sinc(m / rate) / rate * np.kaiser(2 * half + 1, beta)
    return h / h.sum() * up


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited polyphase resampling in NumPy (no scipy on a device), float32 out.

    Upsample by ``up``, low-pass, keep every ``down``-th sample, computed per output phase so only
    the kept samples are computed (about 20 taps × max(up, down)/up multiply-adds each). Aligned like
    ``scipy.signal.resample_poly`` (zero padding at the ends); tests/features compare the two.
    """
    audio = np.asarray(audio)
    if orig_sr == target_sr or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    if audio.ndim > 1:  # (samples, channels)
        return np.stack([resample(audio[:, c], orig_sr, target_sr) for c in range(audio.shape[1])], axis=1)
    from math import gcd

    g = gcd(int(orig_sr), int(target_sr))
    up, down = int(target_sr) // g, int(orig_sr) // g
    h = lowpass_taps(up, down)
    half = (len(h) - 1) // 2
    x = audio.astype(np.float64, copy=False)
    n_out = -(-len(x) * up // down)
    # Phase p of the filter holds taps p, p+up, p+2up, ...: the ones that meet real (not inserted zero) samples.
    ntaps = -(-len(h) // up)
    phases = np.zeros((up, ntaps))
    hp = np.concatenate([h, np.zeros(ntaps * up - len(h))])
    for p in range(up):
        phases[p] = hp[p::up]
    xp = np.concatenate([np.zeros(ntaps), x, np.zeros(ntaps)])
    out = np.empty(n_out)
    back = np.arange(ntaps)
    for start in range(0, n_out, 8192):  # bounded memory on long recordings
        k = np.arange(start, min(start + 8192, n_out))
        pos = k * down + half  # position in the upsampled, filtered stream (the filter delay removed)
        phase, j0 = pos % up, pos // up
        idx = j0[:, None] - back[None, :] + ntaps
        valid = (idx >= ntaps) & (idx < ntaps + len(x))
        out[k] = np.sum(phases[phase] * np.where(valid, xp[np.clip(idx, 0, len(xp) - 1)], 0.0),
                                        axis=1)
    return out.astype(np.float32)


def read_wav(path: str | Path, sample_rate: int = 16000, *, resample_ok: bool = True) -> np.ndarray:
    """Read a PCM WAV as float32 mono at ``sample_rate``.

    Stereo is averaged to mono and other rates are resampled when ``resample_ok``; otherwise
    a wrong rate or channel count is a DataError naming the file.
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            ch, width, sr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError) as e:
        raise DataError(f"Can't read WAV file {path}: {e}") from None
    if ch > 1 and not resample_ok:
        raise DataError(f"{path}: {ch} channels; expected mono")
    try:
        x = decode_pcm(raw, width, ch)
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None
    if sr != sample_rate:
        if not resample_ok:
            raise DataError(f"{path}: sample rate {sr} Hz; expected {sample_rate} Hz")
        x = resample(x, sr, sample_rate)
    return x.astype(np.float32, copy=False)


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = 16000, channels: int = 1) -> Path:
    """Write float audio in [-1, 1] as 16-bit PCM (interleaved when ``channels`` > 1)."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return Path(path)


def fit_length(audio: np.ndarray, length: int, offset: int | None = None) -> np.ndarray:
    """Pad with zeros or crop to ``length`` samples; centred unless ``offset`` is given."""
    n = audio.shape[0]
    if n >= length:
        start = (n - length) // 2 if offset is None else min(max(offset, 0), n - length)
        return audio[start:start + length]
    out = np.zeros(length, np.float32)
    start = (length - n) // 2 if offset is None else min(max(offset, 0), length - n)
    out[start:start + n] = audio
    return out
