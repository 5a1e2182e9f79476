"""Device-side post-processing (exact numbers) and COCO mAP through pycocotools on constructed predictions."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgekit.data.detection import DetRecord
from edgekit.evaluate_detect import centroid_scores, coco_map
from edgekit.runtime.boxes import Detections, Postprocess, iou_matrix, match_detections, nms, peaks


def test_iou_and_nms_exact():
    b = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 5, 10]], np.float32)
    iou = iou_matrix(b, b)
    assert iou[0, 1] == pytest.approx(90 / 110)
    assert iou[0, 2] == 0.0
    assert iou[0, 3] == pytest.approx(0.5)
    keep = nms(b, np.array([0.9, 0.95, 0.5, 0.8]), iou=0.6)
    assert keep.tolist() == [1, 3, 2]  # box 0 overlaps box 1 at 0.818 > 0.6; box 3 overlaps 1 at 0.4 only
    assert nms(b, np.array([0.9, 0.95, 0.5, 0.8]), iou=0.3).tolist() == [1, 2]


def test_peaks_keep_local_maxima_only():
    h = np.zeros((5, 5, 1), np.float32)
    h[1, 1, 0], h[1, 2, 0], h[4, 4, 0] = 0.9, 0.8, 0.4
    p = peaks(h)[..., 0]
    assert p[1, 1] == pytest.approx(0.9) and p[1, 2] == 0 and p[4, 4] == pytest.approx(0.4)


def _centernet_output(grid=8, classes=2):
    o = np.zeros((1, grid, grid, classes + 4), np.float32)
    o[0, 2, 3, 0] = 0.9  # class 0 at cell (x=3, y=2), centre offset (0.5, 0.25), size 2 x 4 cells
    o[0, 2, 3, classes:] = [0.5, 0.25, np.log(2.0), np.log(4.0)]
    o[0, 6, 6, 1] = 0.6  # class 1, offset 0, size 1 x 1 cell
    o[0, 6, 6, classes:] = [0.0, 0.0, 0.0, 0.0]
    o[0, 6, 5, 1] = 0.2  # below the threshold
    return o


def test_centernet_decode_exact_boxes():
    post = Postprocess(kind="centernet", num_classes=2, score_threshold=0.3, nms_iou=0.6)
    d = post(_centernet_output())[0]
    assert d.classes.tolist() == [0, 1]
    np.testing.assert_allclose(d.scores, [0.9, 0.6])
    # centre (3.5, 2.25) cells of 8 -> normalized; size 2 x 4 cells
    np.testing.assert_allclose(d.boxes[0], [(3.5 - 1) / 8, (2.25 - 2) / 8, (3.5 + 1) / 8, (2.25 + 2) / 8], atol=1e-6)
    np.testing.assert_allclose(d.boxes[1], [5.5 / 8, 5.5 / 8, 6.5 / 8, 6.5 / 8], atol=1e-6)
    js = d.to_list(["a", "b"], size=(80, 80))
    assert js[0]["label"] == "a" and js[0]["box"] == [25.0, 2.5, 45.0, 42.5]


def test_centroids_decode_and_wrong_shape_is_clear():
    o = np.zeros((1, 4, 4, 1), np.float32)
    o[0, 1, 2, 0] = 0.8
    d = Postprocess(kind="centroids", num_classes=1, score_threshold=0.5)(o)[0]
    np.testing.assert_allclose(d.boxes, [[2.5 / 4, 1.5 / 4, 2.5 / 4, 1.5 / 4]])
    from edgekit.errors import ModelError

    with pytest.raises(ModelError, match=r"outputs \[N, H, W, 5\]; received shape \[1, 4, 4, 1\]"):
        Postprocess(kind="centernet", num_classes=1)(o)


def test_match_detections_counts_class_and_iou():
    ref = [Detections(np.array([[0, 0, .5, .5], [.5, .5, 1, 1]], np.float32), np.array([.9, .8], np.float32),
                      np.array([0, 1]))]
    same = match_detections(ref, ref)
    assert same["fraction"] == 1.0 and same["min_iou"] == pytest.approx(1.0)
    moved = [Detections(ref[0].boxes + [0.05, 0, 0.05, 0], ref[0].scores, np.array([0, 0]))]
    m = match_detections(ref, moved, iou=0.5)
    assert m["matched"] == 1 and m["fraction"] == 0.5  # the second box changed class


def test_device_side_imports_no_tensorflow():
    import subprocess

    code = ("import sys, edgekit.runtime.boxes, edgekit.apps.camera; "
            "print([m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _rec(boxes, classes, ignore=None, w=100, h=100):
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return DetRecord("x.png", w, h, b, np.asarray(classes, np.int64),
                     np.zeros(len(classes), bool) if ignore is None else np.asarray(ignore, bool))


def test_map_perfect_is_one_and_shift_gives_known_values():
    recs = [_rec([[0, 0, .5, .5], [.5, .5, 1, 1]], [0, 1]), _rec([[.2, .2, .6, .6]], [1])]
    perfect = [Detections(r.boxes.copy(), np.full(r.n, 0.9, np.float32), r.classes.copy()) for r in recs]
    m = coco_map(recs, perfect, ["a", "b"])
    assert m["map"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)
    assert m["per_class"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    # Shift every box right by d so that IoU = (w - d) / (w + d) = 0.78: matched at thresholds .50 ... .75 (6 of 10).
    shifted = []
    for r in recs:
        w = r.boxes[:, 2] - r.boxes[:, 0]
        d = w * 0.22 / 1.78
        b = r.boxes.copy()
        b[:, 0] += d
        b[:, 2] += d
        shifted.append(Detections(b, np.full(r.n, 0.9, np.float32), r.classes.copy()))
    m = coco_map(recs, shifted, ["a", "b"])
    assert m["map50"] == pytest.approx(1.0) and m["map75"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx(0.6)
    # Half the objects missed (class b keeps one of two): recall 0.5 for b -> AP about 0.5 (COCO's 101 points).
    half = [perfect[0], Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))]
    m = coco_map(recs, half, ["a", "b"])
    assert m["per_class"]["a"] == pytest.approx(1.0)
    assert m["per_class"]["b"] == pytest.approx(51 / 101)


def test_centroid_scores_exact():
    recs = [_rec([[0, 0, .5, .5], [.5, .5, 1, 1], [0, .5, .4, 1]], [0, 1, 0])]
    pts = np.array([[.25, .25, .25, .25], [.75, .75, .75, .75], [.9, .1, .9, .1]], np.float32)
    dets = [Detections(pts, np.array([.9, .8, .7], np.float32), np.array([0, 1, 0]))]
    s = centroid_scores(recs, dets, ["a", "b"])
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 1)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
