"""The three layouts load into the same records, and every kind of bad input is a one-line DataError."""

from __future__ import annotations

import json
import re
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


def _coco_edit(root, split, fn):
    f = root / "annotations" / f"instances_{split}.json"
    d = json.loads(f.read_text())
    fn(d)
    f.write_text(json.dumps(d))


def _first_with_box(d):
    return d["annotations"][0]


@pytest.mark.parametrize("case, needle", [
    ("outside", "lies outside the image"),
    ("zero_area", "has zero area"),
    ("category", "category id 4 is not among the categories (1, 3, 7, 12)"),
    ("missing_image", "not found in"),
    ("bad_image", "Can't decode image"),
    ("no_bbox", "needs 'bbox' as 4 numbers [x, y, width, height]; received None"),
    ("short_bbox", "needs 'bbox' as 4 numbers"),
    ("no_image_id", "needs 'image_id' as an integer"),
    ("no_file_name", "needs 'file_name' as a string"),
    ("not_an_object", "a COCO file is an object with 'images'"),
    ("duplicate_image", "image id 100 appears twice"),
    ("duplicate_category", "category id 3 appears twice"),
])
def test_coco_bad_input(tmp_path, items, case, needle):
    root = write_coco(tmp_path / "c", items)
    f = root / "annotations" / "instances_train.json"
    if case == "outside":
        _coco_edit(root, "train", lambda d: _first_with_box(d).update(bbox=[50, 10, 30, 10]))  # 64 px wide
    elif case == "zero_area":
        _coco_edit(root, "train", lambda d: _first_with_box(d).update(bbox=[5, 5, 10, 0]))
    elif case == "category":
        _coco_edit(root, "train", lambda d: _first_with_box(d).update(category_id=4))
    elif case == "missing_image":
        (root / "train" / "003.png").unlink()
    elif case == "bad_image":
        (root / "train" / "003.png").write_bytes(b"\x89PNG but not really")
    elif case == "no_bbox":
        _coco_edit(root, "train", lambda d: _first_with_box(d).pop("bbox"))
    elif case == "short_bbox":
        _coco_edit(root, "train", lambda d: _first_with_box(d).update(bbox=[1, 2, 3]))
    elif case == "no_image_id":
        _coco_edit(root, "train", lambda d: _first_with_box(d).update(image_id="100"))
    elif case == "no_file_name":
        _coco_edit(root, "train", lambda d: d["images"][2].pop("file_name"))
    elif case == "not_an_object":
        f.write_text("[1, 2, 3]")
    elif case == "duplicate_image":
        _coco_edit(root, "train", lambda d: d["images"].append(dict(d["images"][0], file_name="001.png")))
    else:
        _coco_edit(root, "train", lambda d: d["categories"].append({"id": 3, "name": "again"}))
    with pytest.raises(DataError) as e:
        load_detection(root)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_coco_images_without_annotations_are_counted_background(tmp_path, items):
    root = write_coco(tmp_path / "c", items)
    empty = sum(not lab for _, lab in items["train"] + items["val"])

    def strip(d):  # the annotations of two images that had some go away: they become background images
        keep = sorted({a["image_id"] for a in d["annotations"]})[:2]
        d["annotations"] = [a for a in d["annotations"] if a["image_id"] not in keep]

    _coco_edit(root, "train", strip)
    ds = load_detection(root)
    assert ds.info["background_images"] == empty + 2
    assert len(ds.splits["train"]) == 12 and sum(r.n == 0 for r in ds.splits["train"]) == \
        sum(not lab for _, lab in items["train"]) + 2


def test_declared_size_that_differs_is_counted_and_the_file_wins(tmp_path, items):
    root = write_coco(tmp_path / "c", items)
    _coco_edit(root, "val", lambda d: d["images"][0].update(width=640, height=480))
    ds = load_detection(root)
    assert ds.info["size_mismatch"] == 1
    r = ds.splits["val"][0]
    assert (r.width, r.height) == (64, 64)
    ref = load_detection(write_coco(tmp_path / "ref", items)).splits["val"][0]
    np.testing.assert_allclose(r.boxes, ref.boxes)


