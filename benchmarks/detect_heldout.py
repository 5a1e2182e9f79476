"""A held-out detection set unlike the built-in ``shapes``, written in COCO and in Pascal VOC layout, then the default
``edgekit train`` and ``edgekit eval`` on each layout: the issue-22 goal "a folder you have not seen: mAP@.5 >= 0.80".

    python benchmarks/detect_heldout.py                                  # 400/100/200 images, default epochs
    python benchmarks/detect_heldout.py --model centernet_lite0 --seeds 0,1,2 --json runs/heldout.json
    python benchmarks/detect_heldout.py --generate-only --out runs/heldout   # just write the two folders

The objects are real ones cut from scikit-image's sample photographs (Chelsea the cat's head, the coffee cup on
its saucer, the rocket on its pad, the astronaut's face and 100 LFW faces, 23 coins segmented out of ``coins``),
pasted with scale, aspect, rotation, flip and colour variation on crops of other sample photographs (brick,
grass, gravel, moon, Hubble deep field, retina, cells, the cameraman, a printed page, the stereo motorcycle)
that scikit-learn's two photos (the built-in set's backgrounds) are not among. Patches of those photographs are
pasted as distractors that are not objects; a quarter of the objects may run off the frame (VOC ``truncated``).
Later pastes occlude earlier ones; a box is the visible extent, an object less than 45 % visible is
``difficult`` (VOC) / ``iscrowd`` (COCO), one under 10 % visible is dropped; a few images hold a heap of small
coins annotated as one crowd box. Coins and LFW faces are split by instance, so
no test object was seen in training.

COCO: ``annotations/instances_{train,val,test}.json`` + ``{train,val,test}/*.jpg``, category ids with gaps.
VOC: ``Annotations/*.xml``, ``JPEGImages/*.jpg``, ``ImageSets/Main/{train,val,test}.txt`` (no labels.txt: the
classes are the object names, sorted, which is the COCO id order too). Both folders are written under a
temporary name and renamed when complete; the same seed writes the same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CLASSES = ("cat", "coin", "cup", "face", "rocket")  # sorted: VOC's name order is COCO's id order
CATEGORY_IDS = (2, 5, 9, 11, 17)  # gaps on purpose
FRAMES = ((320, 240), (240, 320), (288, 288), (352, 256), (256, 352))
SPLITS = {"train": 400, "val": 100, "test": 200}
MIN_VISIBLE, DIFFICULT_BELOW = 0.10, 0.45
TRUNCATED_SHARE, TRUNCATE = 0.25, 0.35  # a quarter of the objects may run off the frame, by up to 35 % a side
VERSION = 2


# --- sources --------------------------------------------------------------------------------------------
def _ellipse(h, w, power=2.0, soft=0.04):
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.abs((xx + 0.5) / w * 2 - 1) ** power + np.abs((yy + 0.5) / h * 2 - 1) ** power
    return np.clip((1 - r) / soft, 0, 1).astype(np.float32)


def _rgb(gray, tint):
    g = gray.astype(np.float32)
    return np.clip(g[..., None] * np.asarray(tint, np.float32)[None, None], 0, 255).astype(np.uint8)


def sources():
    """Per class, a list of (uint8 RGB patch, float mask 0..1) pairs, each with a 'split' tag: 'all' for the
    one-instance objects, 'train'/'test' for coins and LFW faces (split by instance); and the background and
    distractor photographs."""
    from scipy import ndimage as ndi
    from skimage import data
    from skimage.filters import threshold_otsu

    objs = {c: [] for c in CLASSES}
    cat = data.chelsea()[0:300, 20:400]
    objs["cat"].append((cat, _ellipse(*cat.shape[:2]), "all"))
    cup = data.coffee()[10:395, 75:490]
    objs["cup"].append((cup, _ellipse(*cup.shape[:2], power=2.2), "all"))
    rocket = data.rocket()[118:402, 305:342]
    objs["rocket"].append((rocket, _ellipse(*rocket.shape[:2], power=6, soft=0.1), "all"))
    face = data.astronaut()[16:165, 135:260]
    objs["face"].append((face, _ellipse(*face.shape[:2]), "all"))
    lfw = data.lfw_subset()[:100]  # the first 100 are faces, the rest are not
    for i, f in enumerate(lfw):
        g = np.asarray(f * 255, np.float32)
        objs["face"].append((_rgb(g, (1.05, 0.85, 0.72)), _ellipse(25, 25, soft=0.15), "train" if i % 3 else "test"))
    coins = data.coins()
    m = coins > threshold_otsu(coins)
    m = ndi.binary_fill_holes(ndi.binary_opening(m, iterations=2))
    lab, _ = ndi.label(m)
    k = 0
    for i, sl in enumerate(ndi.find_objects(lab)):
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        mask = (lab[sl] == i + 1).astype(np.float32)
        if mask.sum() < 800 or not 0.8 < h / w < 1.25:
            continue
        mask = ndi.gaussian_filter(mask, 0.7)
        objs["coin"].append((coins[sl], mask, "train" if k % 4 else "test"))
        k += 1
    stereo = data.stereo_motorcycle()[0]
    backgrounds = [data.brick(), data.grass(), data.gravel(), data.moon(), data.hubble_deep_field(),
                   data.retina()[300:1100, 300:1100], data.cell(), data.camera(), data.page(), stereo]
    distractors = [data.text(), data.camera()[60:300, 180:380], data.hubble_deep_field()[100:500, 300:700],
                   data.retina()[500:900, 500:900], data.cell()[100:400, 100:400], stereo[150:450, 200:600],
                   data.logo()[..., :3], data.horse().astype(np.uint8) * 200 + 30]
    return objs, backgrounds, distractors


# --- one image ------------------------------------------------------------------------------------------
def _as_rgb(a, rng):
    if a.ndim == 2:
        tint = rng.uniform(0.6, 1.15, 3)
        return _rgb(a, tint)
    return a[..., :3]


def _colour(a, rng):
    x = a.astype(np.float32) * rng.uniform(0.7, 1.25) * rng.uniform(0.85, 1.15, 3)[None, None]
    x = (x - 128) * rng.uniform(0.75, 1.2) + 128 + rng.uniform(-20, 20)
    return np.clip(x, 0, 255).astype(np.uint8)


def _background(rng, backgrounds, w, h):
    from PIL import Image

    src = _as_rgb(backgrounds[rng.integers(len(backgrounds))], rng)
    sh, sw = src.shape[:2]
    s = rng.uniform(0.35, 1.0)
    cw, ch = max(16, int(sw * s)), max(16, int(sh * s))
    x0, y0 = rng.integers(0, sw - cw + 1), rng.integers(0, sh - ch + 1)
    im = Image.fromarray(src[y0:y0 + ch, x0:x0 + cw]).resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    return _colour(np.asarray(im), rng).astype(np.float32)


def _transform(patch, mask, rng, side, angle_max=20.0):
    """The patch scaled so that sqrt(w*h) = ``side`` px (aspect jittered), flipped, rotated; RGB and mask."""
    from PIL import Image

    h, w = mask.shape
    aspect = (w / h) * rng.uniform(0.8, 1.25)
    nw, nh = max(4, int(round(side * np.sqrt(aspect)))), max(4, int(round(side / np.sqrt(aspect))))
    im = Image.fromarray(patch).resize((nw, nh), Image.BILINEAR)
    mk = Image.fromarray((mask * 255).astype(np.uint8)).resize((nw, nh), Image.BILINEAR)
    if rng.random() < 0.5:
        im, mk = im.transpose(Image.FLIP_LEFT_RIGHT), mk.transpose(Image.FLIP_LEFT_RIGHT)
    ang = float(rng.uniform(-angle_max, angle_max))
    if abs(ang) > 1:
        im = im.rotate(ang, Image.BILINEAR, expand=True)
        mk = mk.rotate(ang, Image.BILINEAR, expand=True)
    return np.asarray(im, np.float32), np.asarray(mk, np.float32) / 255.0


def make_image(rng, objs, backgrounds, distractors, split, frame=None, max_objects=8):
    """(uint8 RGB image, [(class, x0, y0, x1, y1, ignore, truncated)] in integer pixels, x1/y1 exclusive)."""
    w, h = frame or FRAMES[rng.integers(len(FRAMES))]
    canvas = _background(rng, backgrounds, w, h)
    owner = np.full((h, w), -1, np.int32)  # which pasted object is on top at each pixel
    placed = []  # (class or None for a distractor, full mask area in px, a crowd box, runs off the frame)
    diag = np.sqrt(w * h)
    n = int(rng.integers(0, max_objects + 1))
    items = [("obj", int(rng.integers(len(CLASSES)))) for _ in range(n)]
    items += [("distractor", int(rng.integers(len(distractors)))) for _ in range(int(rng.integers(0, 3)))]
    if rng.random() < 0.06:
        items.append(("crowd", 1))
    rng.shuffle(items)
    for kind, k in items:
        if kind == "crowd":
            _paste_crowd(rng, canvas, owner, placed, objs, split, w, h)
            continue
        if kind == "distractor":
            patch = _as_rgb(distractors[k], rng)
            ph, pw = patch.shape[:2]
            s = rng.uniform(0.1, 0.4) * diag
            cy, cx = rng.integers(0, ph - min(ph, 64) + 1), rng.integers(0, pw - min(pw, 64) + 1)
            patch = patch[cy:cy + max(64, ph // 2), cx:cx + max(64, pw // 2)]
            mask = _ellipse(*patch.shape[:2], power=float(rng.choice([2.0, 8.0])), soft=0.05)
            label = None
        else:
            pool = [p for p in objs[CLASSES[k]] if p[2] in ("all", "test" if split == "test" else "train")]
            patch, mask, _ = pool[rng.integers(len(pool))]
            s = np.exp(rng.uniform(np.log(0.08), np.log(0.5))) * diag
            label = k
        rgb, m = _transform(_colour(_as_rgb(patch, rng), rng), mask, rng, s)
        ph, pw = m.shape
        if pw >= w or ph >= h:
            continue
        cut = TRUNCATE if label is not None and rng.random() < TRUNCATED_SHARE else 0.0  # runs off the frame
        x0 = int(rng.integers(-int(cut * pw), w - pw + int(cut * pw) + 1))
        y0 = int(rng.integers(-int(cut * ph), h - ph + int(cut * ph) + 1))
        _blend(canvas, owner, rgb, m, x0, y0, len(placed))
        placed.append((label, float((m > 0.5).sum()), False, x0 < 0 or y0 < 0 or x0 + pw > w or y0 + ph > h))
    labels = []
    for idx, (c, area, crowd, truncated) in enumerate(placed):
        if c is None or area < 1:
            continue
        ys, xs = np.nonzero(owner == idx)
        if len(xs) < MIN_VISIBLE * area:
            continue
        vis = len(xs) / area
        labels.append((c, int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1,
                       bool(crowd or vis < DIFFICULT_BELOW), bool(truncated)))
    img = np.clip(canvas + rng.normal(0, rng.uniform(0, 6), canvas.shape), 0, 255).astype(np.uint8)
    return img, labels


def _blend(canvas, owner, rgb, m, x0, y0, idx):
    """Paste ``rgb`` through mask ``m`` at (x0, y0), clipped to the frame; its pixels now belong to ``idx``."""
    h, w = owner.shape
    ph, pw = m.shape
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + pw, w), min(y0 + ph, h)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    mm, rr = m[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0], rgb[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    sub = canvas[ay0:ay1, ax0:ax1]
    sub[:] = sub * (1 - mm[..., None]) + rr * mm[..., None]
    owner[ay0:ay1, ax0:ax1][mm > 0.5] = idx


def _paste_crowd(rng, canvas, owner, placed, objs, split, w, h):
    """A heap of 5-9 small overlapping coins, annotated as one crowd (iscrowd / difficult) box."""
    pool = [p for p in objs["coin"] if p[2] in ("all", "test" if split == "test" else "train")]
    side = np.sqrt(w * h) * rng.uniform(0.06, 0.1)
    rw, rh = int(side * 3), int(side * 2.5)
    cx0, cy0 = int(rng.integers(0, w - rw)), int(rng.integers(0, h - rh))
    idx = len(placed)
    area = 0.0
    for _ in range(int(rng.integers(5, 10))):
        patch, mask, _ = pool[rng.integers(len(pool))]
        rgb, m = _transform(_colour(_as_rgb(patch, rng), rng), mask, rng, side * rng.uniform(0.8, 1.2))
        ph, pw = m.shape
        x0 = cx0 + int(rng.integers(0, max(1, rw - pw)))
        y0 = cy0 + int(rng.integers(0, max(1, rh - ph)))
        if x0 + pw > w or y0 + ph > h:
            continue
        _blend(canvas, owner, rgb, m, x0, y0, idx)
        area += float((m > 0.5).sum())
    placed.append((CLASSES.index("coin"), area * 0.6, True, False))  # overlap: the union is smaller than the sum


# --- writing --------------------------------------------------------------------------------------------
def _jpeg(img) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _voc_xml(stem, w, h, labels) -> str:
    objs = "".join(
        f"  <object>\n    <name>{CLASSES[c]}</name>\n    <pose>Unspecified</pose>\n"
        f"    <truncated>{int(tr)}</truncated>\n"
        f"    <difficult>{int(ig)}</difficult>\n    <bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>\n  </object>\n"
        for c, x0, y0, x1, y1, ig, tr in labels)
    return (f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{stem}.jpg</filename>\n"
            f"  <source><database>edgekit held-out</database></source>\n"
            f"  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>\n"
            f"  <segmented>0</segmented>\n{objs}</annotation>\n")


def generate(out, *, seed: int = 0, splits: dict | None = None, overwrite: bool = False, quiet: bool = False) -> dict:
    """Write ``out/coco`` and ``out/voc`` (the same images and boxes) for ``seed`` and ``splits`` (name -> images);
    returns the manifest. Folders already written for the same settings are kept as they are."""
    splits = dict(splits or SPLITS)
    out = Path(out)
    manifest = {"version": VERSION, "seed": seed, "splits": splits, "classes": list(CLASSES),
                "category_ids": list(CATEGORY_IDS)}
    dirs = {"coco": out / "coco", "voc": out / "voc"}
    if all((d / "manifest.json").exists() for d in dirs.values()):
        old = [json.loads((d / "manifest.json").read_text()) for d in dirs.values()]
        if all({k: o.get(k) for k in manifest} == manifest for o in old):
            return old[0]
    for d in dirs.values():
        if d.exists() and not overwrite:
            raise SystemExit(f"{d} exists with other settings (or without its COCO/VOC twin); pass --overwrite or "
                             f"another --out")
    out.mkdir(parents=True, exist_ok=True)
    work = {k: out / f".{k}.partial" for k in dirs}
    for d in work.values():
        shutil.rmtree(d, ignore_errors=True)
    coco, voc = work["coco"], work["voc"]
    (coco / "annotations").mkdir(parents=True)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    objs, backgrounds, distractors = sources()
    rng = np.random.default_rng(seed)
    cats = [{"id": cid, "name": n, "supercategory": "object"} for cid, n in zip(CATEGORY_IDS, CLASSES)]
    counts = {}
    t0, serial = time.time(), 0
    for split, n in splits.items():
        (coco / split).mkdir()
        images, anns, ids = [], [], []
        srng = np.random.default_rng([seed, list(SPLITS).index(split) if split in SPLITS else len(split)])
        for i in range(n):
            img, labels = make_image(srng, objs, backgrounds, distractors, split)
            h, w = img.shape[:2]
            stem = f"{2026_000000 + serial:010d}"
            serial += 1
            blob = _jpeg(img)
            (coco / split / f"{stem}.jpg").write_bytes(blob)
            (voc / "JPEGImages" / f"{stem}.jpg").write_bytes(blob)
            image_id = 10 * serial + 3  # not 0..n-1: a loader must join on ids
            images.append({"id": image_id, "file_name": f"{stem}.jpg", "width": w, "height": h})
            for c, x0, y0, x1, y1, ig, _ in labels:
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": CATEGORY_IDS[c],
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": int(ig),
                             "segmentation": []})
            (voc / "Annotations" / f"{stem}.xml").write_text(_voc_xml(stem, w, h, labels))
            ids.append(stem)
            if not quiet and serial % 100 == 0:
                print(f"  {serial} images ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        (coco / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"info": {"description": "edgekit held-out detection set", "version": VERSION, "seed": seed},
             "licenses": [], "images": images, "annotations": anns, "categories": cats}))
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(s + "\n" for s in ids))
        counts[split] = {"images": n, "boxes": sum(not a["iscrowd"] for a in anns),
                         "ignored_boxes": sum(a["iscrowd"] for a in anns),
                         "background_images": n - len({a["image_id"] for a in anns})}
    manifest["counts"] = counts
    for k, d in work.items():
        (d / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if dirs[k].exists():
            shutil.rmtree(dirs[k])
        os.replace(d, dirs[k])
    return manifest


# --- train and evaluate through the commands ------------------------------------------------------------
def _edgekit(args, json_path: Path) -> dict:
    """``edgekit ARGS --json F`` in its own process (the command path a user runs); a failure stops here."""
    cmd = [sys.executable, "-m", "edgekit.cli", *map(str, args), "--json", str(json_path)]
    print("$ edgekit " + " ".join(map(str, args)), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL)
    if p.returncode:
        raise SystemExit(f"edgekit {args[0]} exited {p.returncode}")
    return json.loads(json_path.read_text())


def measure(folder: Path, layout: str, model: str, runs: Path, epochs=None, seed: int = 0, reuse=False) -> dict:
    """Train (the default ``edgekit train``, only ``--epochs`` if given) and evaluate on the test split; ``reuse``
    reads a finished run of the same name (its train and eval JSON) instead."""
    run = runs / (f"{layout}-{model}-s{seed}" + (f"-e{epochs}" if epochs else ""))
    tj, ej = runs / f"{run.name}.train.json", runs / f"{run.name}.eval.json"
    if reuse and tj.exists() and ej.exists():
        tr, ev = json.loads(tj.read_text()), json.loads(ej.read_text())
    else:
        args = ["train", "-m", model, "-d", folder, "--out", run, "--seed", seed, "--overwrite", "--quiet"]
        if epochs:
            args += ["--epochs", epochs]
        tr = _edgekit(args, tj)
        ev = _edgekit(["eval", run / "model.keras", "-d", folder, "--split", "test"], ej)
    # A box detector reports COCO mAP; the centroid (FOMO) model centre precision / recall / F1 (its per-class F1).
    per = {k: (v.get("f1") if isinstance(v, dict) else v) for k, v in ev["per_class"].items()}
    return {"layout": layout, "model": model, "seed": seed, "kind": ev.get("kind"),
            "images": ev.get("images", tr["images"]),  # the centroid report counts no images; training tested on it
            **{k: ev.get(k) for k in ("boxes", "map50", "map", "map75", "f1", "precision", "recall")},
            "per_class": per,
            "epochs_budget": tr["epochs_budget"], "best_epoch": tr["best_epoch"], "epochs_run": tr["epochs_run"],
            "train_seconds": tr["train_seconds"], "params": tr["params"], "macs": tr["macs"], "run": str(run)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/detect-heldout", help="Folder for the data (coco/, voc/) and the runs.")
    ap.add_argument("--model", default="centernet_mnv2", help="Any zoo detector (edgekit zoo list).")
    ap.add_argument("--epochs", type=int, help="Epoch budget (default: the command's default).")
    ap.add_argument("--seeds", default="0", help="Training seeds, comma-separated (several: the spread is printed).")
    ap.add_argument("--data-seed", type=int, default=0, help="Generator seed.")
    ap.add_argument("--train", type=int, default=SPLITS["train"])
    ap.add_argument("--val", type=int, default=SPLITS["val"])
    ap.add_argument("--test", type=int, default=SPLITS["test"])
    ap.add_argument("--layouts", default="coco,voc")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--overwrite", action="store_true", help="Regenerate data written with other settings.")
    ap.add_argument("--reuse", action="store_true", help="Read runs already finished under --out instead of training.")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    layouts = [x.strip() for x in a.layouts.split(",") if x.strip()]
    bad = sorted(set(layouts) - {"coco", "voc"})
    if bad:
        raise SystemExit(f"--layouts takes coco and/or voc; received {', '.join(bad)}")
    seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    out = Path(a.out)
    t0 = time.time()
    man = generate(out / "data", seed=a.data_seed, splits={"train": a.train, "val": a.val, "test": a.test},
                   overwrite=a.overwrite)
    print(f"data: {out / 'data'} ({time.time() - t0:.0f} s): "
          + ", ".join(f"{s} {c['images']} images / {c['boxes']} boxes (+{c['ignored_boxes']} ignored, "
                      f"{c['background_images']} background)" for s, c in man["counts"].items()))
    if a.generate_only:
        return man
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    rows = [measure(out / "data" / lay, lay, a.model, runs, a.epochs, seed, a.reuse)
            for seed in seeds for lay in layouts]
    from edgekit.tables import format_table

    test = man["counts"]["test"]
    table = [{"layout": r["layout"], "model": r["model"], "seed": r["seed"], "images": r["images"],
              "boxes": test["boxes"], "ignored": test["ignored_boxes"],
              **({"mAP@.5": round(r["map50"], 4), "mAP@[.5:.95]": round(r["map"], 4)} if r["map50"] is not None else
                 {"F1": round(r["f1"], 4), "precision": round(r["precision"], 4), "recall": round(r["recall"], 4)}),
              **{f"{'AP' if r['map50'] is not None else 'F1'} {k}": None if v is None else round(v, 4)
                 for k, v in r["per_class"].items()},
              "epochs": f"{r['best_epoch']}/{r['epochs_run']}/{r['epochs_budget']}", "train s": r["train_seconds"]}
             for r in rows]
    print("Held-out detection set (not shapes), test split; goal mAP@.5 >= 0.80; per class: AP@[.5:.95] "
          "(F1: centroids); epochs = best/run/budget")
    print(format_table(table))
    payload = {"data": man, "goal_map50": 0.80, "results": rows}
    if all(r["map50"] is not None for r in rows):  # box detectors (the centroid model has F1, in the table)
        m50 = np.array([r["map50"] for r in rows])
        payload["spread"] = {"map50_mean": float(m50.mean()), "map50_min": float(m50.min()),
                             "map50_max": float(m50.max()), "runs": len(rows)}
        payload["goal_met"] = bool(m50.min() >= 0.80)
        if len(seeds) > 1:
            print(f"mAP@.5 over {len(rows)} runs ({len(seeds)} seeds x {len(layouts)} layouts): mean {m50.mean():.4f}, "
                  f"min {m50.min():.4f}, max {m50.max():.4f}")
    if a.json:
        from edgekit.fsutil import write_json_atomic

        write_json_atomic(a.json, payload)
    return payload


if __name__ == "__main__":
    main()
