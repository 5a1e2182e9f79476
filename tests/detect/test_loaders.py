"""The three layouts load into the same records, and every kind of bad input is a one-line DataError."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgekit.data.detection import load_detection
from edgekit.errors import DataError

from .conftest import NAMES, write_coco, write_voc, write_yolo


def _flat(recs):
    return [(np.round(r.boxes, 4).tolist(), r.classes.tolist()) for r in recs]


def test_three_layouts_give_the_same_boxes(tmp_path, items):
    sets = {k: load_detection(w(tmp_path / k, items)) for k, w in
            (("yolo", write_yolo), ("coco", write_coco), ("voc", write_voc))}
    for k, ds in sets.items():
        assert ds.labels == NAMES, k
        assert ds.layout == k
        assert [len(ds.splits[s]) for s in ("train", "val")] == [12, 4]
    n_boxes = sum(len(lab) for _, lab in items["train"])
    assert n_boxes > 20  # the generator put objects in these images
    ref = _flat(sets["yolo"].splits["train"])
    assert sum(len(c) for _, c in ref) == n_boxes
    for k in ("coco", "voc"):
        got = _flat(sets[k].splits["train"])
        assert [c for _, c in got] == [c for _, c in ref], k
        for (b1, _), (b2, _) in zip(ref, got):
            np.testing.assert_allclose(np.asarray(b1).reshape(-1, 4), np.asarray(b2).reshape(-1, 4), atol=2e-4)
    # Images without objects are background images: kept and counted.
    empty = sum(not lab for _, lab in items["train"] + items["val"])
    assert sets["yolo"].info.get("background_images", 0) == empty
    # No test split in the folder: one is held out of train, seeded, the rest untouched.
    assert "test" in sets["yolo"].splits or "test" not in items


def test_describe_counts_boxes_per_class_and_sizes(tiny_yolo, items):
    d = load_detection(tiny_yolo).describe()
    tr = d["splits"]["train"]
    assert tr["images"] == 12
    want = np.bincount([c for _, lab in items["train"] for c, *_ in lab], minlength=4).tolist()
    assert tr["boxes_per_class"] == want
    assert sum(tr["size_histogram"].values()) == tr["boxes"] == sum(want)


def test_only_train_gets_val_and_test_cut(tmp_path, items):
    ds = load_detection(write_yolo(tmp_path / "y", {"train": items["train"] + items["val"]}), seed=3)
    sizes = {s: len(v) for s, v in ds.splits.items()}
    assert sizes == {"train": 12, "val": 2, "test": 2}
    paths = [r.path for v in ds.splits.values() for r in v]
    assert len(set(paths)) == 16


def test_coco_iscrowd_and_voc_difficult_are_ignored_boxes(tmp_path, items):
    root = write_coco(tmp_path / "c", items)
    f = root / "annotations" / "instances_train.json"
    d = json.loads(f.read_text())
    d["annotations"][0]["iscrowd"] = 1
    f.write_text(json.dumps(d))
    ds = load_detection(root)
    assert sum(int(r.ignore.sum()) for r in ds.splits["train"]) == 1
    v = write_voc(tmp_path / "v", items)
    x = sorted((v / "Annotations").glob("train_*.xml"))
    x = next(p for p in x if "<object>" in p.read_text())
    x.write_text(x.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    assert sum(int(r.ignore.sum()) for r in load_detection(v).splits["train"]) == 1


def _yolo_label(root, split="train"):
    return next(p for p in sorted((root / "labels" / split).glob("*.txt")))


@pytest.mark.parametrize("case, needle", [
    ("outside", "lies outside the image"),
    ("zero_area", "has zero area"),
    ("class_id", "class id 9 is beyond the 4 names"),
    ("orphan_label", "has no image"),
    ("bad_image", "Can't decode image"),
])
def test_yolo_bad_input(tmp_path, items, case, needle):
    root = write_yolo(tmp_path / "y", items)
    lf = _yolo_label(root)
    if case == "outside":
        lf.write_text("0 0.95 0.5 0.3 0.2\n")
    elif case == "zero_area":
        lf.write_text("1 0.5 0.5 0.0 0.2\n")
    elif case == "class_id":
        lf.write_text("9 0.5 0.5 0.2 0.2\n")
    elif case == "orphan_label":
        (lf.parent / "zzz_no_image.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    else:
        (root / "images" / "train" / "000.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=needle) as e:
        load_detection(root)
    assert "\n" not in str(e.value)


def test_coco_dangling_image_id(tmp_path, items):
    root = write_coco(tmp_path / "c", items)
    f = root / "annotations" / "instances_val.json"
    d = json.loads(f.read_text())
    d["annotations"].append({"id": 999, "image_id": 4242, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0})
    f.write_text(json.dumps(d))
    with pytest.raises(DataError, match="image id 4242, which is not in 'images'"):
        load_detection(root)


def test_voc_xml_that_does_not_parse(tmp_path, items):
    root = write_voc(tmp_path / "v", items)
    (root / "Annotations" / "train_003.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match="does not parse"):
        load_detection(root)


def test_cli_bad_folder_exits_2_with_one_line(tmp_path, items):
    root = write_yolo(tmp_path / "y", items)
    _yolo_label(root).write_text("7 0.5 0.5 0.2 0.2\n")
    p = subprocess.run([sys.executable, "-m", "edgekit.cli", "data", "info", str(root)], capture_output=True, text=True)
    assert p.returncode == 2
    assert "class id 7 is beyond the 4 names" in p.stderr
    assert "Traceback" not in p.stderr


def test_cli_data_info_json(tmp_path, tiny_yolo):
    out = tmp_path / "d.json"
    p = subprocess.run([sys.executable, "-m", "edgekit.cli", "data", "info", str(tiny_yolo), "--json", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["task"] == "detection" and d["splits"]["train"]["images"] == 12
    assert "box size" in p.stdout
