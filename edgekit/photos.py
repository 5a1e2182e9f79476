"""Natural photo crops that ship offline (scikit-learn's two sample photos), NumPy only.

    x = natural_crops(64, 224, seed=0)      # (64, 224, 224, 3) float32 RGB in [0, 1]

Each crop is a square box of 25-100 % of the photo's short side at a seeded random place, flipped
left-right half the time, resized with bilinear interpolation (half-pixel centres, no antialias):
the same recipe in any environment with NumPy, scikit-learn and Pillow, so reference outputs
computed once elsewhere (PyTorch) can be checked here. Different seeds give different crops: use
one seed to calibrate and another to evaluate.
"""

from __future__ import annotations

import hashlib

import numpy as np


def sample_photos() -> list[np.ndarray]:
    """scikit-learn's sample photos (china.jpg, flower.jpg), uint8 RGB."""
    from sklearn.datasets import load_sample_images

    return [np.asarray(im, np.uint8) for im in load_sample_images().images]


def photos_digest(photos=None) -> str:
    """SHA-256 of the decoded photos: a JPEG decoder that decodes differently shows up here."""
    h = hashlib.sha256()
    for im in photos if photos is not None else sample_photos():
        h.update(np.ascontiguousarray(im).tobytes())
    return h.hexdigest()


def _axis_weights(n_in: int, n_out: int, start: float, length: float) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation matrix for output pixels over [start, start + length)."""
    centres = start + (np.arange(n_out) + 0.5) * (length / n_out) - 0.5
    centres = np.clip(centres, 0, n_in - 1)
    lo = np.floor(centres).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = centres - lo
    w = np.zeros((n_out, n_in), np.float64)
    w[np.arange(n_out), lo] += 1 - frac
    w[np.arange(n_out), hi] += frac
    return w


def crop_resize(im: np.ndarray, top: float, left: float, side: float, size: int, flip: bool) -> np.ndarray:
    """A ``side``-pixel square at (top, left) of ``im`` resized to ``size`` x ``size``, in [0, 1]."""
    wy = _axis_weights(im.shape[0], size, top, side)
    wx = _axis_weights(im.shape[1], size, left, side)
    rows = np.tensordot(wy, im.astype(np.float64) / 255.0, axes=(1, 0))  # (size, w, c)
    out = np.tensordot(wx, rows, axes=(1, 1)).transpose(1, 0, 2)  # (size, size, c)
    if flip:
        out = out[:, ::-1]
    return np.ascontiguousarray(out, dtype=np.float32)


def crop_boxes(n: int, seed: int, photos) -> list[tuple[int, float, float, float, bool]]:
    """(photo index, top, left, side, flip) for ``n`` crops, alternating photos."""
    rng = np.random.default_rng(seed)
    boxes = []
    for i in range(n):
        p = i % len(photos)
        h, w = photos[p].shape[:2]
        side = min(h, w) * rng.uniform(0.25, 1.0)
        boxes.append((p, float(rng.uniform(0, h - side)), float(rng.uniform(0, w - side)), float(side),
                      bool(rng.random() < 0.5)))
    return boxes


def natural_crops(n: int, size: int = 224, seed: int = 0, photos=None) -> np.ndarray:
    """``n`` crops (n, size, size, 3) float32 in [0, 1] (see the module docstring)."""
    photos = photos if photos is not None else sample_photos()
    return np.stack([crop_resize(photos[p], t, l, s, size, f) for p, t, l, s, f in crop_boxes(n, seed, photos)])