def _voc_with_box(root, split="train"):
    return next(p for p in sorted((root / "Annotations").glob(f"{split}_*.xml")) if "<object>" in p.read_text())


@pytest.mark.parametrize("case, needle", [
    ("outside", "lies outside the image"),
    ("zero_area", "has zero area"),
    ("class_name", "class 'dog' is not among the names (disc, square, triangle, cross)"),
    ("no_image", "has no image in"),
    ("bad_image", "Can't decode image"),
    ("not_numeric", "has a bndbox without numeric xmin/ymin/xmax/ymax"),
    ("no_name", "an <object> without <name> or <bndbox>"),
    ("listed_nothing", "lists 'train_999' but neither"),
])
def test_voc_bad_input(tmp_path, items, case, needle):
    root = write_voc(tmp_path / "v", items)
    x = _voc_with_box(root)
    t = x.read_text()
    if case == "outside":
        x.write_text(t.replace("<xmax>", "<xmax>9", 1))  # 9NN px in a 64-px image
    elif case == "zero_area":
        xmin = int(re.search(r"<xmin>(\d+)</xmin>", t).group(1))  # VOC is 1-based: xmax = xmin - 1 is 0 wide
        x.write_text(re.sub(r"<xmax>\d+</xmax>", f"<xmax>{xmin - 1}</xmax>", t, count=1))
    elif case == "class_name":
        x.write_text(re.sub(r"<name>\w+</name>", "<name>dog</name>", t, count=1))
    elif case == "no_image":
        (root / "JPEGImages" / f"{x.stem}.png").unlink()
    elif case == "bad_image":
        (root / "JPEGImages" / f"{x.stem}.png").write_bytes(b"GIF89a garbage")
    elif case == "not_numeric":
        x.write_text(t.replace("<ymin>", "<ymin>ten", 1))
    elif case == "no_name":
        x.write_text(t.replace("<bndbox>", "<box>", 1).replace("</bndbox>", "</box>", 1))
    else:
        (root / "ImageSets" / "Main" / "train.txt").write_text("train_999\n")
    with pytest.raises(DataError) as e:
        load_detection(root)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_voc_images_without_annotation_are_counted_background(tmp_path, items):
    """Listed in an image set (or, without image sets, lying in JPEGImages) with no XML: a background image."""
    root = write_voc(tmp_path / "v", items)
    empty = sum(not lab for _, lab in items["train"] + items["val"])
    x = _voc_with_box(root)
    x.unlink()
    ds = load_detection(root)
    assert ds.info["background_images"] == empty + 1
    assert [r.n for r in ds.splits["train"] if r.path.endswith(f"{x.stem}.png")] == [0]
    import shutil

    shutil.rmtree(root / "ImageSets")
    ds = load_detection(root, seed=1)
    assert sum(len(v) for v in ds.splits.values()) == 16  # every image, held-out splits cut from them
    assert ds.info["background_images"] == empty + 1


def test_malformed_voc_size_is_counted_not_a_traceback(tmp_path, items):
    root = write_voc(tmp_path / "v", items)
    x = _voc_with_box(root)
    x.write_text(x.read_text().replace("<width>64</width>", "<width>sixty-four</width>"))
    ds = load_detection(root)
    assert ds.info["size_mismatch"] == 1
    assert all((r.width, r.height) == (64, 64) for r in ds.splits["train"])


