"""The built-in detection set ``shapes``: objects pasted on real photographs, generated offline.

Four object classes that differ in shape and texture (a striped disc, a checkered square turned at any
angle, a noisy triangle, a dotted cross), 0-10 of them an image, 5-60 % of the frame, overlapping
(an object is at most half hidden), among distractors that are not objects (outline rings, bare
polygons, lines, blurred blobs), on crops of the photographs scikit-learn ships
(``load_sample_images``), with colour jitter and blur. Written once as a YOLO folder under
``$EDGEKIT_CACHE/detection/<name>`` (deterministic for a seed; built under a temporary name, then
renamed), then read by the YOLO loader like any user folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

CLASSES = ["disc", "square", "triangle", "cross"]
BUILTIN = {"shapes": {"n_train": 1600, "n_val": 200, "n_test": 400, "size": 192, "seed": 0}}
VERSION = 1


def _backgrounds():
    from sklearn.datasets import load_sample_images

    return [np.asarray(im, np.uint8) for im in load_sample_images().images]


def _background(rng, photos, size):
    import cv2

    ph = photos[rng.integers(len(photos))]
    h, w = ph.shape[:2]
    side = int(rng.uniform(0.25, 1.0) * min(h, w))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    img = cv2.resize(ph[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = img * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30, 3)
    return np.clip(img, 0, 255)


def _colour(rng):
    return rng.uniform(0, 255, 3)


def _mask(kind, rng, s):
    """A uint8 mask of side ``s`` for an object class (or a distractor) and the texture painted inside."""
    import cv2

    m = np.zeros((s, s), np.uint8)
    c = (s - 1) / 2
    if kind == "disc":
        cv2.circle(m, (int(c), int(c)), int(s / 2) - 1, 1, -1, cv2.LINE_AA)
    elif kind == "square":
        ang = rng.uniform(0, 90)
        side = s / (abs(np.cos(np.radians(ang))) + abs(np.sin(np.radians(ang))))
        pts = cv2.boxPoints(((c, c), (side, side), ang)).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
    elif kind == "triangle":
        pts = np.array([[rng.uniform(0, s * 0.3), s - 1], [s - 1 - rng.uniform(0, s * 0.3), s - 1],
                        [rng.uniform(s * 0.2, s * 0.8), 0]], np.int32)
        if rng.random() < 0.5:
            pts[:, 1] = s - 1 - pts[:, 1]
        cv2.fillPoly(m, [pts], 1)
    elif kind == "cross":
        t = max(2, int(s * rng.uniform(0.28, 0.4)))
        a = (s - t) // 2
        m[a:a + t, :] = 1
        m[:, a:a + t] = 1
    elif kind == "ring":  # distractor: an outline, not a disc
        cv2.circle(m, (int(c), int(c)), int(s / 2) - 2, 1, max(1, s // 12), cv2.LINE_AA)
    else:  # "blob": an irregular polygon in a flat colour
        n = rng.integers(5, 9)
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(0.25, 0.5, n) * s
        pts = np.stack([c + r * np.cos(ang), c + r * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
    return m


def _texture(kind, rng, s):
    a, b = _colour(rng), _colour(rng)
    while np.abs(a - b).sum() < 150:
        b = _colour(rng)
    yy, xx = np.mgrid[0:s, 0:s]
    if kind == "disc":  # stripes
        period = max(3, s / rng.uniform(3, 6))
        ang = rng.uniform(0, np.pi)
        sel = (np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / period) > 0)
    elif kind == "square":  # checkerboard
        cell = max(2, int(s / rng.uniform(3, 6)))
        sel = ((xx // cell + yy // cell) % 2) == 0
    elif kind == "cross":  # dots
        cell = max(3, int(s / rng.uniform(4, 7)))
        sel = ((xx % cell) - cell / 2) ** 2 + ((yy % cell) - cell / 2) ** 2 < (cell / 3.2) ** 2
    else:  # triangle and distractors: flat colour with grain
        return a + rng.normal(0, 25 if kind == "triangle" else 6, (s, s, 1))
    return np.where(sel[..., None], a, b)


def make_image(rng, photos, size: int):
    """One image (uint8 RGB) and its labels ``[(class, x0, y0, x1, y1)]`` in pixels."""
    import cv2

    img = _background(rng, photos, size)
    n_obj = int(rng.integers(0, 11))
    n_dis = int(rng.integers(0, 4))
    kinds = [("d", k) for k in rng.choice(["ring", "blob"], n_dis)] + [("o", CLASSES[i]) for i in rng.integers(0, 4, n_obj)]
    order = rng.permutation(len(kinds))
    masks = []  # (class or None, full-size visible mask, box)
    for idx in order:
        what, kind = kinds[idx]
        crowd = max(1, n_obj)
        hi = 0.6 if crowd <= 2 else (0.4 if crowd <= 5 else 0.28)
        for _ in range(12):  # placements that would hide more than half of an object are retried
            s = int(round(size * np.exp(rng.uniform(np.log(0.05), np.log(hi)))))
            s = max(8, min(s, size))
            x, y = int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - s + 1))
            m = _mask(kind, rng, s).astype(bool)
            full = np.zeros((size, size), bool)
            full[y:y + s, x:x + s] = m
            ok = all((v & ~full).sum() >= 0.5 * v0 for c, v, _, v0 in masks if c is not None)
            if ok:
                break
        else:
            continue
        tex = _texture(kind, rng, s)
        region = img[y:y + s, x:x + s]
        region[m] = tex[m]
        for i, (c, v, b, v0) in enumerate(masks):
            masks[i] = (c, v & ~full, b, v0)
        masks.append((kind if what == "o" else None, full, None, int(full.sum())))
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    for _ in range(int(rng.integers(0, 3))):  # lines across everything
        p = rng.integers(0, size, 4)
        cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), tuple(float(v) for v in _colour(rng)),
                 int(rng.integers(1, 4)), cv2.LINE_AA)
    labels = []
    for c, v, _, _ in masks:
        if c is None or not v.any():
            continue
        ys, xs = np.nonzero(v)
        labels.append((CLASSES.index(c), int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return img, labels


def build_shapes(root: Path, n_train: int, n_val: int, n_test: int, size: int, seed: int) -> Path:
    """Write the YOLO folder (images/<split>, labels/<split>, data.yaml) at ``root``."""
    import cv2
    import yaml

    from ..fsutil import atomic_path

    photos = _backgrounds()
    with atomic_path(root, is_dir=True) as tmp:
        for k, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            rng = np.random.default_rng([seed, k])
            for i in range(n):
                img, labels = make_image(rng, photos, size)
                cv2.imwrite(str(tmp / "images" / split / f"{i:05d}.png"), img[..., ::-1])
                if labels:  # an image without objects has no label file: a background image
                    (tmp / "labels" / split / f"{i:05d}.txt").write_text("".join(
                        f"{c} {(x0 + x1) / 2 / size:.6f} {(y0 + y1) / 2 / size:.6f} {(x1 - x0) / size:.6f} "
                        f"{(y1 - y0) / size:.6f}\n" for c, x0, y0, x1, y1 in labels))
        (tmp / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val",
                                                       "test": "images/test", "names": list(CLASSES)}))
    return root


def shapes_folder(n_train: int = 1600, n_val: int = 200, n_test: int = 400, size: int = 192, seed: int = 0) -> Path:
    """The built-in set's YOLO folder (generated into the cache on first use); ``detection`` loads it."""
    from .base import cache_dir

    name = f"shapes-v{VERSION}-{n_train}-{n_val}-{n_test}-{size}-s{seed}"
    root = cache_dir("detection") / name
    if not (root / "data.yaml").exists():
        if root.exists():
            shutil.rmtree(root)
        build_shapes(root, n_train, n_val, n_test, size, seed)
    return root
