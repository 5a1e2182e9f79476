"""WAV reading and resampling for audio datasets (NumPy + the standard library)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from ..errors import DataError


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited polyphase resampling (scipy), float32 out."""
    if orig_sr == target_sr or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(orig_sr), int(target_sr))
    return resample_poly(audio, target_sr // g, orig_sr // g).astype(np.float32)


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
    from ..features import decode_pcm

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
