"""Audio augmentation primitives: what the generated background noises are, and that shaping them a chunk
at a time gives exactly what shaping each clip alone gives (the keyword data must not change with speed-ups)."""

import numpy as np
import pytest

from edgekit.data.augment import background_noise


@pytest.mark.parametrize("chunk", [7, 256])
def test_chunked_noise_is_bit_for_bit_the_clip_by_clip_noise(chunk):
    one = background_noise(40, 1600, np.random.default_rng(3), chunk=1)
    many = background_noise(40, 1600, np.random.default_rng(3), chunk=chunk)
    assert many.dtype == np.float32 and many.shape == (40, 1600)
    np.testing.assert_array_equal(one, many)


def test_noises_are_unit_rms_and_of_several_colours():
    x = background_noise(400, 16000, np.random.default_rng(0)).astype(np.float64)
    np.testing.assert_allclose(np.sqrt(np.mean(x ** 2, axis=1)), 1.0, rtol=1e-3)
    # Spectral slope from 100 Hz to 4 kHz: white (flat), pink (-10 dB/decade), brown (-20) and hum (its
    # energy at 50/60 Hz harmonics, far below 4 kHz) must all be present.
    spec = np.abs(np.fft.rfft(x, axis=1)) ** 2
    f = np.fft.rfftfreq(16000, 1 / 16000)
    low = spec[:, (f > 80) & (f < 400)].mean(1)
    high = spec[:, (f > 3000) & (f < 5000)].mean(1)
    ratio_db = 10 * np.log10(low / high)
    assert (ratio_db < 3).sum() > 50          # white
    assert ((ratio_db > 6) & (ratio_db < 18)).sum() > 50   # pink
    assert (ratio_db > 25).sum() > 50         # brown and hum
