"""Tiny detection folders in the three layouts users bring (YOLO, COCO, VOC), written from one list of images and
boxes, and one tiny trained detector for the session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

NAMES = ["disc", "square", "triangle", "cross"]


def make_items(n: int, size: int = 64, seed: int = 0):
    """``n`` (uint8 RGB image, [(class, x0, y0, x1, y1) pixels]) drawn by the built-in generator."""
    from edgekit.data.shapes import _backgrounds, make_image

    rng = np.random.default_rng(seed)
    photos = _backgrounds()
    return [make_image(rng, photos, size) for _ in range(n)]


def _save(img, path: Path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def write_yolo(root: Path, splits: dict, names=NAMES) -> Path:
    import yaml

    for split, items in splits.items():
        for i, (img, labels) in enumerate(items):
            h, w = img.shape[:2]
            _save(img, root / "images" / split / f"{i:03d}.png")
            if labels:
                lf = root / "labels" / split / f"{i:03d}.txt"
                lf.parent.mkdir(parents=True, exist_ok=True)
                lf.write_text("".join(f"{c} {(x0 + x1) / 2 / w} {(y0 + y1) / 2 / h} {(x1 - x0) / w} {(y1 - y0) / h}\n"
                                      for c, x0, y0, x1, y1 in labels))
    (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", **{s: f"images/{s}" for s in splits},
                                                    "names": list(names)}))
    return root


def write_coco(root: Path, splits: dict, names=NAMES, cat_ids=(1, 3, 7, 12)) -> Path:
    """Category ids with gaps on purpose."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        images, anns = [], []
        for i, (img, labels) in enumerate(items):
            h, w = img.shape[:2]
            _save(img, root / split / f"{i:03d}.png")
            images.append({"id": 100 + i, "file_name": f"{i:03d}.png", "width": w, "height": h})
            for c, x0, y0, x1, y1 in labels:
                anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": cat_ids[c],
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        cats = [{"id": cid, "name": n} for cid, n in zip(cat_ids, names)]
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": anns, "categories": cats}))
    return root


def write_voc(root: Path, splits: dict, names=NAMES) -> Path:
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        ids = []
        for i, (img, labels) in enumerate(items):
            h, w = img.shape[:2]
            stem = f"{split}_{i:03d}"
            ids.append(stem)
            _save(img, root / "JPEGImages" / f"{stem}.png")
            objs = "".join(f"<object><name>{names[c]}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin>"
                           f"<ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                           for c, x0, y0, x1, y1 in labels)
            (root / "Annotations" / f"{stem}.xml").write_text(
                f"<annotation><filename>{stem}.png</filename><size><width>{w}</width><height>{h}</height>"
                f"<depth>3</depth></size>{objs}</annotation>")
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (root / "labels.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture(scope="session")
def items():
    return {"train": make_items(12, seed=1), "val": make_items(4, seed=2)}


@pytest.fixture(scope="session")
def tiny_yolo(tmp_path_factory, items):
    return write_yolo(tmp_path_factory.mktemp("yolo"), items)


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory):
    """A CenterNet detector trained for one short epoch on a 96-px YOLO folder, its score threshold lowered so
    that it draws boxes (an untrained heatmap sits under the default 0.3), plus the folder."""
    from edgekit.artifact import read_meta, write_meta
    from edgekit.train_detect import train_detector

    root = write_yolo(tmp_path_factory.mktemp("yolo96"), {"train": make_items(24, 96, seed=3),
                                                         "val": make_items(8, 96, seed=4)})
    out = tmp_path_factory.mktemp("run") / "det"
    r = train_detector("centernet_mnv2", str(root), epochs=1, out_dir=out, batch_size=8, input_size=96,
                       model_options={"width": 16}, quiet=True)
    meta = read_meta(r.model_path)
    meta.extra["postprocess"]["score_threshold"] = 0.12
    write_meta(r.model_path, meta)
    return r, root
