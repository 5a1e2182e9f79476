"""Evaluate a model of any format on a dataset split through one data path.

    evaluate("runs/kws/model.keras", "keywords")          # Keras, in process
    evaluate("export/model.tflite", "keywords")           # TFLite, ONNX, OpenVINO: through edgekit.runtime

Returns top-1, per-class accuracy and the confusion matrix. When the model's metadata records
the data options it was trained with (e.g. the audio front-end), they are reused so the inputs
match; labels and input shapes are checked against the dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError, ModelError


def evaluate_predictions(probs: np.ndarray, y: np.ndarray, labels: list) -> dict:
    """Top-1, per-class accuracy and confusion matrix (rows: true class, columns: predicted)."""
    y = np.asarray(y, np.int64)
    pred = np.asarray(probs).reshape(len(y), -1).argmax(axis=1)
    n = len(labels)
    conf = np.zeros((n, n), np.int64)
    np.add.at(conf, (y, pred), 1)
    support = conf.sum(axis=1)
    per_class = {str(labels[i]): (float(conf[i, i] / support[i]) if support[i] else None) for i in range(n)}
    return {"top1": float((pred == y).mean()) if len(y) else 0.0, "samples": int(len(y)),
            "per_class": per_class, "confusion": conf.tolist()}


def _data_options_from_meta(meta, data) -> dict:
    """The options the model was trained with when it is evaluated on the same dataset; on another
    dataset only the audio front-end carries over (so the features match)."""
    if meta is None:
        return {}
    prov = meta.provenance or {}
    opts = dict(prov.get("data_options") or {}) if str(data) == str(prov.get("data")) else {}
    pre = meta.preprocessing or {}
    if pre.get("type") == "audio" and "frontend" in pre and "frontend" not in opts:
        opts["frontend"] = pre["frontend"]
    return opts


def _held_out_ok(data, opts: dict) -> dict:
    """Evaluation needs no training split: a Speech Commands folder whose clips are all in
    testing_list.txt / validation_list.txt (a held-out set) is fine to evaluate on."""
    from .data import _guess_kind, datasets

    p = Path(str(data))
    if ("require_train" in opts or str(data) in datasets or not p.is_dir()
            or opts.get("kind", "speech-commands") != "speech-commands" or _guess_kind(p) != "speech-commands"):
        return opts
    return {**opts, "require_train": False}


def _whole_folder(meta, data, split: str, opts: dict) -> bool:
    """An image folder of class subfolders (no train/val/test inside) that the model was not trained on
    is a test set: every image is evaluated, not the 20 % "test" share a training split would hold out."""
    from .data import _guess_kind, datasets

    p = Path(str(data))
    if (split != "test" or str(data) in datasets or not p.is_dir() or "whole" in opts
            or opts.get("kind", "images") != "images" or _guess_kind(p) != "images" or (p / "train").is_dir()):
        return False
    trained_on = str(((meta.provenance or {}) if meta is not None else {}).get("data") or "")
    return trained_on not in (str(data), p.name, str(p.resolve()))


def _foreign_images(meta, data) -> bool:
    """A model edgekit did not train (compress recorded its preprocessing) evaluated on an image folder."""
    return (meta is not None and bool((meta.provenance or {}).get("foreign"))
            and (meta.preprocessing or {}).get("type") == "image" and Path(str(data)).is_dir())


def _foreign_dataset(meta, data):
    """Every image of the folder, read with the model's own preprocessing (size, layout, mean/scale, colour);
    the class subfolders must be named after the model's labels."""
    from .preprocess import load_image_data

    ds = load_image_data(data, meta.preprocessing, meta.labels, holdout=1.0)
    if not ds.info["labelled"]:
        shown = ", ".join(map(str, meta.labels[:5])) if meta.labels else "(none recorded: compress with --labels)"
        raise DataError(f"Image folder {data} is not labelled for this model: evaluation needs class subfolders named "
                        f"after the model's labels ({shown}); found "
                        + (", ".join(ds.info["classes"][:5]) or "images directly in the folder"))
    return ds


