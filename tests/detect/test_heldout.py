"""The held-out detection set of benchmarks/detect_heldout.py (objects cut from scikit-image's photographs, unlike
the built-in shapes): written in COCO and VOC layout from one generation, both load to the same records, the same
seed writes the same bytes, and the folders appear only when complete."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.data.detection import load_detection

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("detect_heldout", ROOT / "benchmarks" / "detect_heldout.py")
heldout = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(heldout)

SPLITS = {"train": 14, "val": 4, "test": 6}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("heldout")
    return out, heldout.generate(out, seed=5, splits=SPLITS, quiet=True)


def _records(ds, split):
    return [(Path(r.path).name, r.width, r.height, np.round(r.boxes, 6).tolist(), r.classes.tolist(),
             r.ignore.tolist()) for r in ds.splits[split]]


def test_coco_and_voc_writes_load_to_the_same_records(written):
    out, man = written
    coco, voc = load_detection(out / "coco"), load_detection(out / "voc")
    assert (coco.layout, voc.layout) == ("coco", "voc")
    assert coco.labels == voc.labels == list(heldout.CLASSES)
    for s, n in SPLITS.items():
        assert len(coco.splits[s]) == len(voc.splits[s]) == n
        assert _records(coco, s) == _records(voc, s), s
    # What the generator says it wrote is what the loaders read: boxes, ignored (iscrowd / difficult) boxes and
    # background images per split.
    for s, c in man["counts"].items():
        recs = coco.splits[s]
        assert sum(int((~r.ignore).sum()) for r in recs) == c["boxes"]
        assert sum(int(r.ignore.sum()) for r in recs) == c["ignored_boxes"]
        assert sum(r.n == 0 for r in recs) == c["background_images"]
    assert coco.info.get("background_images", 0) == voc.info.get("background_images", 0) == \
        sum(c["background_images"] for c in man["counts"].values())
    assert "size_mismatch" not in coco.info and "size_mismatch" not in voc.info


def test_the_set_has_what_the_issue_asks(written):
    out, man = written
    ds = load_detection(out / "coco")
    recs = [r for v in ds.splits.values() for r in v]
    boxes = np.concatenate([r.boxes[~r.ignore] for r in recs])
    classes = np.concatenate([r.classes[~r.ignore] for r in recs])
    assert len(boxes) > 2 * len(recs)  # 0-8 objects an image: ~3.5 visible on average
    assert max(r.n for r in recs) <= 9  # 8 objects, plus a crowd box
    assert set(classes.tolist()) == set(range(len(heldout.CLASSES)))  # every class appears
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert 0.03 < side.min() and side.max() < 0.8 and 0.1 < np.median(side) < 0.4
    assert len({(r.width, r.height) for r in recs}) > 1  # not all square
    d = json.loads((out / "coco" / "annotations" / "instances_train.json").read_text())
    assert [c["id"] for c in d["categories"]] == list(heldout.CATEGORY_IDS)  # ids with gaps
    assert min(im["id"] for im in d["images"]) > 0 and len(d["images"]) == SPLITS["train"]
    assert (out / "voc" / "ImageSets" / "Main" / "test.txt").read_text().count("\n") == SPLITS["test"]


def test_same_seed_same_bytes_and_no_partial_folders(written, tmp_path):
    out, _ = written
    again = heldout.generate(tmp_path, seed=5, splits=SPLITS, quiet=True)
    for lay in ("coco", "voc"):
        a = sorted(p.relative_to(out / lay) for p in (out / lay).rglob("*") if p.is_file())
        b = sorted(p.relative_to(tmp_path / lay) for p in (tmp_path / lay).rglob("*") if p.is_file())
        assert a == b
        assert all((out / lay / f).read_bytes() == (tmp_path / lay / f).read_bytes() for f in a)
    assert again["counts"] == written[1]["counts"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "voc"]
    other = heldout.generate(tmp_path / "o", seed=6, splits={"train": 3}, quiet=True)
    assert other["seed"] == 6
    with pytest.raises(SystemExit, match="exists with other settings"):
        heldout.generate(tmp_path, seed=6, splits=SPLITS, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "o", "voc"]