def test_one_pixel_overhang_is_rounding_two_are_an_error(tmp_path, items):
    """x + width = image width + 1 is the off-by-one of a VOC -> COCO conversion: accepted and clipped; 2 px out is
    a box outside the image, said in pixels."""
    root = write_coco(tmp_path / "c", items)
    _coco_edit(root, "train", lambda d: _first_with_box(d).update(bbox=[40, 10, 25, 10]))  # to x = 65 in 64 px
    r = next(r for r in load_detection(root).splits["train"] if r.n)
    assert r.boxes.max() <= 1 and np.isclose(r.boxes[0, 2], 1.0)
    _coco_edit(root, "train", lambda d: _first_with_box(d).update(bbox=[40, 10, 26, 10]))
    with pytest.raises(DataError, match=r"box \[40.0, 10.0, 66.0, 20.0\] \(pixels x0,y0,x1,y1 in a 64x64 image\) "
                                        r"lies outside the image"):
        load_detection(root)
    v = write_voc(tmp_path / "v", items)
    x = _voc_with_box(v)
    x.write_text(re.sub(r"<xmax>\d+</xmax>", "<xmax>65</xmax>", x.read_text(), count=1))
    assert max(float(r.boxes.max(initial=0)) for r in load_detection(v).splits["train"]) <= 1


def test_coco_exports_of_other_tools(tmp_path, items):
    """CVAT: annotations/instances_default.json + images/ (one file: it is the training set, val and test are cut
    from it); file names with a folder in them, relative to the dataset folder."""
    import shutil

    root = write_coco(tmp_path / "c", {"train": items["train"]})
    (root / "train").rename(root / "images")
    (root / "annotations" / "instances_train.json").rename(root / "annotations" / "instances_default.json")
    ds = load_detection(root)
    assert sorted(ds.splits) == ["test", "train", "val"] and sum(len(v) for v in ds.splits.values()) == 12
    n_boxes = sum(len(lab) for _, lab in items["train"])
    assert sum(r.n for v in ds.splits.values() for r in v) == n_boxes
    shutil.move(root / "images", root / "pictures")

    def prefix(d):
        for im in d["images"]:
            im["file_name"] = "pictures/" + im["file_name"]

    _coco_edit(root, "default", prefix)
    assert sum(r.n for v in load_detection(root).splits.values() for r in v) == n_boxes


def test_a_folder_holding_one_dataset_is_that_dataset(tmp_path, items):
    """VOCdevkit/VOC2012 (two levels down) loads from VOCdevkit's parent; a folder holding two datasets names them."""
    from edgekit.data.detection import is_detection_data

    voc = write_voc(tmp_path / "dl" / "VOCdevkit" / "VOC2012", items)
    ds = load_detection(tmp_path / "dl")
    assert ds.layout == "voc" and ds.labels == NAMES and len(ds.splits["train"]) == 12
    assert is_detection_data(tmp_path / "dl") and is_detection_data(voc)
    write_coco(tmp_path / "dl" / "coco", items)
    with pytest.raises(DataError, match=r"holds 2 detection datasets \(.*VOC2012 \(voc\), .*coco \(coco\)\); give one"):
        load_detection(tmp_path / "dl")
    assert not is_detection_data(tmp_path / "dl")


def test_voc_xml_naming_another_image_file_is_not_a_background_image(tmp_path, items):
    """Without image sets, an image that an XML names through <filename> (not by its stem) carries that XML's boxes;
    only images no XML names are background images."""
    import shutil

    root = write_voc(tmp_path / "v", {"train": items["train"]})
    shutil.rmtree(root / "ImageSets")
    x = _voc_with_box(root)
    (root / "JPEGImages" / f"{x.stem}.png").rename(root / "JPEGImages" / "renamed.png")
    x.write_text(x.read_text().replace(f"<filename>{x.stem}.png</filename>", "<filename>renamed.png</filename>"))
    ds = load_detection(root)
    recs = [r for v in ds.splits.values() for r in v]
    assert len(recs) == 12
    assert ds.info.get("background_images", 0) == sum(not lab for _, lab in items["train"])
    assert [r.n for r in recs if r.path.endswith("renamed.png")] == [len(items["train"][int(x.stem[-3:])][1])]
