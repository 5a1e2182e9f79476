"""Training detectors: a zoo detector on a YOLO / COCO / VOC folder or the built-in ``shapes`` set.

    result = train_detector("centernet_mnv2", "shapes", out_dir="runs/det")

The classifier's guarantees (edgekit.train): seeds and op determinism, an epoch budget with AdamW and
cosine decay, BatchNorm statistics re-estimated on clean training images at each epoch's end and
validation scored in inference mode (here: COCO mAP@[.5:.95] through the device-side post-processing),
the best epoch kept, early stopping, the run built in ``.<name>.partial`` and renamed when complete.
Augmentation is box-aware (NumPy + OpenCV): random scale and crop, horizontal flip, colour.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError
from .train import TrainResult, _check_positive, _checkpointer, _Progress, _save, _say, _seed_everything

DETECTORS = ("centernet_lite0", "centernet_mnv2", "fomo_mnv2")
# Detectors that start from their backbone's ImageNet weights unless told ``weights="none"``: nobody trains a
# detector's backbone from scratch on a few thousand images (measured on ``shapes``: see README, Detect objects).
PRETRAINED_BY_DEFAULT = ("centernet_lite0",)
DEFAULT_SIZE = 192
# Default budget: ~1,000 optimizer steps, 10-60 epochs (early stopping ends a converged run sooner). From the
# ImageNet backbone, shapes' validation mAP@.5 passed 0.85 by step 400 of 1,000 (about 25 minutes on 2 cores).
AUTO_STEPS, AUTO_MIN_EPOCHS, AUTO_MAX_EPOCHS = 1000, 10, 60


def is_detector(model_name: str) -> bool:
    from .zoo import DESCRIPTIONS

    return DESCRIPTIONS.get(model_name, ("",))[0] == "detection"


# --- targets and loss ------------------------------------------------------------------------------------
def _radius(w, h, min_overlap=0.7):
    """CenterNet's Gaussian radius (in cells) for a box of ``w`` x ``h`` cells."""
    a1, b1, c1 = 1, h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return max(0.0, min(r1, r2, r3))


def make_targets(boxes, classes, grid: int, num_classes: int, with_boxes: bool = True) -> np.ndarray:
    """``[grid, grid, classes (+4)]``: Gaussian peaks of exactly 1.0 at each box centre's cell; at that cell the
    centre's offset in the cell and the log box size in cells."""
    t = np.zeros((grid, grid, num_classes + (4 if with_boxes else 0)), np.float32)
    ys, xs = np.mgrid[0:grid, 0:grid]
    for b, c in zip(np.asarray(boxes).reshape(-1, 4), classes):
        x0, y0, x1, y1 = (np.asarray(b) * grid).tolist()
        w, h = x1 - x0, y1 - y0
        if w <= 0 or h <= 0:
            continue
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        ix, iy = min(int(cx), grid - 1), min(int(cy), grid - 1)
        sigma = (2 * max(0.0, _radius(w, h)) + 1) / 6
        g = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma ** 2))
        t[..., c] = np.maximum(t[..., c], g)
        t[iy, ix, c] = 1.0
        if with_boxes:
            t[iy, ix, num_classes:] = [cx - ix, cy - iy, math.log(w), math.log(h)]
    return t


def detection_loss(num_classes: int, with_boxes: bool = True, size_weight: float = 1.0):
    """Penalty-reduced focal loss on the heatmap (CenterNet) + L1 on offset and log-size at box centres."""
    from keras import ops

    def loss(y_true, y_pred):
        ht, hp = y_true[..., :num_classes], ops.clip(y_pred[..., :num_classes], 1e-4, 1 - 1e-4)
        pos = ops.cast(ht >= 1.0, "float32")
        npos = ops.maximum(ops.sum(pos), 1.0)
        pos_l = ops.log(hp) * ops.square(1 - hp) * pos
        neg_l = ops.log(1 - hp) * ops.square(hp) * ops.power(1 - ht, 4) * (1 - pos)
        total = -(ops.sum(pos_l) + ops.sum(neg_l)) / npos
        if with_boxes:
            centre = ops.max(pos, axis=-1, keepdims=True)
            nc = ops.maximum(ops.sum(centre), 1.0)
            off = ops.sum(ops.abs(y_pred[..., num_classes:num_classes + 2] - y_true[..., num_classes:num_classes + 2])
                          * centre) / nc
            size = ops.sum(ops.abs(y_pred[..., num_classes + 2:] - y_true[..., num_classes + 2:]) * centre) / nc
            total = total + off + size_weight * size
        return total

    return loss


