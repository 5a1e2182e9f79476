"""Object-detection datasets: YOLO, COCO JSON and Pascal VOC folders into one representation.

    ds = load_detection("path/to/data.yaml")       # or a COCO / VOC / YOLO folder, or "shapes" (built in)
    ds.labels, ds.splits["train"]                   # list of DetRecord
    x, recs = ds.images("val", 192)                 # uint8 [N, 192, 192, 3] (stretched), and the records

Boxes are stored normalized ``[x0, y0, x1, y1]`` in 0..1 of their image, so a resize to the model input
keeps them; ``ignore`` marks COCO ``iscrowd`` and VOC ``difficult`` boxes (not counted as misses,
not penalised as false positives by the COCO evaluator). Build side; NumPy, Pillow and PyYAML.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError

TASK = "detection"
LAYOUTS = ("yolo", "coco", "voc")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class DetRecord:
    """One image: where it is, its size, and its boxes (normalized xyxy), classes and ignore flags."""

    path: str
    width: int
    height: int
    boxes: np.ndarray  # float32 [n, 4]
    classes: np.ndarray  # int64 [n]
    ignore: np.ndarray  # bool [n]

    @property
    def n(self) -> int:
        return int(len(self.classes))


@dataclass
class DetectionSet:
    name: str
    labels: list
    splits: dict  # split -> list[DetRecord]
    layout: str = ""
    info: dict = field(default_factory=dict)  # warnings and counts found while loading
    task: str = TASK

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def images(self, split: str, size: int, limit: int | None = None) -> tuple[np.ndarray, list]:
        """The split's images as uint8 ``[N, size, size, 3]`` RGB (stretched to square), with their records."""
        if split not in self.splits:
            raise ConfigError(f"Unknown split {split!r} of detection set {self.name!r}. Available: "
                              f"{', '.join(self.splits)}")
        recs = self.splits[split][:limit] if limit else self.splits[split]
        out = np.zeros((len(recs), size, size, 3), np.uint8)
        for i, r in enumerate(recs):
            out[i] = read_rgb(r.path, size)
        return out, recs

    def describe(self) -> dict:
        """Images and boxes per split and class, background images, and a histogram of box sizes
        (the square root of the box area as a fraction of the image's)."""
        edges = [0, 0.05, 0.1, 0.2, 0.4, 0.6, 1.01]
        out = {"name": self.name, "task": self.task, "layout": self.layout, "classes": self.num_classes,
               "labels": list(self.labels), "splits": {}, **self.info}
        for s, recs in self.splits.items():
            cls = np.concatenate([r.classes for r in recs]) if recs else np.zeros(0, np.int64)
            sizes = np.concatenate([np.sqrt(np.clip((r.boxes[:, 2] - r.boxes[:, 0]) * (r.boxes[:, 3] - r.boxes[:, 1]),
                                                    0, None)) for r in recs]) if recs else np.zeros(0)
            hist, _ = np.histogram(sizes, bins=edges)
            out["splits"][s] = {"images": len(recs), "boxes": int(len(cls)),
                                "background_images": int(sum(r.n == 0 for r in recs)),
                                "boxes_per_class": np.bincount(cls, minlength=self.num_classes).tolist(),
                                "size_histogram": {f"{edges[i]:.2f}-{min(edges[i + 1], 1):.2f}": int(h)
                                                   for i, h in enumerate(hist)}}
        return out


