"""Data users bring: image folders, Speech Commands-style audio folders, CSV text."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Dataset, check_classes, image_preprocessing, stratified_split

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".webp", ".tif", ".tiff"}
SPEECH_KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SILENCE, UNKNOWN = "_silence_", "_unknown_"


def _require_dir(root: Path, what: str) -> Path:
    if not root.exists():
        raise DataError(f"{what} folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{what} path {root} is not a folder")
    return root


def _class_dirs(root: Path, what: str, skip=()) -> list[Path]:
    try:
        dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in skip)
    except PermissionError as e:
        raise DataError(f"Can't read {what} folder {root}: {e}") from None
    if not dirs:
        raise DataError(f"{what} folder {root} is empty: expected one subfolder per class")
    return dirs


# --- image folders -----------------------------------------------------------------------------------
def _read_image(path: Path, size, channels):
    try:
        from PIL import Image
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("pillow", "serve", "Reading image folders") from None
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(im, np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"Can't read image {path}: {e}") from None
    return a[..., None] if a.ndim == 2 else a


def _image_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_image_folder(path, size=None, channels=None, seed: int = 0, val: float = 0.1,
                      test: float = 0.2, whole: bool = False) -> Dataset:
    """One subfolder per class of images; or ``train/``, ``val/``, ``test/`` each laid out that way.

    ``size`` (H, W) resizes every image; without it all images must share one size. ``channels``
    is 1 or 3 (default: 1 if every image is grayscale). ``whole``: a folder without split subfolders is
    one "test" split of every image (a held-out set to evaluate on; nothing to train on).
    """
    root = _require_dir(Path(path), "Image")
    split_dirs = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    if "train" in split_dirs:
        parts = {s: {d.name: _image_files(d) for d in _class_dirs(p, "Image")} for s, p in split_dirs.items()}
    else:
        parts = {"all": {d.name: _image_files(d) for d in _class_dirs(root, "Image")}}
    labels = sorted({c for p in parts.values() for c in p})
    for s, classes in parts.items():
        empty = [c for c in labels if not classes.get(c)]
        if empty and s in ("all", "train"):
            raise DataError(f"Image folder {root}: class(es) with no images: {', '.join(empty)} "
                            f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    if isinstance(size, int):
        size = (size, size)
    if channels is None:
        from PIL import Image

        def gray(p):
            try:
                with Image.open(p) as im:
                    return im.mode in ("L", "1", "I;16", "I")
            except (OSError, Image.DecompressionBombError) as e:
                raise DataError(f"Can't read image {p}: {e}") from None
        channels = 1 if all(gray(f) for cl in parts.values() for fs in cl.values() for f in fs) else 3
    arrays = {}
    for s, classes in parts.items():
        xs, ys = [], []
        for ci, c in enumerate(labels):
            for f in classes.get(c, []):
                xs.append(_read_image(f, size, channels))
                ys.append(ci)
        shapes = {a.shape for a in xs}
        if len(shapes) > 1:
            raise DataError(f"Image folder {root}: images have different sizes {sorted(shapes)[:3]}...; pass size=H,W")
        arrays[s] = (np.stack(xs).astype(np.float32) / 255.0, np.asarray(ys, np.int64))
    if "all" in arrays and whole:
        arrays["test"] = arrays.pop("all")
    elif "all" in arrays:
        x, y = arrays.pop("all")
        idx = stratified_split(y, {"train": 1 - val - test, "val": val, "test": test}, seed)
        arrays = {k: (x[v], y[v]) for k, v in idx.items()}
    else:
        whole = False
    if not whole:
        check_classes(root.name, labels, arrays["train"][1], root)
    h, w, c = arrays["test" if whole else "train"][0].shape[1:]
    return Dataset(root.name, "image-classification", labels, arrays, image_preprocessing(h, w, c, 1 / 255.0),
                   {"source": str(root), **({"whole": True} if whole else {})})


# --- Speech Commands layout --------------------------------------------------------------------------
def _read_list(p: Path) -> set[str]:
    if not p.exists():
        return set()
    try:
        return {line.strip() for line in p.read_text().splitlines() if line.strip()}
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"Can't read {p}: {e}") from None


def silence_clips(noises: list[np.ndarray], n: int, length: int, rng, max_gain: float = 1.0) -> np.ndarray:
    """``n`` clips cut at random from background recordings (or near-zero if there are none)."""
    out = np.zeros((n, length), np.float32)
    long = [a for a in noises if len(a) >= length]
    for i in range(n):
        if long:
            a = long[rng.integers(len(long))]
            s = rng.integers(0, len(a) - length + 1)
            out[i] = a[s:s + length] * rng.uniform(0, max_gain)
        else:
            out[i] = rng.standard_normal(length).astype(np.float32) * 1e-4
    return out


def load_speech_commands_folder(path, keywords=None, frontend: dict | None = None, seed: int = 0,
                                unknown_fraction: float = 1.0, silence_fraction: float = 1.0,
                                resample: bool = True, limit_per_class: int | None = None,
                                augment=True, require_train: bool = True, speech_fraction: float = 1.0) -> Dataset:
    """A Speech Commands layout: one folder per word of 1-s WAVs, ``_background_noise_/``,
    ``validation_list.txt`` and ``testing_list.txt`` (paths relative to the root) decide the split.

    ``keywords`` (a list or ``"default"`` for yes,no,...,go) makes the 12-class task: other words
    become ``_unknown_`` (about ``unknown_fraction`` times a keyword's count) and clips cut from the
    background noise become ``_silence_``. Without it every word folder is a class. WAVs at another
    rate or with several channels are resampled and mixed down unless ``resample=False``.
    ``require_train=False`` accepts a held-out folder (every clip in the lists): to evaluate on.
    ``_background_speech_/`` (optional): long recordings of speech without the keywords (conversation, radio,
    read prose); with ``keywords``, 1-s windows cut from them join the training ``_unknown_`` class (about
    ``speech_fraction`` times a keyword's count), so a streaming model has heard running speech. Only training
    uses them: keep the voices you test on out of that folder.

    ``augment`` (True, False or a dict of :class:`edgekit.data.augment.AudioAugment` fields) gives the
    training split augmented copies of every clip: speed, shift, gain, and the folder's own background
    recordings (mixed with generated noise) at a random SNR. Validation and test stay as recorded.
    """
    from .augment import augmented_copies, parse_augment

    aug = parse_augment(augment)
    from ..features import Frontend
    from .audio import fit_length, read_wav

    root = _require_dir(Path(path), "Speech Commands")
    fe = Frontend(**(frontend or {}))
    word_dirs = _class_dirs(root, "Speech Commands", skip=("_background_noise_", "_background_speech_"))
    val_list, test_list = _read_list(root / "validation_list.txt"), _read_list(root / "testing_list.txt")
    files = {d.name: sorted(d.glob("*.wav")) for d in word_dirs}
    empty = [w for w, fs in files.items() if not fs]
    if empty:
        raise DataError(f"Speech Commands folder {root}: word folder(s) with no .wav files: {', '.join(empty)}")
    if keywords == "default":
        keywords = SPEECH_KEYWORDS
    elif isinstance(keywords, str):
        keywords = [k.strip() for k in keywords.split(",") if k.strip()]
    if keywords:
        missing = [k for k in keywords if k not in files]
        if missing:
            raise DataError(f"Speech Commands folder {root}: no folder for keyword(s) {', '.join(missing)}")
        labels = [SILENCE, UNKNOWN] + list(keywords)
    else:
        labels = sorted(files)
    rng = np.random.default_rng(seed)
    by_split: dict[str, list[tuple[Path, int]]] = {"train": [], "val": [], "test": []}
    unknown: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    for word, fs in files.items():
        for f in fs[:limit_per_class] if limit_per_class else fs:
            rel = f"{word}/{f.name}"
            s = "test" if rel in test_list else "val" if rel in val_list else "train"
            if not keywords or word in keywords:
                by_split[s].append((f, labels.index(word)))
            else:
                unknown[s].append(f)
    noises = [read_wav(p, fe.sample_rate) for p in sorted((root / "_background_noise_").glob("*.wav"))]
    speech = [a for a in (read_wav(p, fe.sample_rate) for p in sorted((root / "_background_speech_").glob("*.wav")))
              if len(a) > fe.clip_samples]
    splits = {}
    for s, items in by_split.items():
        if keywords:
            per_class = max(1, len(items) // max(1, len(keywords)))
            n_unk = min(len(unknown[s]), int(round(per_class * unknown_fraction)))
            items = items + [(unknown[s][i], 1) for i in rng.permutation(len(unknown[s]))[:n_unk]]
        if not items:
            continue
        audio = np.stack([fit_length(read_wav(f, fe.sample_rate, resample_ok=resample), fe.clip_samples)
                          for f, _ in items])
        y = np.asarray([c for _, c in items], np.int64)
        if keywords:
            n_sil = int(round(per_class * silence_fraction))
            audio = np.concatenate([audio, silence_clips(noises, n_sil, fe.clip_samples, rng)])
            y = np.concatenate([y, np.zeros(n_sil, np.int64)])
            if s == "train" and speech:
                n_sp = int(round(per_class * speech_fraction))
                cuts = [speech[rng.integers(len(speech))] for _ in range(n_sp)]
                cuts = [a[o:o + fe.clip_samples] for a, o in ((a, rng.integers(0, len(a) - fe.clip_samples)) for a in cuts)]
                if cuts:
                    audio = np.concatenate([audio, np.stack(cuts)])
                    y = np.concatenate([y, np.ones(len(cuts), np.int64)])
        if s == "train" and aug.copies:
            audio, y = augmented_copies(audio, y, aug, np.random.default_rng([seed, 77]), noises=noises,
                                        silence_label=0 if keywords else None, sample_rate=fe.sample_rate)
            order = np.random.default_rng([seed, 78]).permutation(len(y))
            audio, y = audio[order], y[order]
        splits[s] = (fe.batch(audio), y)
    if "train" not in splits and require_train:
        raise DataError(f"Speech Commands folder {root}: every file is listed for validation or testing; nothing to train on")
    if "train" in splits:
        check_classes(root.name, labels, splits["train"][1], root)
    return Dataset(root.name, "audio-classification", labels, splits, fe.preprocessing(),
                   {"source": str(root), "background_noise_files": len(noises), "background_speech_files": len(speech),
                    "augment": aug.to_dict()})


# --- CSV text ----------------------------------------------------------------------------------------
_TOKEN = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def encode_texts(texts, vocab: list[str], max_length: int) -> np.ndarray:
    """Token ids: 0 = padding, 1 = out-of-vocabulary, then ``vocab`` in order (device-side friendly)."""
    index = {w: i + 2 for i, w in enumerate(vocab)}
    out = np.zeros((len(texts), max_length), np.int32)
    for r, t in enumerate(texts):
        ids = [index.get(w, 1) for w in tokenize(t)][:max_length]
        out[r, :len(ids)] = ids
    return out


def _read_csv(p: Path, text_col: str, label_col: str) -> list[dict]:
    try:
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            missing = [c for c in (text_col, label_col) if c not in cols]
            if missing:
                raise DataError(f"CSV file {p} lacks column(s) {', '.join(missing)}; it has: "
                                f"{', '.join(cols) or '(no header)'}. Expected a header with {text_col},{label_col}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"Can't read CSV file {p}: {e}") from None
    for i, r in enumerate(rows, start=2):
        if not (r.get(label_col) or "").strip():
            raise DataError(f"CSV file {p}, line {i}: empty {label_col!r}")
    if not rows:
        raise DataError(f"CSV file {p} has a header but no rows")
    return rows


def load_csv_text(path, text_col: str = "text", label_col: str = "label", vocab_size: int = 5000,
                  max_length: int | None = None, seed: int = 0, val: float = 0.1, test: float = 0.2) -> Dataset:
    """CSV text with a header (``text,label``); an optional ``split`` column (train/val/test) is honoured,
    else a stratified split. The vocabulary comes from the training split only."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"CSV file {p} does not exist")
    rows = _read_csv(p, text_col, label_col)
    texts = [r[text_col] or "" for r in rows]
    names = [r[label_col].strip() for r in rows]
    labels = sorted(set(names))
    y = np.asarray([labels.index(n) for n in names], np.int64)
    if rows and "split" in rows[0]:
        where = np.asarray([(r.get("split") or "train").strip().lower() for r in rows])
        bad = sorted(set(where) - {"train", "val", "test"})
        if bad:
            raise DataError(f"CSV file {p}: unknown split value(s) {', '.join(bad)}; allowed: train, val, test")
        idx = {s: np.flatnonzero(where == s) for s in ("train", "val", "test") if (where == s).any()}
        if "train" not in idx:
            raise DataError(f"CSV file {p}: the 'split' column has no 'train' rows (found: "
                            + ", ".join(f"{s} {len(i)}" for s, i in idx.items())
                            + "); the vocabulary is built from the training rows, so at least one row must be "
                            "'train' (an empty split cell counts as train)")
    else:
        idx = stratified_split(y, {"train": 1 - val - test, "val": val, "test": test}, seed)
    train_tokens = [tokenize(texts[i]) for i in idx["train"]]
    counts = Counter(w for t in train_tokens for w in t)
    vocab = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][: max(0, vocab_size - 2)]
    if max_length is None:
        lengths = [len(t) for t in train_tokens] or [1]
        max_length = int(min(128, max(4, np.percentile(lengths, 95))))
    x = encode_texts(texts, vocab, max_length)
    splits = {s: (x[i], y[i]) for s, i in idx.items() if len(i)}
    check_classes(p.stem, labels, splits["train"][1], p)
    pre = {"type": "text", "tokenizer": "words", "pattern": _TOKEN.pattern, "lowercase": True, "pad_id": 0,
           "vocab_size": len(vocab) + 2,
           "oov_id": 1, "vocab": vocab, "max_length": max_length}
    return Dataset(p.stem, "text-classification", labels, splits, pre,
                   {"source": str(p), "vocab_size": len(vocab) + 2})
