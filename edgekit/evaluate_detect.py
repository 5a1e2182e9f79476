"""Detection metrics: COCO mAP through pycocotools, centroid precision / recall / F1, for any format.

    evaluate_detection("runs/det/model.keras", "shapes")      # Keras in process
    evaluate_detection("export/model.tflite")                 # TFLite, ONNX, OpenVINO: through edgekit.runtime
    map_judge("export/model_int8.tflite", "shapes")           # mAP@[.5:.95] in points: the compress gate's judge

Every format's raw output goes through the same device-side post-processing
(:mod:`edgekit.runtime.boxes`) with the parameters the artifact carries.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError, MissingDependencyError, ModelError


def _coco():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise MissingDependencyError("pycocotools", "train", "COCO mAP") from None
    return COCO, COCOeval


def coco_map(records, detections, labels, pr_curve: bool = False) -> dict:
    """mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP (COCO's 101-point interpolation, area "all", 100
    detections) of ``detections`` (per image, normalized boxes) against the ``records``' ground truth.
    Ignored boxes (COCO iscrowd, VOC difficult) are crowd regions: neither misses nor false positives.
    ``pr_curve``: also ``pr50``, COCOeval's interpolated precision at IoU 0.5 on its 101 recall points, per class
    and averaged over the classes that have boxes (``None`` where a class has no ground truth)."""
    COCO, COCOeval = _coco()
    images, anns, dets = [], [], []
    aid = 1
    for i, (r, d) in enumerate(zip(records, detections)):
        w, h = r.width, r.height
        images.append({"id": i, "width": w, "height": h})
        for b, c, ig in zip(r.boxes, r.classes, r.ignore):
            bw, bh = float(b[2] - b[0]) * w, float(b[3] - b[1]) * h
            anns.append({"id": aid, "image_id": i, "category_id": int(c), "bbox": [float(b[0]) * w, float(b[1]) * h, bw, bh],
                         "area": bw * bh, "iscrowd": int(bool(ig))})
            aid += 1
        for b, s, c in zip(d.boxes, d.scores, d.classes):
            dets.append({"image_id": i, "category_id": int(c), "score": float(s),
                         "bbox": [float(b[0]) * w, float(b[1]) * h, float(b[2] - b[0]) * w, float(b[3] - b[1]) * h]})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": k, "name": str(n)} for k, n in enumerate(labels)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not dets or not anns:
            per = {str(n): (0.0 if anns else None) for n in labels}
            out = {"map": 0.0, "map50": 0.0, "map75": 0.0, "per_class": per, "images": len(images),
                   "boxes": len(anns), "detections": len(dets)}
            if pr_curve:
                out["pr50"] = {"recall": np.linspace(0, 1, 101).round(2).tolist(), "all": [0.0] * 101,
                               "per_class": {str(n): None for n in labels}}
            return out
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"]  # [iou thresholds, recall points, classes, areas, max dets]
    per = {}
    for k, n in enumerate(labels):
        p = prec[:, :, k, 0, -1]
        per[str(n)] = float(p[p > -1].mean()) if (p > -1).any() else None
    st = ev.stats
    out = {"map": float(max(st[0], 0.0)), "map50": float(max(st[1], 0.0)), "map75": float(max(st[2], 0.0)),
           "per_class": per, "images": len(images), "boxes": len(anns), "detections": len(dets)}
    if pr_curve:
        p50 = prec[0, :, :, 0, -1]  # [recall points, classes] at IoU 0.5 (ev.params.iouThrs[0]); -1: no boxes
        valid = (p50 > -1).all(0)
        out["pr50"] = {"recall": [float(v) for v in ev.params.recThrs],
                       "all": (p50[:, valid].mean(1) if valid.any() else np.zeros(len(p50))).tolist(),
                       "per_class": {str(n): (p50[:, k].tolist() if valid[k] else None) for k, n in enumerate(labels)}}
    return out


def centroid_scores(records, detections, labels) -> dict:
    """FOMO-style scoring: a predicted centre is a true positive when it falls inside a not yet matched
    ground-truth box of its class (highest scores first); ignored boxes absorb centres without counting."""
    tp = fp = fn = 0
    per = {str(n): [0, 0, 0] for n in labels}
    for r, d in zip(records, detections):
        used = np.zeros(r.n, bool)
        for i in np.argsort(-d.scores, kind="stable"):
            cx, cy = d.boxes[i, 0], d.boxes[i, 1]
            inside = ((r.classes == d.classes[i]) & ~used & (r.boxes[:, 0] <= cx) & (cx <= r.boxes[:, 2])
                      & (r.boxes[:, 1] <= cy) & (cy <= r.boxes[:, 3]))
            cand = np.flatnonzero(inside)
            name = str(labels[d.classes[i]])
            if len(cand):
                # The box whose centre is nearest wins.
                ctr = (r.boxes[cand, :2] + r.boxes[cand, 2:]) / 2
                j = cand[np.argmin(((ctr - [cx, cy]) ** 2).sum(1))]
                used[j] = True
                if not r.ignore[j]:
                    tp += 1
                    per[name][0] += 1
            else:
                fp += 1
                per[name][1] += 1
        for j in np.flatnonzero(~used & ~r.ignore):
            fn += 1
            per[str(labels[r.classes[j]])][2] += 1

    def prf(t, f, n):
        p = t / (t + f) if t + f else 0.0
        rc = t / (t + n) if t + n else 0.0
        return p, rc, (2 * p * rc / (p + rc) if p + rc else 0.0)

    p, rc, f1 = prf(tp, fp, fn)
    return {"precision": p, "recall": rc, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
            "per_class": {k: dict(zip(("precision", "recall", "f1"), prf(*v))) for k, v in per.items()}}


# --- running a model of any format ----------------------------------------------------------------------
class DetectorRunner:
    """A detector (a keras.Model, or a .keras/.tflite/.onnx/.xml path) plus its post-processing; ``run(images)``
    takes uint8 RGB ``[N, H, W, 3]`` at the model's input size and returns raw outputs."""

    def __init__(self, model, meta=None, device: str = "cpu", threads: int | None = None):
        from .artifact import model_format, read_meta

        self.keras_model = self.session = None
        self.path = None
        self.format = "keras"
        if isinstance(model, (str, os.PathLike)):
            self.path = Path(model)
            if not self.path.exists():
                raise ModelError(f"Model file {self.path} does not exist")
            self.format = model_format(self.path)
            meta = meta or read_meta(self.path)
            if self.format == "keras":
                from .zoo import load_model

                try:
                    self.keras_model = load_model(self.path)
                except Exception as e:
                    raise ModelError(f"Can't load Keras model {self.path}: {e}") from None
            else:
                from . import runtime

                self.session = runtime.load(self.path, device=device, threads=threads)
                meta = meta or self.session.meta
        else:
            self.keras_model = model
        if meta is None or meta.task != "detection":
            raise ModelError(f"{self.path or 'The model'} is not a detector (task {getattr(meta, 'task', None)!r}); "
                             f"detection metrics need a model trained with a detection dataset")
        self.meta = meta
        pre = meta.preprocessing or {}
        self.size = int((pre.get("size") or [0])[0])
        self.scale = float(pre.get("scale", 1 / 255))

    def run(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        x = images.astype(np.float32) * self.scale
        if self.keras_model is not None:
            return np.asarray(self.keras_model.predict(x, batch_size=batch_size, verbose=0))
        return np.concatenate([self.session.predict(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    def postprocess(self, **overrides):
        from .runtime.boxes import Postprocess

        return Postprocess.from_meta(self.meta, **overrides)

    def close(self):
        if self.session is not None:
            self.session.close()


def score_outputs(outputs: np.ndarray, records, labels, post_params, pr_curve: bool = False) -> dict:
    """mAP (boxes) or centroid P/R/F1 of raw ``outputs`` with post-processing parameters ``post_params``
    (``pr_curve``: with the box detector's precision-recall curve at IoU 0.5, :func:`coco_map`)."""
    from .runtime.boxes import Postprocess

    kind = post_params.get("kind", "centernet")
    keys = ("kind", "num_classes", "score_threshold", "nms_iou", "max_detections", "peak_kernel")
    p = Postprocess(**{k: post_params[k] for k in keys if k in post_params})
    if kind == "centernet":
        p.score_threshold = float(post_params.get("min_score_eval", 0.01))  # the whole PR curve, as COCO expects
        return coco_map(records, p(outputs), labels, pr_curve)
    return centroid_scores(records, p(outputs), labels)


def detection_data_for(meta, data=None, seed: int = 0):
    from .data.detection import is_detection_data, load_detection

    if data is None:
        data = (meta.provenance or {}).get("data") if meta else None
        if not data:
            raise DataError("The model records no dataset; pass --data")
    elif not is_detection_data(data) and (Path(str(data)).exists() or not any(c in str(data) for c in "/\\.")):
        # a classification set's name or folder (a path that does not exist gets load_detection's own error)
        raise ConfigError(f"The model is a detector; {str(data)!r} is not detection data (a YOLO data.yaml, a COCO "
                          f"folder with annotations/instances_*.json, a VOC folder, or the built-in 'shapes')")
    return load_detection(data, seed=seed)


def evaluate_detection(model, data=None, split: str = "test", *, device: str = "cpu", threads: int | None = None,
                       limit: int | None = None) -> dict:
    """mAP@[.5:.95], mAP@.5 and per-class AP (box detectors) or centroid precision / recall / F1 (FOMO) of
    ``model`` (any format) on ``data``'s ``split`` (default: the dataset in the model's metadata)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be an integer >= 1; received {limit!r}")
    runner = DetectorRunner(model, device=device, threads=threads)
    try:
        ds = detection_data_for(runner.meta, data)
        if list(runner.meta.labels) != list(ds.labels):
            raise DataError(f"Model labels ({', '.join(map(str, runner.meta.labels[:6]))}) differ from dataset "
                            f"{ds.name!r} labels ({', '.join(map(str, ds.labels[:6]))})")
        x, recs = ds.images(split, runner.size, limit)
        res = score_outputs(runner.run(x), recs, ds.labels, runner.meta.extra["postprocess"])
    finally:
        runner.close()
    return {"model": str(runner.path) if runner.path else "model", "format": runner.format, "data": ds.name,
            "split": split, "task": "detection", "kind": runner.meta.extra["postprocess"]["kind"],
            "labels": list(ds.labels), **res}


def map_judge(artifact_path, dataset=None, split: str = "test", limit: int | None = None) -> float:
    """The compress gate's judge for detectors: mAP@[.5:.95] of the artifact in points (0-100); for a centroid
    model, F1 in points. A drop is ``map_judge(float) - map_judge(int8)``."""
    r = evaluate_detection(artifact_path, dataset, split, limit=limit)
    return 100.0 * (r["map"] if r["kind"] == "centernet" else r["f1"])


def verify_boxes(reference: np.ndarray, got: np.ndarray, meta, min_fraction: float = 0.99, iou: float = 0.9,
                 score_tol: float = 0.01) -> dict:
    """Boxes decoded from an export's raw output against those from the source model's: the fraction of reference
    boxes matched (same class, IoU >= ``iou``); the export check requires ``min_fraction``. The export's boxes are
    decoded ``score_tol`` under the score threshold, the score difference the check allows: a box at 0.301 in
    Keras and 0.299 in TFLite is the same box, not a lost one (float TFLite of centernet_lite0 lost 1.2 % of the
    boxes that way)."""
    from .runtime.boxes import Postprocess, match_detections

    post = Postprocess.from_meta(meta)
    low = Postprocess.from_meta(meta, score_threshold=max(0.0, post.score_threshold - score_tol))
    ref, new = post(reference), low(np.asarray(got).reshape(reference.shape))
    m = match_detections(ref, new, iou)
    m["min_fraction"] = min_fraction
    m["passed"] = bool(m["fraction"] >= min_fraction)
    m["informative"] = m["boxes"] > 0
    return m


def verification_images(meta, n: int = 32) -> np.ndarray | None:
    """Held-out images of the dataset the detector was trained on, scaled as its input (for export checks):
    random pixels make a detector find nothing, which would make a box check vacuous."""
    try:
        ds = detection_data_for(meta)
        split = "val" if "val" in ds.splits else next(iter(ds.splits))
        size = int(meta.preprocessing["size"][0])
        x, _ = ds.images(split, size, n)
    except Exception:  # the data is not on this machine: random inputs, and a box check that says it is vacuous
        return None
    return x.astype(np.float32) * float(meta.preprocessing.get("scale", 1 / 255))


def is_detection_artifact(path) -> bool:
    """The model file's metadata says ``task: detection`` (no TensorFlow needed to find out)."""
    from .artifact import read_meta

    try:
        meta = read_meta(path) if Path(str(path)).exists() else None
    except Exception:
        return False
    return meta is not None and meta.task == "detection"


def eval_cli(model, data, split, device, threads, limit, json_path):
    """``edgekit eval`` for detectors: a table of per-class AP (or centroid P/R/F1) and the headline."""
    from .commands._common import emit

    r = evaluate_detection(model, data, split, device=device, threads=threads, limit=limit)
    if r["kind"] == "centernet":
        rows = [{"class": k, "AP@[.5:.95]": v} for k, v in r["per_class"].items()]
        title = (f"{r['model']} ({r['format']}) on {r['data']}/{r['split']}: mAP@[.5:.95] {r['map']:.4f}, "
                 f"mAP@.5 {r['map50']:.4f}, mAP@.75 {r['map75']:.4f} over {r['images']} images, {r['boxes']} boxes")
    else:
        rows = [{"class": k, **v} for k, v in r["per_class"].items()]
        title = (f"{r['model']} ({r['format']}) on {r['data']}/{r['split']}: centroid F1 {r['f1']:.4f}, precision "
                 f"{r['precision']:.4f}, recall {r['recall']:.4f}")
    emit(rows, json_path, title=title, payload=r)
    return r
