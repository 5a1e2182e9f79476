"""Detection goals: the default box detector on the built-in set (or a folder), every float export's boxes against
Keras, mAP per format, an int8 TFLite through the TFLite exporter's calibration hook, p50 at 1 thread and MACs.

    python benchmarks/detect_goals.py                        # shapes, default training (long on 2 shared cores)
    python benchmarks/detect_goals.py --data path/to/voc --epochs 30 --seed 1 --out runs/det-voc
    python benchmarks/detect_goals.py --model runs/det/model.keras   # skip training

Goals (issue 22): shapes held-out mAP@.5 >= 0.90 and mAP@[.5:.95] >= 0.60; an unseen folder mAP@.5 >= 0.80;
float exports >= 99 % of boxes matched at IoU >= 0.9 with the same class; int8 mAP drop <= 1.0 point, <= 0.30x
the float weight payload; <= 1 GMAC at the default input.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edgekit.artifact import model_size, read_meta
from edgekit.evaluate_detect import evaluate_detection, verification_images
from edgekit.export import export_model
from edgekit.runtime.bench import benchmark
from edgekit.train_detect import train_detector


def int8_tflite(model_path: Path, out_dir: Path, calib: np.ndarray) -> Path:
    """Full-integer TFLite (int8 weights and activations, float input and output) calibrated on ``calib``."""
    import tensorflow as tf

    def configure(conv):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in calib)

    r = export_model(model_path, ("tflite",), out_dir, name="det_int8", verify=False,
                     options={"tflite": {"configure": configure}})
    return r.artifacts["tflite"]


def p50_ms(path: Path) -> float:
    """edgekit bench's protocol (an isolated process, warm-up, 100 runs) at 1 thread."""
    return benchmark([path], threads=(1,))[0].p50_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="shapes")
    ap.add_argument("--model-name", default="centernet_lite0")
    ap.add_argument("--model", help="An already trained .keras detector (skips training).")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/detect-goals")
    ap.add_argument("--json")
    a = ap.parse_args()
    out = Path(a.out)
    rows = {}
    if a.model:
        model = Path(a.model)
    else:
        t0 = time.time()
        r = train_detector(a.model_name, a.data, a.epochs, out / "train", seed=a.seed, overwrite=True)
        model = r.model_path
        rows["train_seconds"] = round(time.time() - t0, 1)
        rows["train"] = {k: r.metrics[k] for k in ("best_epoch", "epochs_run", "epochs_budget", "params", "macs")}
    meta = read_meta(model)
    rows["macs"], rows["params"] = meta.extra.get("macs"), meta.extra.get("params")
    rows["keras"] = evaluate_detection(model, a.data if not a.model else None)
    exp = export_model(model, ("tflite", "onnx", "openvino"), out / "export", name="det", samples=64)
    for fmt, path in exp.artifacts.items():
        ev = evaluate_detection(path)
        rows[fmt] = {"map": ev["map"], "map50": ev["map50"], "boxes_matched": exp.verification[fmt]["boxes"],
                     "size_bytes": model_size(path), "p50_ms_1_thread": p50_ms(path)}
    calib = verification_images(meta, 200)
    if calib is not None:
        q = int8_tflite(model, out / "export", calib)
        ev = evaluate_detection(q)
        rows["tflite_int8"] = {"map": ev["map"], "map50": ev["map50"], "size_bytes": model_size(q),
                               "size_ratio": model_size(q) / rows["tflite"]["size_bytes"],
                               "map_drop_points": 100 * (rows["tflite"]["map"] - ev["map"]),
                               "p50_ms_1_thread": p50_ms(q)}
    k = rows["keras"]
    print(f"{a.data}: keras mAP@[.5:.95] {k['map']:.4f}  mAP@.5 {k['map50']:.4f}  ({k['images']} images, "
          f"{k['boxes']} boxes), {rows['macs']:,} MACs, {rows['params']:,} params")
    for fmt in ("tflite", "onnx", "openvino", "tflite_int8"):
        if fmt in rows:
            r = rows[fmt]
            extra = (f" boxes matched {r['boxes_matched']['fraction']:.4f}" if "boxes_matched" in r
                     else f" drop {r['map_drop_points']:.2f} points, size {r['size_ratio']:.2f}x")
            print(f"  {fmt:12s} mAP {r['map']:.4f} mAP@.5 {r['map50']:.4f} p50 {r['p50_ms_1_thread']:.2f} ms{extra}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
