"""The Dataset every loader returns: labelled splits as NumPy arrays plus what a model needs to know."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, allowed

TASKS = ("image-classification", "audio-classification", "text-classification")
SPLITS = ("train", "val", "test")


@dataclass
class Dataset:
    """Labelled splits ``{"train"|"val"|"test": (x, y)}``; ``x`` is the model input, ``y`` int class ids.

    ``preprocessing`` is the ``ArtifactMeta.preprocessing`` entry that turns raw data (pixels,
    audio, text) into ``x`` — for audio the edgekit.features front-end parameters.
    """

    name: str
    task: str
    labels: list
    splits: dict
    preprocessing: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ConfigError(allowed(self.task, TASKS, "task"))
        for split, (x, y) in self.splits.items():
            if len(x) != len(y):
                raise DataError(f"Dataset {self.name!r} split {split!r}: {len(x)} inputs but {len(y)} labels")

    def split(self, name: str = "train") -> tuple[np.ndarray, np.ndarray]:
        if name not in self.splits:
            raise ConfigError(allowed(name, list(self.splits), f"split of dataset {self.name!r}"))
        return self.splits[name]

    @property
    def input_shape(self) -> tuple:
        """Shape of one example (no batch dimension)."""
        x = next(iter(self.splits.values()))[0]
        return tuple(int(d) for d in x.shape[1:])

    @property
    def input_dtype(self) -> str:
        return str(next(iter(self.splits.values()))[0].dtype)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def counts(self) -> dict:
        """Examples per class per split."""
        return {s: np.bincount(y, minlength=self.num_classes).tolist() for s, (_, y) in self.splits.items()}

    def subset(self, limit: int | None = None, seed: int = 0) -> "Dataset":
        """At most ``limit`` examples per split (random, stratification not guaranteed): for quick runs."""
        if limit is None:
            return self
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"limit must be an integer >= 1; received {limit!r}")
        rng = np.random.default_rng(seed)
        splits = {}
        for s, (x, y) in self.splits.items():
            idx = np.sort(rng.permutation(len(y))[:limit])
            splits[s] = (x[idx], y[idx])
        return Dataset(self.name, self.task, self.labels, splits, self.preprocessing, dict(self.info, limit=limit))

    def summary(self) -> dict:
        return {"name": self.name, "task": self.task, "classes": self.num_classes,
                "input_shape": list(self.input_shape), "input_dtype": self.input_dtype,
                **{s: int(len(y)) for s, (_, y) in self.splits.items()}}


def check_classes(name: str, labels: list, y: np.ndarray, where: str | os.PathLike = "") -> None:
    """A class with no examples is a user error, not a silent 0% row."""
    counts = np.bincount(np.asarray(y, np.int64), minlength=len(labels))
    empty = [labels[i] for i, c in enumerate(counts) if c == 0]
    if empty:
        place = f" in {where}" if where else ""
        raise DataError(f"Dataset {name!r}{place}: class(es) with no samples: {', '.join(map(str, empty))}")


def stratified_split(y: np.ndarray, fractions: dict, seed: int) -> dict:
    """Indices per split, each class divided by ``fractions`` (e.g. {"train": .7, "val": .1, "test": .2})."""
    rng = np.random.default_rng(seed)
    out = {k: [] for k in fractions}
    names = list(fractions)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        cuts = np.round(np.cumsum([fractions[k] for k in names]) * len(idx)).astype(int)
        start = 0
        for k, end in zip(names, cuts):
            out[k].append(idx[start:end])
            start = end
    return {k: np.sort(np.concatenate(v)) for k, v in out.items()}


def from_arrays(name: str, task: str, labels: list, x: np.ndarray, y: np.ndarray, *, seed: int = 0,
                val: float = 0.1, test: float = 0.2, preprocessing: dict | None = None,
                info: dict | None = None, test_arrays: tuple | None = None) -> Dataset:
    """Build a Dataset from one labelled array, split stratified; ``test_arrays`` keeps an official test set."""
    y = np.asarray(y, np.int64)
    check_classes(name, labels, y)
    if test_arrays is not None:
        parts = stratified_split(y, {"train": 1 - val, "val": val}, seed)
        splits = {"train": (x[parts["train"]], y[parts["train"]]), "val": (x[parts["val"]], y[parts["val"]]),
                  "test": (test_arrays[0], np.asarray(test_arrays[1], np.int64))}
    else:
        parts = stratified_split(y, {"train": 1 - val - test, "val": val, "test": test}, seed)
        splits = {k: (x[v], y[v]) for k, v in parts.items()}
    return Dataset(name, task, list(labels), splits, preprocessing or {}, info or {})


def cache_dir(sub: str = "") -> Path:
    """``$EDGEKIT_CACHE`` or ``~/.cache/edgekit`` (created)."""
    root = Path(os.environ.get("EDGEKIT_CACHE") or Path.home() / ".cache" / "edgekit")
    p = root / sub if sub else root
    p.mkdir(parents=True, exist_ok=True)
    return p


def image_preprocessing(h: int, w: int, c: int, scale: float, mean: float = 0.0) -> dict:
    """Model input = (pixel - mean) * scale, NHWC."""
    return {"type": "image", "size": [h, w], "channels": c, "mean": mean, "scale": scale, "layout": "NHWC"}