# --- box-aware augmentation ---------------------------------------------------------------------------------
def augment(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, rng, min_visible: float = 0.4):
    """Random zoom (0.6-1.5x) and crop/pad, horizontal flip and colour jitter of one uint8 image and its
    normalized boxes; a box less than ``min_visible`` inside the frame afterwards is dropped."""
    import cv2

    s = img.shape[0]
    z = float(np.exp(rng.uniform(np.log(0.6), np.log(1.5))))
    tx, ty = rng.uniform(min(0, s - s * z), max(0, s - s * z), 2)
    flip = rng.random() < 0.5
    a = np.array([[-z if flip else z, 0, (s - tx) if flip else tx], [0, z, ty]], np.float32)
    fill = tuple(float(v) for v in img.reshape(-1, 3).mean(0))
    out = cv2.warpAffine(img, a, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    b = boxes * s
    xs = b[:, [0, 2]] * a[0, 0] + a[0, 2]
    ys = b[:, [1, 3]] * a[1, 1] + a[1, 2]
    nb = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], 1)
    area = np.prod(nb[:, 2:] - nb[:, :2], 1)
    cb = np.clip(nb, 0, s)
    vis = np.prod(np.clip(cb[:, 2:] - cb[:, :2], 0, None), 1) / np.maximum(area, 1e-6)
    keep = (vis >= min_visible) & ((cb[:, 2:] - cb[:, :2]).min(1) >= 2)
    # Colour: brightness, contrast, saturation.
    f = out.astype(np.float32)
    gray = f.mean(2, keepdims=True)
    f = gray + (f - gray) * rng.uniform(0.6, 1.4)
    f = (f - f.mean()) * rng.uniform(0.7, 1.3) + f.mean() + rng.uniform(-25, 25)
    return np.clip(f, 0, 255).astype(np.uint8), (cb[keep] / s).astype(np.float32), classes[keep]


def _batches(x, recs, num_classes, grid, batch_size, seed, with_boxes, aug):
    import keras

    class Seq(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.order = np.random.default_rng([seed, 0]).permutation(len(x))

        def __len__(self):
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, i):
            idx = self.order[i * batch_size:(i + 1) * batch_size]
            rng = np.random.default_rng([seed, self.epoch, i])
            xb = np.empty((len(idx), *x.shape[1:]), np.float32)
            yb = np.empty((len(idx), grid, grid, num_classes + (4 if with_boxes else 0)), np.float32)
            for k, j in enumerate(idx):
                r = recs[j]
                keep = ~r.ignore
                img, b, c = (augment(x[j], r.boxes[keep], r.classes[keep], rng) if aug
                             else (x[j], r.boxes[keep], r.classes[keep]))
                xb[k] = img / 255.0
                yb[k] = make_targets(b, c, grid, num_classes, with_boxes)
            return xb, yb

        def on_epoch_end(self):
            self.epoch += 1
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(x))

    return Seq()


def _validator(x_cal, xv, recs_v, labels, post, seed, say):
    import keras

    from .compat import recalibrate_batchnorm
    from .evaluate_detect import score_outputs

    class Cb(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is None:
                return
            recalibrate_batchnorm(self.model, x_cal, seed=seed + epoch)
            out = self.model.predict(xv / 255.0, batch_size=64, verbose=0)
            r = score_outputs(out, recs_v, labels, post)
            if post["kind"] == "centernet":
                logs["val_map"], logs["val_map50"] = r["map"], r["map50"]
            else:
                logs["val_map"], logs["val_precision"], logs["val_recall"] = r["f1"], r["precision"], r["recall"]

    return Cb()


def auto_epochs(n_train: int, batch_size: int) -> int:
    steps = max(1, math.ceil(n_train / batch_size))
    return int(min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, math.ceil(AUTO_STEPS / steps))))


