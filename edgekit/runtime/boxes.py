"""Detector post-processing on the device: one implementation (NumPy only) for every format.

    post = Postprocess.from_meta(session.meta)          # the parameters the artifact carries
    dets = post(session.predict(x))                      # per image: Detections(boxes, scores, classes)

``centernet`` outputs ``[N, Gh, Gw, classes + 4]`` (heatmap, centre offset in the cell, log box size in
cells): peaks of the heatmap (a cell that is the maximum of its 3x3 neighbourhood), above the score
threshold, become boxes, then per-class NMS. ``centroids`` (FOMO-style) outputs ``[N, Gh, Gw, classes]``:
peaks above the threshold become object centres. Coordinates are normalized (0..1) x0, y0, x1, y1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelError

KINDS = ("centernet", "centroids")


@dataclass
class Detections:
    boxes: np.ndarray  # float32 [n, 4] normalized x0, y0, x1, y1 (centroids: a zero-size box at the centre)
    scores: np.ndarray  # float32 [n]
    classes: np.ndarray  # int64 [n]

    def __len__(self) -> int:
        return int(len(self.scores))

    def to_list(self, labels=None, size=None) -> list[dict]:
        """JSON-ready: ``{"label", "class", "score", "box": [x0, y0, x1, y1]}`` (pixels when ``size`` = (w, h))."""
        sx, sy = size or (1.0, 1.0)
        out = []
        for b, s, c in zip(self.boxes, self.scores, self.classes):
            box = [float(b[0] * sx), float(b[1] * sy), float(b[2] * sx), float(b[3] * sy)]
            out.append({"label": str(labels[c]) if labels is not None and c < len(labels) else str(int(c)),
                        "class": int(c), "score": round(float(s), 4), "box": [round(v, 4) for v in box]})
        return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` [n, 4] with every box in ``b`` [m, 4] (x0, y0, x1, y1)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first (ties: lower index first)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    ious = iou_matrix(boxes, boxes)
    suppressed = np.zeros(len(order), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= ious[i] > iou
    return np.asarray(keep, np.int64)


def peaks(heat: np.ndarray, kernel: int = 3) -> np.ndarray:
    """``heat`` [Gh, Gw, C] where each value is kept only if it is the maximum of its k x k neighbourhood."""
    r = kernel // 2
    h, w, _ = heat.shape
    pad = np.pad(heat, ((r, r), (r, r), (0, 0)), constant_values=-np.inf)
    m = np.full_like(heat, -np.inf)
    for dy in range(kernel):
        for dx in range(kernel):
            m = np.maximum(m, pad[dy:dy + h, dx:dx + w])
    return np.where(heat >= m, heat, 0.0)


@dataclass
class Postprocess:
    kind: str = "centernet"
    num_classes: int = 1
    score_threshold: float = 0.3
    nms_iou: float = 0.6
    max_detections: int = 100
    peak_kernel: int = 3

    @classmethod
    def from_meta(cls, meta, **overrides) -> "Postprocess":
        p = (getattr(meta, "extra", None) or {}).get("postprocess")
        if not p:
            raise ModelError("This model carries no detection post-processing in its metadata (task "
                             f"{getattr(meta, 'task', None)!r}); a detector exported by edgekit does")
        return cls.from_params(p, **overrides)

    @classmethod
    def from_params(cls, p: dict, **overrides) -> "Postprocess":
        """From the ``postprocess`` mapping a detector's metadata (or a bundle's smoke reference) carries."""
        p = dict(p or {})
        if p.get("kind") not in KINDS:
            raise ModelError(f"Unknown post-processing kind {p.get('kind')!r}. Available: {', '.join(KINDS)}")
        kw = {k: p[k] for k in ("kind", "num_classes", "score_threshold", "nms_iou", "max_detections", "peak_kernel")
              if k in p}
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)

    def __call__(self, out: np.ndarray) -> list[Detections]:
        out = np.asarray(out, np.float32)
        if out.ndim == 3:
            out = out[None]
        want = self.num_classes + (4 if self.kind == "centernet" else 0)
        if out.ndim != 4 or out.shape[-1] != want:
            raise ModelError(f"A {self.kind} detector with {self.num_classes} classes outputs [N, H, W, {want}]; "
                             f"received shape {list(out.shape)}")
        return [self._one(o) for o in out]

    def _one(self, o: np.ndarray) -> Detections:
        gh, gw = o.shape[:2]
        c = self.num_classes
        heat = peaks(o[..., :c], self.peak_kernel)
        ys, xs, cls = np.nonzero(heat >= self.score_threshold)
        scores = heat[ys, xs, cls]
        order = np.argsort(-scores, kind="stable")[: max(self.max_detections * 4, self.max_detections)]
        ys, xs, cls, scores = ys[order], xs[order], cls[order], scores[order]
        if self.kind == "centroids":
            cx, cy = (xs + 0.5) / gw, (ys + 0.5) / gh
            boxes = np.stack([cx, cy, cx, cy], 1).astype(np.float32)
            keep = np.arange(len(scores))[: self.max_detections]
            return Detections(boxes[keep], scores[keep].astype(np.float32), cls[keep].astype(np.int64))
        off = o[ys, xs, c:c + 2]
        size = np.exp(np.clip(o[ys, xs, c + 2:c + 4], -6.0, 6.0))
        cx, cy = (xs + off[:, 0]) / gw, (ys + off[:, 1]) / gh
        bw, bh = size[:, 0] / gw, size[:, 1] / gh
        boxes = np.clip(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1), 0.0, 1.0).astype(np.float32)
        keep = []
        for k in np.unique(cls):
            idx = np.flatnonzero(cls == k)
            keep.extend(idx[nms(boxes[idx], scores[idx], self.nms_iou)].tolist())
        keep = np.asarray(sorted(keep, key=lambda i: (-scores[i], i))[: self.max_detections], np.int64)
        return Detections(boxes[keep], scores[keep].astype(np.float32), cls[keep].astype(np.int64))


def match_detections(ref: list[Detections], got: list[Detections], iou: float = 0.9) -> dict:
    """How well ``got`` reproduces ``ref`` image by image: each reference box matched greedily (by score) to the
    unmatched box of the same class with the highest IoU; matched if IoU >= ``iou``. Returns the fraction
    matched, the worst IoU and the largest score difference among matches."""
    total = matched = 0
    worst_iou, max_score_diff = 1.0, 0.0
    for r, g in zip(ref, got):
        total += len(r)
        if not len(r):
            continue
        used = np.zeros(len(g), bool)
        ious = iou_matrix(r.boxes, g.boxes) if len(g) else np.zeros((len(r), 0))
        if r.boxes.size and np.allclose(r.boxes[:, :2], r.boxes[:, 2:]):  # centroids: distance, not IoU
            ious = 1.0 - np.abs(r.boxes[:, None, :2] - g.boxes[None, :, :2]).max(-1) * 8 if len(g) else ious
        for i in np.argsort(-r.scores, kind="stable"):
            cand = np.flatnonzero((g.classes == r.classes[i]) & ~used) if len(g) else np.zeros(0, np.int64)
            if not len(cand):
                continue
            j = cand[np.argmax(ious[i, cand])]
            if ious[i, j] >= iou:
                used[j] = True
                matched += 1
                worst_iou = min(worst_iou, float(ious[i, j]))
                max_score_diff = max(max_score_diff, abs(float(r.scores[i]) - float(g.scores[j])))
    return {"boxes": int(total), "matched": int(matched), "fraction": (matched / total) if total else 1.0,
            "min_iou": worst_iou, "max_score_diff": max_score_diff, "iou": iou}
