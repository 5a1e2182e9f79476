"""Small local data in the formats the loaders read. Nothing here touches the network."""

import gzip
import pickle

import numpy as np
import pytest

from edgekit.data.audio import write_wav


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "shapes"
    for ci, name in enumerate(["circle", "square", "triangle"]):
        (root / name).mkdir(parents=True)
        for i in range(10):
            a = (rng.random((12, 12)) * 60 + ci * 90).astype(np.uint8)
            Image.fromarray(a, "L").save(root / name / f"{i}.png")
    return root


def tone(freq, sr=16000, seconds=1.0, amp=0.3):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def speech_folder(tmp_path):
    """Speech Commands layout: yes/no/cat/dog, background noise, official split lists, one odd WAV."""
    root = tmp_path / "sc"
    words = {"yes": 300, "no": 500, "cat": 700, "dog": 900}
    val, test = [], []
    for w, f in words.items():
        (root / w).mkdir(parents=True)
        for i in range(6):
            name = f"spk{i}_nohash_0.wav"
            write_wav(root / w / name, tone(f + 10 * i))
            if i == 4:
                val.append(f"{w}/{name}")
            if i == 5:
                test.append(f"{w}/{name}")
    # an 8 kHz stereo recording: resampled and mixed down by default
    stereo = np.repeat(tone(300, sr=8000), 2)
    write_wav(root / "yes" / "odd_nohash_0.wav", stereo, sample_rate=8000, channels=2)
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "white.wav", np.random.default_rng(0).uniform(-0.1, 0.1, 48000))
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    return root


@pytest.fixture
def text_csv(tmp_path):
    p = tmp_path / "reviews.csv"
    rows = ["text,label"]
    good = ["great product works well", "love it great value", "excellent quality love", "works great happy"]
    bad = ["terrible broke fast", "awful waste of money", "bad quality broke", "poor terrible support"]
    for i in range(40):
        rows.append(f"\"{good[i % 4]} {i}\",pos")
        rows.append(f"\"{bad[i % 4]} {i}\",neg")
    p.write_text("\n".join(rows) + "\n")
    return p


def write_idx(path, arr):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[arr.dtype], arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


@pytest.fixture
def fashion_folder(tmp_path):
    root = tmp_path / "fashion"
    root.mkdir()
    rng = np.random.default_rng(0)
    ytr = np.arange(60, dtype=np.uint8) % 10
    yte = np.arange(20, dtype=np.uint8) % 10
    write_idx(root / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (60, 28, 28), dtype=np.uint8))
    write_idx(root / "train-labels-idx1-ubyte.gz", ytr)
    write_idx(root / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28), dtype=np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte.gz", yte)
    return root


@pytest.fixture
def cifar_folder(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [("data_batch_1", 30), ("data_batch_2", 30), ("test_batch", 20)]:
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(np.arange(n) % 10)}
        with open(root / name, "wb") as f:
            pickle.dump(d, f)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names}, f)
    return root
