"""Device-side WAV reading and resampling: NumPy only, measured against scipy where scipy is installed."""

import sys
import subprocess
import wave
from math import gcd

import numpy as np
import pytest

from edgekit.features.wav import read_wav, resample, write_wav

RATES = [(44100, 16000), (48000, 16000), (22050, 16000), (8000, 16000), (16000, 44100)]


def tone(sr, seconds=1.0, freqs=((440, 0.5), (3000, 0.3))):
    t = np.arange(int(sr * seconds)) / sr
    return sum(a * np.sin(2 * np.pi * f * t) for f, a in freqs).astype(np.float32)


@pytest.mark.parametrize("sr_in,sr_out", RATES)
def test_resample_matches_scipy_resample_poly(sr_in, sr_out):
    signal = pytest.importorskip("scipy.signal")
    x = tone(sr_in)
    g = gcd(sr_in, sr_out)
    want = signal.resample_poly(x, sr_out // g, sr_in // g)
    got = resample(x, sr_in, sr_out)
    assert got.dtype == np.float32 and got.shape == want.shape
    # Measured: 2.4e-7 at most (float32 rounding of the same filter): the same resampler, not an approximation.
    assert np.max(np.abs(got - want)) < 1e-6


def test_resample_keeps_the_passband_and_removes_aliases():
    x = tone(44100, freqs=((1000, 0.5), (12000, 0.5)))  # 12 kHz is above 16 kHz's Nyquist: must go
    y = resample(x, 44100, 16000)
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y)))) / (len(y) / 4)
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    at = lambda f: spec[np.argmin(np.abs(freqs - f))]
    assert at(1000) == pytest.approx(0.5, abs=0.01)
    assert at(4000) < 1e-3  # where 12 kHz would fold to without the low-pass


def test_read_wav_converts_a_stereo_44k_recording_to_16k_mono(tmp_path):
    x = tone(44100)
    stereo = np.stack([x, x], axis=1).reshape(-1)
    p = write_wav(tmp_path / "rec.wav", stereo, 44100, channels=2)
    with wave.open(str(p)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 44100)
    y = read_wav(p, 16000)
    assert y.shape == (16000,) and y.dtype == np.float32
    ref = resample(np.round(x * 32767) / 32768, 44100, 16000)
    assert np.max(np.abs(y - ref)) < 2e-4


def test_reading_and_resampling_imports_no_scipy(tmp_path):
    p = write_wav(tmp_path / "a.wav", tone(22050), 22050)
    code = (f"import sys; from edgekit.features.wav import read_wav; x = read_wav({str(p)!r}, 16000); "
            "assert x.shape == (16000,); bad = [m for m in ('scipy', 'tensorflow', 'keras') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-800:]
