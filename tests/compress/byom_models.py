"""Models edgekit did not train, made offline for the bring-your-own-model tests and benchmark: crops of
scikit-learn's two sample photos, a small CNN trained on them that takes NCHW input normalized with
ImageNet's mean/std (as a PyTorch export does), saved as a plain ONNX with no edgekit metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ["china-left", "china-right", "flower-left", "flower-right"]
# A block is (channels as a multiple of the stem width, stride): depthwise 3x3 then pointwise 1x1.
SMALL = ((2, 2), (2, 1), (4, 2))
# MobileNet-v1-like, about 1.1M parameters at width 32.
MOBILENET = ((2, 1), (4, 2), (4, 1), (8, 2), (8, 1), (16, 2), (16, 1), (16, 1), (32, 2), (32, 1))


def grid_classes(rows: int = 1, cols: int = 2) -> list[str]:
    """One class per region of a photo: which photo, which row and column of a rows x cols grid."""
    if (rows, cols) == (1, 2):
        return list(CLASSES)
    return [f"{p}-r{r}c{c}" for p in ("china", "flower") for r in range(rows) for c in range(cols)]
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


def sample_crops(n: int, size: int, seed: int = 0, grid: tuple = (1, 2)) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random square crops (uint8 [n, size, size, 3]) and their class: which photo, which grid cell
    the crop's centre is in (``grid`` rows x columns; the default is the left/right half)."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # china.jpg, flower.jpg: 427x640x3
    rows, cols = grid
    k_all = 2 * rows * cols
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(n):
        k = i % k_all
        img = photos[k // (rows * cols)]
        r, c = divmod(k % (rows * cols), cols)
        h, w = img.shape[:2]
        s = int(rng.integers(max(48, min(h // rows, w // cols) // 2), min(h // rows, w // cols, 200) + 1))
        cy = int(rng.integers(r * h // rows, (r + 1) * h // rows))
        cx = int(rng.integers(c * w // cols, (c + 1) * w // cols))
        top = int(np.clip(cy - s // 2, 0, h - s))
        left = int(np.clip(cx - s // 2, 0, w - s))
        crop = Image.fromarray(img[top:top + s, left:left + s]).resize((size, size), Image.BILINEAR)
        xs.append(np.asarray(crop, np.uint8))
        ys.append(k)
    return np.stack(xs), np.asarray(ys, np.int64)


def write_folder(root: Path, x: np.ndarray, y: np.ndarray | None = None, classes=CLASSES) -> Path:
    """JPEG files: in class subfolders when ``y`` is given, else flat (unlabelled)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(x):
        d = root / classes[y[i]] if y is not None else root
        d.mkdir(exist_ok=True)
        Image.fromarray(a).save(d / f"img{i:04d}.jpg", quality=95)
    return root


def train_nchw_cnn(size: int = 32, n: int = 400, epochs: int = 8, width: int = 16, seed: int = 0,
                   blocks=SMALL, grid: tuple = (1, 2)):
    """A small CNN over NCHW ImageNet-normalized input, trained on photo crops (a few seconds at 32x32)."""
    import keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((3, size, size), name="input")
    x = L.Permute((2, 3, 1))(inp)  # the graph takes NCHW, as a PyTorch export does
    x = L.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(x)
    x = L.BatchNormalization(momentum=0.9)(x)
    x = L.ReLU(6.0)(x)
    for mult, stride in blocks:
        filters = width * mult
        x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = L.BatchNormalization(momentum=0.9)(x)
        x = L.ReLU(6.0)(x)
        x = L.Conv2D(filters, 1, use_bias=False)(x)
        x = L.BatchNormalization(momentum=0.9)(x)
        x = L.ReLU(6.0)(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(2 * grid[0] * grid[1], name="logits")(x)  # logits, as torchvision classifiers give
    model = keras.Model(inp, out)
    px, py = sample_crops(n, size, seed, grid)
    xn = ((px.astype(np.float32) - MEAN) / STD).transpose(0, 3, 1, 2)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(xn, py, epochs=epochs, batch_size=32, verbose=0)
    return model


def export_foreign_onnx(model, out: Path) -> Path:
    """The model as a plain .onnx (through edgekit's verified export), with edgekit's metadata removed."""
    import shutil
    import tempfile

    import onnx

    from edgekit.export import export_model

    tmp = Path(tempfile.mkdtemp(prefix="byom-"))
    try:
        res = export_model(model, ["onnx"], tmp, name="m")
        m = onnx.load(str(res.artifacts["onnx"]))
        del m.metadata_props[:]
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(m, str(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