def read_rgb(path: str, size: int | None = None) -> np.ndarray:
    """An image file as uint8 RGB (resized to ``size`` x ``size`` when given); a file that does not decode is a
    DataError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, np.uint8)
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"Can't decode image {path}: {e}") from None


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"Can't decode image {path}: {e}") from None


def _sized(path: Path, declared, info: dict) -> tuple[int, int]:
    """The image's real size (it decodes, or a clear error now rather than mid-training); a size the annotation
    declares that differs is counted (``size_mismatch``): boxes are in the pixels the file holds."""
    real = _image_size(path)
    try:
        if declared and all(declared) and tuple(int(float(v)) for v in declared) != real:
            info["size_mismatch"] = info.get("size_mismatch", 0) + 1
    except (TypeError, ValueError):
        info["size_mismatch"] = info.get("size_mismatch", 0) + 1
    return real


def _check_boxes(boxes: np.ndarray, where: str, tol: float = 1e-3, size: tuple | None = None) -> None:
    """Boxes must lie inside the image (normalized 0..1, a rounding tolerance) and have positive area. ``size``
    (w, h): the boxes came in pixels (COCO, VOC), so an overhang of up to 1 px is rounding (the off-by-one of
    converting between VOC's 1-based and COCO's 0-based pixels), and the message speaks in pixels."""
    if not len(boxes):
        return
    scale = np.array([size[0], size[1], size[0], size[1]], np.float64) if size else None
    lim = np.maximum(tol, 1.01 / scale) if size else tol
    bad_out = np.any((boxes < -lim) | (boxes > 1 + lim), axis=1)

    def show(b):
        if size:
            return f"{np.round(b * scale, 1).tolist()} (pixels x0,y0,x1,y1 in a {size[0]}x{size[1]} image)"
        return f"{np.round(b, 4).tolist()} (normalized x0,y0,x1,y1)"

    if bad_out.any():
        raise DataError(f"{where}: box {show(boxes[np.argmax(bad_out)])} lies outside the image; boxes must be "
                        f"within {'the image' if size else '0..1'}")
    bad_area = (boxes[:, 2] - boxes[:, 0] <= 0) | (boxes[:, 3] - boxes[:, 1] <= 0)
    if bad_area.any():
        raise DataError(f"{where}: box {show(boxes[np.argmax(bad_area)])} has zero area; boxes need width and "
                        f"height > 0")


def _check_class(c: int, n: int, where: str, names) -> None:
    if c < 0 or c >= n:
        raise DataError(f"{where}: class id {c} is beyond the {n} names ({', '.join(map(str, names[:6]))}"
                        f"{' ...' if n > 6 else ''}); ids go from 0 to {n - 1}")


def _record(path: Path, boxes, classes, ignore=None, size=None) -> DetRecord:
    w, h = size or _image_size(path)
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    c = np.asarray(classes, np.int64).reshape(-1)
    ig = np.zeros(len(c), bool) if ignore is None else np.asarray(ignore, bool).reshape(-1)
    return DetRecord(str(path), w, h, np.clip(b, 0, 1), c, ig)


# --- YOLO ------------------------------------------------------------------------------------------------
def _yolo_names(names) -> list:
    if isinstance(names, dict):
        keys = sorted(int(k) for k in names)
        if keys != list(range(len(keys))):
            raise DataError(f"data.yaml names must be numbered 0..{len(keys) - 1}; received ids {keys[:8]}")
        return [str(names[k] if k in names else names[str(k)]) for k in keys]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise DataError(f"data.yaml 'names' must be a list or a {{id: name}} mapping; received {names!r}")


def _yolo_split(img_dir: Path, names: list, info: dict) -> list:
    """images/ and the labels/ folder beside it (Ultralytics: replace the last 'images' with 'labels')."""
    if not img_dir.is_dir():
        raise DataError(f"YOLO image folder {img_dir} does not exist")
    parts = list(img_dir.parts)
    idx = max((i for i, p in enumerate(parts) if p == "images"), default=None)
    if idx is None:
        raise DataError(f"YOLO image folder {img_dir} has no 'images' in its path; its labels are looked up by "
                        f"replacing 'images' with 'labels'")
    lab_dir = Path(*parts[:idx], "labels", *parts[idx + 1:])
    imgs = sorted(p for p in img_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    stems = {p.relative_to(img_dir).with_suffix("") for p in imgs}
    if lab_dir.is_dir():
        orphans = sorted(p for p in lab_dir.rglob("*.txt") if p.relative_to(lab_dir).with_suffix("") not in stems)
        if orphans:
            raise DataError(f"Label file {orphans[0]} has no image in {img_dir} ({len(orphans)} such label files); "
                            f"remove them or add the images")
    recs = []
    for p in imgs:
        lf = lab_dir / p.relative_to(img_dir).with_suffix(".txt")
        boxes, classes = [], []
        if not lf.exists():
            info["background_images"] = info.get("background_images", 0) + 1
        else:
            for ln, line in enumerate(lf.read_text().splitlines(), 1):
                f = line.split()
                if not f:
                    continue
                where = f"{lf}:{ln}"
                if len(f) != 5:
                    raise DataError(f"{where}: expected 'class cx cy w h' (5 numbers); received {line.strip()!r}")
                try:
                    c, cx, cy, bw, bh = int(f[0]), *map(float, f[1:])
                except ValueError:
                    raise DataError(f"{where}: expected 'class cx cy w h' numbers; received {line.strip()!r}") from None
                _check_class(c, len(names), where, names)
                boxes.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
                classes.append(c)
            _check_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), str(lf))
            if not boxes:
                info["background_images"] = info.get("background_images", 0) + 1
        recs.append(_record(p, boxes, classes))
    return recs


def load_yolo(root: Path) -> DetectionSet:
    """An Ultralytics ``data.yaml`` (path, train, val, test, names), or a folder holding one."""
    import yaml

    y = root / "data.yaml" if root.is_dir() else root
    try:
        cfg = yaml.safe_load(y.read_text())
    except yaml.YAMLError as e:
        raise DataError(f"{y} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, dict) or "names" not in cfg or "train" not in cfg:
        raise DataError(f"{y} must hold at least 'train' and 'names' (Ultralytics data.yaml)")
    names = _yolo_names(cfg["names"])
    base = Path(cfg.get("path") or y.parent)
    if not base.is_absolute():
        base = (y.parent / base).resolve()
    info: dict = {}
    splits = {}
    for s in ("train", "val", "test"):
        if cfg.get(s):
            splits[s] = _yolo_split(base / str(cfg[s]), names, info)
    return DetectionSet(y.parent.name, names, splits, "yolo", info)


# --- COCO ------------------------------------------------------------------------------------------------
def _coco_entries(path: Path, d: dict, key: str, fields: dict) -> list:
    """``d[key]``'s entries, each a dict holding ``fields`` (name -> type) of that type: a malformed entry is a
    DataError naming the file, the list and the entry, not a KeyError deep in the loader."""
    out = []
    for n, e in enumerate(d[key]):
        if not isinstance(e, dict):
            raise DataError(f"{path}: {key}[{n}] must be an object; received {str(e)[:60]!r}")
        for f, typ in fields.items():
            v = e.get(f)
            ok = (isinstance(v, list) and len(v) == 4 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                               for x in v)) if typ is list else \
                isinstance(v, typ) and not isinstance(v, bool)
            if not ok:
                want = "4 numbers [x, y, width, height]" if typ is list else \
                    {int: "an integer", str: "a string"}[typ]
                raise DataError(f"{path}: {key}[{n}] (id {e.get('id')}) needs '{f}' as {want}; received {v!r}")
        out.append(e)
    return out


def _coco_file(path: Path, img_root: Path | None, info: dict):
    try:
        d = json.loads(path.read_text())
    except ValueError as e:
        raise DataError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: a COCO file is an object with 'images', 'annotations' and 'categories'; received "
                        f"a {type(d).__name__}")
    for k in ("images", "annotations", "categories"):
        if not isinstance(d.get(k), list):
            raise DataError(f"{path}: a COCO file needs a '{k}' list")
    cats = sorted(_coco_entries(path, d, "categories", {"id": int, "name": str}), key=lambda c: c["id"])
    ids = [c["id"] for c in cats]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: category id {next(i for i in ids if ids.count(i) > 1)} appears twice in 'categories'")
    images = {}
    for im in _coco_entries(path, d, "images", {"id": int, "file_name": str}):
        if im["id"] in images:
            raise DataError(f"{path}: image id {im['id']} appears twice in 'images' ({images[im['id']]['file_name']}, "
                            f"{im['file_name']})")
        images[im["id"]] = im
    anns: dict = {}
    for a in _coco_entries(path, d, "annotations", {"image_id": int, "category_id": int, "bbox": list}):
        iid = a["image_id"]
        if iid not in images:
            raise DataError(f"{path}: annotation {a.get('id')} refers to image id {iid}, which is not in 'images'")
        anns.setdefault(iid, []).append(a)
    if img_root is None:
        stem = path.stem.replace("instances_", "")
        cand = [path.parent.parent / stem, path.parent / stem, path.parent.parent / "images" / stem,
                path.parent / "images", path.parent.parent / "images", path.parent]
        img_root = next((c for c in cand if c.is_dir()), path.parent)
    return cats, images, anns, img_root


COCO_SPLITS = {"validation": "val", "valid": "val", "val2017": "val", "val2014": "val", "train2017": "train",
               "train2014": "train", "trainval": "train", "test2017": "test"}


def load_coco(root: Path) -> DetectionSet:
    """``annotations/instances_<split>.json`` with images in ``<split>/`` (or ``images/<split>/``); or one
    ``instances_*.json`` file. Category ids may have gaps: they map to 0..n-1 in id order."""
    files = [root] if root.is_file() else sorted((root / "annotations").glob("instances_*.json")) or \
        sorted(root.glob("instances_*.json"))
    if not files:
        raise DataError(f"No instances_*.json under {root} (COCO layout: annotations/instances_train.json ...)")
    info: dict = {}
    names, cat_index, splits = None, None, {}
    for f in files:
        cats, images, anns, img_root = _coco_file(f, None, info)
        these = [str(c["name"]) for c in cats]
        if names is None:
            names, cat_index = these, {int(c["id"]): i for i, c in enumerate(cats)}
        elif these != names:
            raise DataError(f"{f}: categories {these[:6]} differ from {files[0].name}'s {names[:6]}")
        recs = []
        for iid, im in sorted(images.items()):
            # file_name relative to the image folder, or (with folders in it) to the dataset or annotation folder
            p = next((b / im["file_name"] for b in (img_root, f.parent.parent, f.parent)
                      if (b / im["file_name"]).is_file()), img_root / im["file_name"])
            if not p.exists():
                raise DataError(f"{f}: image {im['file_name']} (id {iid}) not found in {img_root}")
            w, h = _sized(p, (im.get("width"), im.get("height")), info)
            boxes, classes, ignore = [], [], []
            for a in anns.get(iid, []):
                where = f"{f.name} annotation {a.get('id')}"
                cid = a["category_id"]
                if cid not in cat_index:
                    raise DataError(f"{where}: category id {cid} is not among the categories "
                                    f"({', '.join(map(str, sorted(cat_index)))})")
                x, y, bw, bh = map(float, a["bbox"])
                boxes.append([x / w, y / h, (x + bw) / w, (y + bh) / h])
                classes.append(cat_index[cid])
                ignore.append(bool(a.get("iscrowd", 0)))
            _check_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), f"{f.name} image {im['file_name']}",
                         size=(w, h))
            if not boxes:
                info["background_images"] = info.get("background_images", 0) + 1
            recs.append(_record(p, boxes, classes, ignore, (w, h)))
        s = f.stem.replace("instances_", "")
        splits[COCO_SPLITS.get(s, s)] = recs
    if "train" not in splits and len(splits) == 1:  # one file of another name (CVAT's instances_default.json)
        splits = {"train": next(iter(splits.values()))}
    return DetectionSet(root.name, names, splits, "coco", info)


# --- Pascal VOC ------------------------------------------------------------------------------------------
def _voc_xml(path: Path):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"VOC annotation {path} does not parse: {e}") from None
    out = []
    for o in root.findall("object"):
        bb = o.find("bndbox")
        name = (o.findtext("name") or "").strip()
        if bb is None or not name:
            raise DataError(f"VOC annotation {path}: an <object> without <name> or <bndbox>")
        try:
            xyxy = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            raise DataError(f"VOC annotation {path}: object {name!r} has a bndbox without numeric "
                            f"xmin/ymin/xmax/ymax") from None
        out.append((name, xyxy, (o.findtext("difficult") or "0").strip() == "1"))
    size = root.find("size")
    wh = None if size is None else (size.findtext("width"), size.findtext("height"))
    fname = (root.findtext("filename") or "").strip()
    return out, wh, fname


def load_voc(root: Path, names: list | None = None) -> DetectionSet:
    """``Annotations/*.xml`` + ``JPEGImages/`` + ``ImageSets/Main/{train,val,test,trainval}.txt``; classes are
    ``names``, else ``labels.txt`` (one a line), else the object names found (sorted). VOC pixels are 1-based."""
    ann, img = root / "Annotations", root / "JPEGImages"
    if not ann.is_dir() or not img.is_dir():
        raise DataError(f"{root} is not a Pascal VOC folder: expected Annotations/ and JPEGImages/")
    sets = root / "ImageSets" / "Main"
    ids: dict = {}
    for s in ("train", "val", "test"):
        f = sets / f"{s}.txt"
        if f.exists():
            ids[s] = [ln.split()[0] for ln in f.read_text().splitlines() if ln.strip()]
    if "train" not in ids and (sets / "trainval.txt").exists():
        ids["train"] = [ln.split()[0] for ln in (sets / "trainval.txt").read_text().splitlines() if ln.strip()]
    xmls = {p.stem: p for p in ann.glob("*.xml")}
    by_stem = {p.stem: p for p in img.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    no_sets = not ids
    if no_sets:  # no image sets: every annotation, and (below) every image that none names (a background image)
        ids = {"train": sorted(xmls)}
    parsed = {}
    for s, lst in ids.items():
        for i in lst:
            if i in xmls:
                parsed[i] = _voc_xml(xmls[i])
            elif i in by_stem:  # an image without an annotation: a background image
                parsed[i] = ([], None, "")
            else:
                raise DataError(f"{sets / (s + '.txt')} lists {i!r} but neither {ann / (i + '.xml')} nor an image "
                                f"{i}.* in {img} exists")
    if no_sets:
        named = {(img / fn if fn and (img / fn).exists() else by_stem.get(i, Path(i))).stem
                 for i, (_, _, fn) in parsed.items()}
        extra = sorted(set(by_stem) - named)
        parsed.update({i: ([], None, "") for i in extra})
        ids["train"] += extra
    if not names and (root / "labels.txt").exists():  # jetson-inference's VOC folders name their classes here
        names = [ln.strip() for ln in (root / "labels.txt").read_text().splitlines() if ln.strip()]
    labels = list(names) if names else sorted({o[0] for objs, _, _ in parsed.values() for o in objs})
    if not labels:
        raise DataError(f"{root}: no objects in any annotation")
    index = {n: k for k, n in enumerate(labels)}
    info: dict = {}
    splits = {}
    for s, lst in ids.items():
        recs = []
        for i in lst:
            objs, wh, fname = parsed[i]
            p = img / fname if fname and (img / fname).exists() else by_stem.get(i)
            if p is None:
                raise DataError(f"{xmls[i]} has no image in {img} ({fname or i + '.jpg'})")
            w, h = _sized(p, wh, info)
            boxes, classes, ignore = [], [], []
            for name, (x0, y0, x1, y1), diff in objs:
                if name not in index:
                    raise DataError(f"{xmls[i]}: class {name!r} is not among the names ({', '.join(labels[:6])})")
                boxes.append([(x0 - 1) / w, (y0 - 1) / h, x1 / w, y1 / h])
                classes.append(index[name])
                ignore.append(diff)
            _check_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), str(xmls.get(i, p)), size=(w, h))
            if not boxes:
                info["background_images"] = info.get("background_images", 0) + 1
            recs.append(_record(p, boxes, classes, ignore, (w, h)))
        splits[s] = recs
    return DetectionSet(root.name, labels, splits, "voc", info)


# --- entry -----------------------------------------------------------------------------------------------
def detect_layout(p: Path) -> str | None:
    """yolo, coco or voc when ``p`` looks like one; None otherwise."""
    if p.is_file():
        if p.suffix in (".yaml", ".yml"):
            return "yolo"
        if p.suffix == ".json":
            return "coco"
        return None
    if (p / "data.yaml").exists():
        return "yolo"
    if (p / "annotations").is_dir() and any((p / "annotations").glob("instances_*.json")) or any(p.glob("instances_*.json")):
        return "coco"
    if (p / "Annotations").is_dir() and (p / "JPEGImages").is_dir():
        return "voc"
    return None


def split_off(ds: DetectionSet, seed: int = 0, val: float = 0.15, test: float = 0.15) -> DetectionSet:
    """A set with only a train split gets val (and test) cut from it, seeded; a set with train and test but no
    val gets val cut from train."""
    if "train" not in ds.splits or not ds.splits["train"]:
        raise DataError(f"Detection set {ds.name!r} has no training images (splits: {', '.join(ds.splits) or 'none'})")
    if "val" in ds.splits and ds.splits["val"]:
        return ds
    recs = ds.splits["train"]
    order = np.random.default_rng(seed).permutation(len(recs))
    need_test = "test" not in ds.splits
    nv = max(1, int(round(val * len(recs))))
    nt = max(1, int(round(test * len(recs)))) if need_test else 0
    if len(recs) < nv + nt + 1:
        raise DataError(f"Detection set {ds.name!r} has {len(recs)} training images: too few to hold some out")
    splits = dict(ds.splits)
    splits["val"] = [recs[i] for i in sorted(order[:nv])]
    if need_test:
        splits["test"] = [recs[i] for i in sorted(order[nv:nv + nt])]
    splits["train"] = [recs[i] for i in sorted(order[nv + nt:])]
    return DetectionSet(ds.name, ds.labels, splits, ds.layout, dict(ds.info, held_out_from_train=True))


def _datasets_in(p: Path) -> list:
    """``(folder, layout)`` of each dataset folder one or two levels below ``p`` (VOCdevkit/VOC2012, the top folder
    of an unpacked archive)."""
    def subdirs(d):
        try:
            return [c for c in sorted(d.iterdir()) if c.is_dir() and not c.name.startswith(".")]
        except OSError:
            return []

    found = []
    for c in subdirs(p):
        lay = detect_layout(c)
        found += [(c, lay)] if lay else [(g, detect_layout(g)) for g in subdirs(c) if detect_layout(g)]
    return found


def find_layout(p: Path) -> tuple[Path, str | None]:
    """``p`` and its layout; a folder that is no dataset but holds exactly one (one or two levels down) gives that."""
    lay = detect_layout(p)
    if lay or not p.is_dir():
        return p, lay
    found = _datasets_in(p)
    return found[0] if len(found) == 1 else (p, None)


def is_detection_data(name_or_path) -> bool:
    """A built-in detection set name, or a folder/file in YOLO, COCO or VOC layout (or holding one such folder)."""
    from .shapes import BUILTIN

    s = str(name_or_path)
    return s in BUILTIN or (Path(s).exists() and find_layout(Path(s))[1] is not None)


def load_detection(name_or_path: str | os.PathLike, *, seed: int = 0, layout: str | None = None) -> DetectionSet:
    """A built-in detection set (``shapes``) or a YOLO / COCO / VOC folder, with train, val and test splits."""
    from .shapes import BUILTIN, shapes_folder

    s = str(name_or_path)
    if s in BUILTIN:
        ds = load_yolo(shapes_folder(**BUILTIN[s]))
        ds.name = s
        return ds
    p = Path(s)
    if not p.exists():
        raise DataError(f"Detection data {s} does not exist: give a YOLO data.yaml, a COCO or VOC folder, or one of "
                        f"{', '.join(BUILTIN)}")
    if layout:
        lay = layout
    else:
        p, lay = find_layout(p)
        several = _datasets_in(p) if lay is None and p.is_dir() else []
        if len(several) > 1:
            named = ", ".join(f"{d} ({k})" for d, k in several[:4])
            raise DataError(f"{p} holds {len(several)} detection datasets ({named}{' ...' if len(several) > 4 else ''}); "
                            f"give one of them")
    if lay not in LAYOUTS:
        raise DataError(f"{p} is not a detection dataset: expected a YOLO data.yaml, a COCO folder "
                        f"(annotations/instances_*.json) or a VOC folder (Annotations/, JPEGImages/)")
    ds = {"yolo": load_yolo, "coco": load_coco, "voc": load_voc}[lay](p)
    return split_off(ds, seed)


def describe_builtin() -> list[dict]:
    """The built-in detection sets, as rows of ``edgekit data list``."""
    from .shapes import BUILTIN, CLASSES

    return [{"name": n, "task": TASK, "source": "offline",
             "description": f"{len(CLASSES)} shapes ({', '.join(CLASSES)}) on photographs, 0-10 an image, "
                            f"{o['n_train']}/{o['n_val']}/{o['n_test']} images at {o['size']} px (generated)"}
            for n, o in BUILTIN.items()]


def info_cli(dataset, options: dict, json_path) -> DetectionSet:
    """``edgekit data info`` for a detection set: images, boxes per class and a box-size histogram per split."""
    from ..commands._common import emit

    unknown = sorted(set(options) - {"seed", "layout"})
    if unknown:
        raise ConfigError(f"Detection data has no option(s) {', '.join(unknown)}. Options: layout, seed")
    ds = load_detection(dataset, **options)
    d = ds.describe()
    rows = [{"label": str(lab), **{s: v["boxes_per_class"][i] for s, v in d["splits"].items()}}
            for i, lab in enumerate(ds.labels)]
    rows.append({"label": "(images)", **{s: v["images"] for s, v in d["splits"].items()}})
    rows.append({"label": "(background images)", **{s: v["background_images"] for s, v in d["splits"].items()}})
    for b in next(iter(d["splits"].values()))["size_histogram"]:
        rows.append({"label": f"(box size {b})", **{s: v["size_histogram"][b] for s, v in d["splits"].items()}})
    emit(rows, json_path, title=f"{ds.name}: detection ({ds.layout}), {ds.num_classes} classes; boxes per class and "
                                f"split, box size = sqrt(box area / image area)", payload=d)
    return ds
