"""One small trained run (ds_cnn_s on digits), exported once to every format, shared by the tests."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits_run(digits_ds_cnn):
    """The session's one trained ds_cnn_s on digits (tests/conftest.py), shared with the compress tests."""
    return digits_ds_cnn


@pytest.fixture(scope="session")
def digits_exports(digits_run, tmp_path_factory):
    from edgekit.export import export_model

    res = export_model(digits_run.model_path, ("tflite", "onnx", "openvino"), tmp_path_factory.mktemp("export"))
    return res.artifacts


# --- data unlike the built-ins: drawn shapes and tone "words", written as folders a user would bring --
def draw_shapes(root, per_class: int, seed: int = 0, size: int = 32):
    """RGB images of a circle, a square, a triangle or a cross, at random places, sizes and colours on
    noisy backgrounds: nothing like the built-in digits."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    classes = ["circle", "square", "triangle", "cross"]
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            bg = tuple(int(v) for v in rng.integers(0, 120, 3))
            im = Image.new("RGB", (size, size), bg)
            d = ImageDraw.Draw(im)
            r = rng.uniform(0.22, 0.4) * size
            cx, cy = rng.uniform(r, size - r, 2)
            fg = tuple(int(v) for v in rng.integers(130, 256, 3))
            if c == "circle":
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
            elif c == "square":
                d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
            elif c == "triangle":
                d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
            else:
                w = r / 3
                d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fg)
                d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fg)
            a = np.asarray(im, np.float32) + rng.normal(0, 12, (size, size, 3))
            Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(root / c / f"{i:03d}.png")
    return classes


def tone_words(root, per_class: int, seed: int = 0, sr: int = 16000):
    """A Speech Commands layout whose "words" are tone patterns (rising, falling, two-tone, warble) at a
    random pitch, length and place in the clip, plus ``_background_noise_``: no speech at all."""
    from edgekit.data.audio import write_wav

    rng = np.random.default_rng(seed)
    words = ["rise", "fall", "twotone", "warble"]
    for w in words:
        (root / w).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            f0 = rng.uniform(300, 700)
            dur = rng.uniform(0.3, 0.55)
            t = np.arange(int(dur * sr)) / sr
            if w == "rise":
                f = f0 * (1 + 1.5 * t / dur)
            elif w == "fall":
                f = f0 * (2.5 - 1.5 * t / dur)
            elif w == "twotone":
                f = np.where(t < dur / 2, f0, f0 * 2)
            else:
                f = f0 * (1 + 0.3 * np.sin(2 * np.pi * 8 * t))
            x = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.hanning(len(t))
            clip = np.zeros(sr, np.float32)
            s = rng.integers(0, sr - len(x))
            clip[s:s + len(x)] = 0.4 * x
            clip += rng.normal(0, 0.01, sr).astype(np.float32)
            write_wav(root / w / f"s{i % 6}_{i:03d}.wav", clip, sr)
    (root / "_background_noise_").mkdir(exist_ok=True)
    write_wav(root / "_background_noise_" / "hum.wav",
              0.05 * np.sin(2 * np.pi * 60 * np.arange(3 * sr) / sr) + rng.normal(0, 0.02, 3 * sr), sr)
    val = [f"{w}/s1_{i:03d}.wav" for w in words for i in range(per_class) if i % 6 == 1]
    test = [f"{w}/s2_{i:03d}.wav" for w in words for i in range(per_class) if i % 6 == 2]
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    return words


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    draw_shapes(root, 40)
    return root


@pytest.fixture(scope="session")
def tones_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    tone_words(root, 36)
    return root


@pytest.fixture(scope="session")
def gray_shapes(tmp_path_factory):
    from PIL import Image

    src = tmp_path_factory.mktemp("shapes_rgb")
    draw_shapes(src, 16, seed=5)
    dst = tmp_path_factory.mktemp("shapes_gray")
    for p in src.rglob("*.png"):
        (dst / p.parent.name).mkdir(exist_ok=True)
        Image.open(p).convert("L").resize((8, 8)).save(dst / p.parent.name / p.name)
    return dst


@pytest.fixture(scope="session")
def digits_backbone(tmp_path_factory):
    from edgekit.train import train

    return train("mobilenet_v3_small", "digits", epochs=2, out_dir=tmp_path_factory.mktemp("bb") / "r", quiet=True,
                 model_options={"alpha": 0.35, "min_size": 32})