def evaluate(model, data=None, split: str = "test", *, batch_size: int = 256, device: str = "cpu",
             threads: int | None = None, limit: int | None = None, data_options: dict | None = None) -> dict:
    """Evaluate ``model`` (a keras.Model or a .keras/.tflite/.onnx/.xml path) on ``data``'s ``split``.

    ``data`` defaults to the dataset named in the model's metadata.
    """
    from .artifact import model_format, read_meta
    from .data import Dataset, load_dataset

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be an integer >= 1; received {limit!r}")
    meta, fmt, session, keras_model = None, "keras", None, None
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise ModelError(f"Model file {path} does not exist")
        fmt = model_format(path)
        meta = read_meta(path)
        if fmt == "keras":
            from .zoo import load_model

            try:
                keras_model = load_model(path)
            except Exception as e:
                raise ModelError(f"Can't load Keras model {path}: {e}") from None
        else:
            from . import runtime

            session = runtime.load(path, device=device, threads=threads)
            meta = meta or session.meta
    else:
        keras_model, path = model, None
    if data is None:
        data = (meta.provenance or {}).get("data") if meta else None
        if not data:
            raise DataError(f"No dataset given and {path or 'the model'} records none; pass --data")
    opts = {**_data_options_from_meta(meta, data), **(data_options or {})} if not isinstance(data, Dataset) else {}
    if not isinstance(data, Dataset) and _foreign_images(meta, data):
        ds = _foreign_dataset(meta, data)
    else:
        whole = not isinstance(data, Dataset) and _whole_folder(meta, data, split, opts)
        ds = data if isinstance(data, Dataset) else load_dataset(data, **_held_out_ok(data, opts),
                                                                 **({"whole": True} if whole else {}))
    x, y = ds.split(split)
    if limit:
        x, y = x[:limit], y[:limit]
    if meta is not None and meta.labels and list(meta.labels) != list(ds.labels):
        raise DataError(f"Model labels ({', '.join(map(str, meta.labels[:6]))}...) differ from dataset "
                        f"{ds.name!r} labels ({', '.join(map(str, ds.labels[:6]))}...)")
    if keras_model is not None:
        want = tuple(keras_model.inputs[0].shape[1:])
        if want != tuple(x.shape[1:]):
            raise DataError(f"Model input shape {want} doesn't match dataset {ds.name!r} examples {tuple(x.shape[1:])}")
        probs = keras_model.predict(x, batch_size=batch_size, verbose=0)
    else:
        want = tuple(session.inputs[0].shape[1:])
        if want != tuple(x.shape[1:]):
            raise DataError(f"Model input shape {want} doesn't match dataset {ds.name!r} examples {tuple(x.shape[1:])}")
        probs = np.concatenate([session.predict(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    report = evaluate_predictions(probs, y, ds.labels)
    whole = bool(ds.info.get("whole")) if isinstance(ds.info, dict) else False
    return {"model": str(path) if path else getattr(keras_model, "name", "model"), "format": fmt,
            "data": ds.name, "split": split, **report, "labels": list(ds.labels), "whole_folder": whole}


# --- plots (matplotlib Agg, build side) -------------------------------------------------------------
def plot_history(history: dict, path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for k in (key, f"val_{key}"):
            if history.get(k):
                ax.plot(range(1, len(history[k]) + 1), history[k], label=k)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def plot_confusion(confusion, labels, path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = np.asarray(confusion, np.float64)
    norm = c / np.maximum(c.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * n + 2), max(4, 0.5 * n + 1.5)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), [str(s) for s in labels], rotation=90)
    ax.set_yticks(range(n), [str(s) for s in labels])
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if c[i, j]:
                    ax.text(j, i, int(c[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