def train_detector(model_name: str, data, epochs: int | None = None, out_dir: str | os.PathLike = "runs/detect", *,
                   batch_size: int = 32, learning_rate: float = 4e-3, weight_decay: float = 1e-4, seed: int = 0,
                   patience: int | None = None, input_size: int = DEFAULT_SIZE, model_options: dict | None = None,
                   limit: int | None = None, augment=True, weights: str | None = None, overwrite: bool = False,
                   quiet: bool = False, callbacks=()) -> TrainResult:
    """Train detector ``model_name`` on ``data`` (``shapes``, or a YOLO / COCO / VOC folder) at ``input_size``.

    Validation mAP@[.5:.95] (F1 of centres for the centroid model) picks the best epoch and drives early
    stopping (``patience``: default a quarter of the budget, at least 6; 0 off). ``weights="imagenet"`` starts
    from the backbone's ImageNet weights (EfficientNet-Lite0: the ``pretrained`` extra, the default of
    ``centernet_lite0``; MobileNetV2: Keras' cache); ``"none"`` trains from scratch."""
    from .data.detection import load_detection
    from .zoo import build_model, check_model_options, model_stats
    from .zoo.detectors import postprocess_params

    if model_name not in DETECTORS:
        from .zoo import models

        models.get(model_name)  # an unknown name: the registry's error
        raise ConfigError(f"Model {model_name!r} is a classifier; detection data ({data}) needs a detector: "
                          f"{', '.join(DETECTORS)}")
    if epochs is not None:
        _check_positive("epochs", epochs, integer=True)
    _check_positive("batch_size", batch_size, integer=True)
    _check_positive("learning_rate", learning_rate)
    _check_positive("weight_decay", weight_decay, allow_zero=True)
    _check_positive("input_size", input_size, integer=True)
    if patience is not None:
        _check_positive("patience", patience, integer=True, allow_zero=True)
    if limit is not None:
        _check_positive("limit", limit, integer=True)
    if isinstance(augment, dict):
        raise ConfigError("Augmentation options apply to audio datasets; a detector takes --no-augment or nothing")
    mopts = dict(model_options or {})
    if weights is None and model_name in PRETRAINED_BY_DEFAULT:
        weights = "imagenet"
    if weights not in (None, "none", "imagenet"):
        raise ConfigError(f"A detector takes --weights imagenet (its backbone's ImageNet weights) or none (from "
                          f"scratch); received {weights!r}")
    if weights == "imagenet":
        mopts["pretrained"] = True
        if model_name == "centernet_lite0":
            from .errors import MissingDependencyError
            from .pretrained import lite_weights

            try:
                lite_weights("lite0")  # a missing or corrupt weights package: its one-line error before any data
            except MissingDependencyError as e:
                raise ConfigError(f"{e} (or pass --weights none to train {model_name} from scratch)") from None
    check_model_options(model_name, mopts)
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"Run folder {out_dir} already exists; choose another --out or pass --overwrite")
    ds = load_detection(data, seed=seed)
    say = (lambda m: None) if quiet else _say
    if ds.info.get("background_images"):
        say(f"{ds.name}: {ds.info['background_images']} background image(s) without objects (kept: they teach "
            f"the detector what is not an object)")
    shape = (input_size, input_size, 3)
    xtr, rtr = ds.images("train", input_size, limit)
    xv, rv = ds.images("val", input_size, limit)
    if sum(r.n for r in rtr) == 0:
        raise DataError(f"Detection set {ds.name!r} has no boxes in its training images")
    budget = int(epochs) if epochs else auto_epochs(len(xtr), batch_size)
    if patience is None:
        patience = max(6, budget // 4)
    _seed_everything(seed)
    model = build_model(model_name, shape, ds.num_classes, **mopts)
    post = postprocess_params(model_name, shape, ds.num_classes, stride=input_size // int(model.outputs[0].shape[1]))
    boxes = post["kind"] == "centernet"
    grid = post["grid"][0]
    work = out_dir.parent / f".{out_dir.name}.partial"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    config = {"model": model_name, "data": str(data), "epochs": budget, "batch_size": batch_size,
              "learning_rate": learning_rate, "weight_decay": weight_decay, "seed": seed, "input_size": input_size,
              "model_options": mopts, "augment": bool(augment), "patience": patience, "n_train": len(xtr)}
    state = {"config": config, "epoch": 0, "history": {}, "best": None, "wait": 0}
    t0 = time.time()
    steps = math.ceil(len(xtr) / batch_size)
    from .train import compile_scheduled

    compile_scheduled(model, learning_rate, budget, steps, weight_decay, loss=detection_loss(ds.num_classes, boxes),
                      metrics=())
    # XLA (Keras' "auto" on TensorFlow) spent 5 minutes compiling this graph's first step on 2 CPU cores.
    model.jit_compile = False
    cal = xtr[np.random.default_rng(seed).permutation(len(xtr))[:512]] / 255.0
    cbs = [_validator(cal.astype(np.float32), xv, rv, ds.labels, post, seed, say),
           _checkpointer(work, "val_map", patience, state, lambda: time.time() - t0), _Progress(steps, quiet),
           *callbacks]
    model.fit(_batches(xtr, rtr, ds.num_classes, grid, batch_size, seed, boxes, bool(augment)), epochs=budget,
              callbacks=cbs, verbose=0)
    train_seconds = time.time() - t0

    from .zoo import load_model

    final = build_model(model_name, shape, ds.num_classes, **{k: v for k, v in mopts.items() if k != "pretrained"})
    final.set_weights(load_model(work / "best.keras").get_weights())
    from .artifact import ArtifactMeta, provenance, write_meta
    from .data.base import image_preprocessing
    from .evaluate_detect import score_outputs

    split = "test" if ds.splits.get("test") else "val"
    xt, rt = ds.images(split, input_size, limit)
    report = score_outputs(final.predict(xt / 255.0, batch_size=64, verbose=0), rt, ds.labels, post)
    stats = model_stats(final)
    headline = {"map": report["map"], "map50": report["map50"]} if boxes else \
        {"f1": report["f1"], "precision": report["precision"], "recall": report["recall"]}
    metrics = {**headline, "split": split, "images": len(xt), "per_class": report["per_class"],
               "epochs_budget": budget, "best_epoch": state.get("best_epoch"), "epochs_run": state.get("epoch"),
               "val_best": state.get("best"), "stopped_early": bool(state.get("stopped_early")),
               "train_seconds": round(train_seconds, 1), "params": stats["params"], "macs": stats["macs"],
               "labels": list(ds.labels), "seed": seed}
    model_path = work / "model.keras"
    _save(final, model_path)
    pre = dict(image_preprocessing(input_size, input_size, 3, scale=1 / 255.0), color="RGB", resize="stretch")
    meta = ArtifactMeta(
        format="keras", task="detection", labels=list(ds.labels),
        inputs=[{"name": "image", "shape": [None, *shape], "dtype": "float32"}],
        outputs=[{"name": "detections", "shape": [None, grid, grid, ds.num_classes + (4 if boxes else 0)],
                  "dtype": "float32"}],
        preprocessing=pre,
        provenance=provenance(model_name, data=str(data), seed=seed, epochs=budget, model_options=mopts,
                              step="train", limit=limit),
        metrics={**headline, "split": split, "images": len(xt)},
        extra={"model": model_name, "params": stats["params"], "macs": stats["macs"], "postprocess": post})
    write_meta(model_path, meta)
    from .fsutil import write_json_atomic

    write_json_atomic(work / "history.json", state["history"])
    write_json_atomic(work / "metrics.json", metrics)
    for f in ("last.keras", "best.keras", "state.json"):
        (work / f).unlink(missing_ok=True)
    if out_dir.exists():
        shutil.rmtree(out_dir) if out_dir.is_dir() else out_dir.unlink()
    os.replace(work, out_dir)
    return TrainResult(out_dir, out_dir / "model.keras", metrics, state["history"])


def train_cli(model_name, data, epochs, out_dir, *, json_path=None, unused: dict | None = None, **kw):
    """``edgekit train`` for detectors: a classifier with detection data (or the reverse) is a ConfigError."""
    import click

    from .data.detection import is_detection_data
    from .tables import dump_json

    if not is_detector(model_name):
        raise ConfigError(f"{data} is a detection dataset but {model_name!r} is a classifier; detectors: "
                          f"{', '.join(DETECTORS)}")
    if not is_detection_data(data):
        raise ConfigError(f"Model {model_name!r} is a detector; {data!r} is not detection data (a YOLO data.yaml, a "
                          f"COCO folder with annotations/instances_*.json, a VOC folder, or the built-in 'shapes')")
    given = [k for k, v in (unused or {}).items() if v]
    if given:
        raise ConfigError(f"{', '.join(given)} apply to classifiers; a detector takes --epochs, --batch-size, --lr, "
                          f"--seed, --patience, --limit, --no-augment, --weights imagenet, --model-option")
    r = train_detector(model_name, data, epochs, out_dir, **kw)
    m = r.metrics
    if json_path != "-":
        head = (f"mAP@[.5:.95] {m['map']:.4f}, mAP@.5 {m['map50']:.4f}" if "map" in m else
                f"centroid F1 {m['f1']:.4f} (precision {m['precision']:.4f}, recall {m['recall']:.4f})")
        click.echo(f"{r.model_path}: {m['split']} {head} on {m['images']} images (best epoch {m['best_epoch']} of "
                   f"{m['epochs_run']}, budget {m['epochs_budget']}, {m['train_seconds']:.0f} s, {m['params']:,} params, "
                   f"{m['macs']:,} MACs)")
    dump_json({"model": str(r.model_path), **m}, json_path)
    return r
