"""Detection goals: the default box detector on the built-in set (or a folder), every float export's boxes against
Keras, mAP per format, int8 in TFLite, ONNX and OpenVINO through ``edgekit compress`` (gated on mAP), p50 at 1
thread and MACs.

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


from edgekit.artifact import model_size, read_meta
from edgekit.evaluate_detect import evaluate_detection
from edgekit.export import export_model
from edgekit.runtime.bench import benchmark
from edgekit.train_detect import train_detector


def int8_all(model_path: Path, data: str, out_dir: Path, max_drop: float) -> dict:
    """``edgekit compress --quantize int8 --max-drop`` in TFLite, ONNX and OpenVINO: the one pipeline (calibration
    from the training split, every rung judged by MapJudge in points of mAP@[.5:.95]); its report's rows."""
    import json as _json

    from edgekit.compress import ExportConfig, compress
    from edgekit.errors import GateError
    from edgekit.passes import GateConfig, QuantizeConfig

    try:
        compress(str(model_path), data, out_dir, quantize=QuantizeConfig(),
                 export=ExportConfig(formats=("tflite", "onnx", "openvino"), bench_runs=100,
                                     gate=GateConfig(max_drop=max_drop)))
    except GateError as e:  # the report is written before the error: its rows say which format missed and by what
        print(f"gate: {e}")
    rep = _json.loads((out_dir / "report.json").read_text())
    return {r["artifact"]: r for r in rep["rows"]}


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
    ap.add_argument("--max-drop", type=float, default=1.0, help="int8 gate, points of mAP@[.5:.95].")
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
    data = a.data if not a.model else (meta.provenance or {}).get("data", a.data)
    for name, r in int8_all(model, data, out / "int8", a.max_drop).items():
        if r.get("precision") == "int8":
            fmt = r["format"] + "_int8"
            rows[fmt] = {"map": r.get("map"), "size_bytes": r.get("size_bytes"), "size_ratio": r.get("size_x"),
                         "weights_ratio": r.get("weights_x"), "map_drop_points": r.get("drop"),
                         "remedy": r.get("remedy"), "gate": r.get("gate"), "p50_ms_1_thread": r.get("p50_ms")}
    k = rows["keras"]
    print(f"{a.data}: keras mAP@[.5:.95] {k['map']:.4f}  mAP@.5 {k['map50']:.4f}  ({k['images']} images, "
          f"{k['boxes']} boxes), {rows['macs']:,} MACs, {rows['params']:,} params")
    for fmt in ("tflite", "onnx", "openvino", "tflite_int8", "onnx_int8", "openvino_int8"):
        if fmt in rows:
            r = rows[fmt]
            extra = (f" boxes matched {r['boxes_matched']['fraction']:.4f}" if "boxes_matched" in r
                     else f" drop {r['map_drop_points']:.2f} points ({r['remedy']}, {r['gate']}), file "
                          f"{r['size_ratio']:.3f}x, weights {r['weights_ratio'] or float('nan'):.3f}x")
            p50 = r.get("p50_ms_1_thread")
            print(f"  {fmt:14s} mAP {r['map']:.4f} p50 {p50 if p50 is None else round(p50, 2)} ms{extra}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
