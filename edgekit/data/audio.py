"""WAV reading and resampling for audio datasets: the device-side functions (edgekit/features/wav.py)."""

from __future__ import annotations

from ..features.wav import fit_length, lowpass_taps, read_wav, resample, write_wav

__all__ = ["fit_length", "lowpass_taps", "read_wav", "resample", "write_wav"]
