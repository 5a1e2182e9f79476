"""Training glue: a zoo model on a dataset into a run folder.

    result = train("ds_cnn_s", "keywords", epochs=30, out_dir="runs/kws")

The run folder (``model.keras`` + ``model.keras.json``, ``history.json``, ``metrics.json``,
``curves.png``, ``confusion.png``) is built in ``.<name>.partial`` next to it and renamed only
when complete, so an interrupted run never looks finished; re-running the same command resumes
from the last epoch checkpoint there. Build side: imports TensorFlow/Keras.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError, EdgekitError, allowed

STRATEGIES = ("auto", "default", "mirrored")
MONITORS = ("val_accuracy", "val_loss")


@dataclass
class TrainResult:
    out_dir: Path
    model_path: Path
    metrics: dict
    history: dict = field(default_factory=dict)
    resumed_from_epoch: int = 0


def _strategy(name: str):
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ConfigError(allowed(name, STRATEGIES, "strategy"))
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def image_augmenter(shape, seed):
    """Small shifts and rotations, applied in the tf.data pipeline (images only)."""
    import keras

    h, w = shape[0], shape[1]
    shift = max(1.0 / min(h, w), 0.08)  # at least one pixel on 8x8 digits
    return keras.Sequential([keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed),
                             keras.layers.RandomRotation(0.04, fill_mode="constant", seed=seed + 1)])


def input_pipeline(x, y, batch_size, *, shuffle=False, seed=0, augment=None):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is not None:
        ds = ds.map(lambda a, b: (augment(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


class _Progress:
    """One tqdm bar per epoch with loss/accuracy; silent when quiet."""

    def __new__(cls, steps, quiet):
        import keras

        class Cb(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                import sys

                self.bar = None
                # A live bar only on a terminal: in a log file every update would be a line.
                if not quiet and sys.stderr.isatty():
                    from tqdm import tqdm

                    self.bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{self.params.get('epochs')}",
                                    leave=False, dynamic_ncols=True)

            def on_train_batch_end(self, batch, logs=None):
                if self.bar:
                    self.bar.update(1)
                    self.bar.set_postfix({k: f"{v:.3f}" for k, v in (logs or {}).items() if k in ("loss", "accuracy")})

            def on_epoch_end(self, epoch, logs=None):
                if self.bar:
                    self.bar.close()
                if not quiet:
                    from tqdm import tqdm

                    tqdm.write(f"epoch {epoch + 1}/{self.params.get('epochs')}: " + "  ".join(
                        f"{k} {v:.4f}" for k, v in sorted((logs or {}).items()) if k != "learning_rate"),
                        file=__import__("sys").stderr)

        return Cb()


def _checkpointer(work: Path, monitor: str, patience: int | None, state: dict, clock):
    """Each epoch: ``last.keras`` (with optimizer), ``best.keras`` when the monitor improves, and
    ``state.json`` (history, best, early-stopping counter) — everything needed to resume."""
    import keras

    mode_max = monitor.endswith("accuracy")

    class Cb(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            for k, v in logs.items():
                state["history"].setdefault(k, []).append(v)
            value = logs.get(monitor)
            if value is None:
                raise ConfigError(f"Monitor {monitor!r} not in training logs ({', '.join(logs)})")
            best = state.get("best")
            improved = best is None or (value > best if mode_max else value < best)
            if improved:
                state.update(best=value, best_epoch=epoch + 1, wait=0)
                _save(self.model, work / "best.keras")
            else:
                state["wait"] = state.get("wait", 0) + 1
            state["epoch"] = epoch + 1
            state["train_seconds"] = clock()
            _save(self.model, work / "last.keras")
            from .fsutil import write_json_atomic

            write_json_atomic(work / "state.json", state)
            if patience and state["wait"] >= patience:
                self.model.stop_training = True
                state["stopped_early"] = True

    return Cb()


def _save(model, path: Path):
    tmp = path.with_name(f".tmp-{path.name}")  # Keras insists on the .keras suffix
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _model_options_for(ds, model_options: dict) -> dict:
    opts = dict(model_options or {})
    if ds.task == "text-classification" and "vocab_size" not in opts:
        opts["vocab_size"] = len(ds.preprocessing.get("vocab", [])) + 2
    return opts


def train(model_name: str, data, epochs: int = 10, out_dir: str | os.PathLike = "runs/train", *,
          batch_size: int = 64, learning_rate: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0,
          patience: int | None = 10, monitor: str = "val_accuracy", model_options: dict | None = None,
          data_options: dict | None = None, limit: int | None = None, augment: bool = True,
          strategy: str = "auto", overwrite: bool = False, quiet: bool = False, callbacks=()) -> TrainResult:
    """Train zoo model ``model_name`` on ``data`` (a name, path or Dataset) for up to ``epochs``.

    AdamW with a cosine learning-rate decay over the whole run, best checkpoint by ``monitor``,
    early stopping after ``patience`` epochs without improvement, fixed seeds. The best weights
    are evaluated on the test split and saved as ``model.keras``. Extra Keras ``callbacks`` run after
    the epoch checkpoint.
    """
    from .data import Dataset, load_dataset
    from .zoo import build_model, model_stats, models

    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1; received {epochs}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1; received {batch_size}")
    if monitor not in MONITORS:
        raise ConfigError(allowed(monitor, MONITORS, "monitor"))
    if strategy not in STRATEGIES:
        raise ConfigError(allowed(strategy, STRATEGIES, "strategy"))
    models.get(model_name)  # unknown names fail before any data is loaded
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"Run folder {out_dir} already exists; choose another --out or pass --overwrite")
    data_options = dict(data_options or {})
    ds = data if isinstance(data, Dataset) else load_dataset(data, limit=limit, **data_options)
    if isinstance(data, Dataset) and limit:
        ds = ds.subset(limit, seed)
    for s in ("train", "val"):
        if s not in ds.splits or len(ds.splits[s][1]) == 0:
            raise ConfigError(f"Dataset {ds.name!r} has no {s!r} split to train with")

    import keras

    work = out_dir.parent / f".{out_dir.name}.partial"
    config = {"model": model_name, "data": ds.name, "data_options": data_options, "limit": limit, "epochs": epochs,
              "batch_size": batch_size, "learning_rate": learning_rate, "weight_decay": weight_decay, "seed": seed,
              "model_options": model_options or {}, "augment": augment, "monitor": monitor, "patience": patience}
    state = {"config": config, "epoch": 0, "history": {}, "best": None, "wait": 0}
    resumed = 0
    if (work / "state.json").exists() and (work / "last.keras").exists():
        old = json.loads((work / "state.json").read_text())
        if old.get("config") == json.loads(json.dumps(config)):
            state, resumed = old, int(old.get("epoch", 0))
        else:
            shutil.rmtree(work)
    elif work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)

    keras.utils.set_random_seed(seed)
    xtr, ytr = ds.split("train")
    xv, yv = ds.split("val")
    steps = math.ceil(len(ytr) / batch_size)
    mopts = _model_options_for(ds, model_options)
    t0, base_seconds = time.time(), float(state.get("train_seconds", 0.0))
    with _strategy(strategy).scope():
        if resumed:
            model = _load_for_resume(work / "last.keras")
        else:
            model = build_model(model_name, ds.input_shape, ds.num_classes, **mopts)
            schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps, alpha=0.01)
            model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=weight_decay),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    aug = image_augmenter(ds.input_shape, seed) if augment and ds.task == "image-classification" else None
    clock = lambda: base_seconds + time.time() - t0  # noqa: E731
    callbacks = [_checkpointer(work, monitor, patience, state, clock), _Progress(steps, quiet), *callbacks]
    stopped = state.get("stopped_early", False)
    if resumed < epochs and not stopped:
        model.fit(input_pipeline(xtr, ytr, batch_size, shuffle=True, seed=seed, augment=aug),
                  validation_data=input_pipeline(xv, yv, batch_size * 4), epochs=epochs, initial_epoch=resumed,
                  callbacks=callbacks, verbose=0, shuffle=False)  # the pipeline shuffles (seeded)
    train_seconds = clock()

    # The deliverable: best weights in a fresh, uncompiled model (no optimizer state to ship).
    final = build_model(model_name, ds.input_shape, ds.num_classes, **mopts)
    final.set_weights(_load_for_resume(work / "best.keras").get_weights())
    from .artifact import ArtifactMeta, provenance, write_meta
    from .evaluate import evaluate_predictions, plot_confusion, plot_history

    split = "test" if "test" in ds.splits and len(ds.splits["test"][1]) else "val"
    xt, yt = ds.split(split)
    report = evaluate_predictions(final.predict(xt, batch_size=256, verbose=0), yt, ds.labels)
    stats = model_stats(final)
    metrics = {"top1": report["top1"], "split": split, "val_top1": state.get("best") if monitor == "val_accuracy" else None,
               "best_epoch": state.get("best_epoch"), "epochs_run": state.get("epoch"),
               "stopped_early": bool(state.get("stopped_early")), "train_seconds": round(train_seconds, 1),
               "params": stats["params"], "macs": stats["macs"], "per_class": report["per_class"],
               "confusion": report["confusion"], "labels": list(ds.labels), "samples": report["samples"]}
    model_path = work / "model.keras"
    _save(final, model_path)
    meta = ArtifactMeta(
        format="keras", task=ds.task, labels=list(ds.labels),
        inputs=[{"name": t.name, "shape": [None, *ds.input_shape], "dtype": ds.input_dtype} for t in final.inputs],
        outputs=[{"name": "probs", "shape": [None, ds.num_classes], "dtype": "float32"}],
        preprocessing=ds.preprocessing,
        provenance=provenance(model_name, data=ds.name, data_options=data_options, limit=limit, seed=seed,
                              epochs=epochs, model_options=mopts, step="train"),
        metrics={"top1": report["top1"], "split": split, "samples": report["samples"]},
        extra={"model": model_name, "params": stats["params"], "macs": stats["macs"]})
    write_meta(model_path, meta)
    from .fsutil import write_json_atomic

    write_json_atomic(work / "history.json", state["history"])
    write_json_atomic(work / "metrics.json", metrics)
    plot_history(state["history"], work / "curves.png", title=f"{model_name} on {ds.name}")
    plot_confusion(report["confusion"], ds.labels, work / "confusion.png",
                   title=f"{model_name} on {ds.name} ({split}): top-1 {report['top1']:.3f}")
    for f in ("last.keras", "best.keras", "state.json"):
        (work / f).unlink(missing_ok=True)
    if out_dir.exists():  # only reachable with overwrite=True
        shutil.rmtree(out_dir) if out_dir.is_dir() else out_dir.unlink()
    os.replace(work, out_dir)
    return TrainResult(out_dir, out_dir / "model.keras", metrics, state["history"], resumed)


def _load_for_resume(path: Path):
    import keras

    from . import zoo  # noqa: F401  (registers the zoo's custom layers)

    try:
        return keras.saving.load_model(path)
    except Exception as e:  # a checkpoint cut short by a crash is unusable, say so plainly
        raise EdgekitError(f"Can't load checkpoint {path} ({e}); delete {path.parent} to start over") from None
