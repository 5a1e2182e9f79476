"""int8 file size against float for every image and KWS model of the zoo, in all three formats.

File size depends on the architecture, not on how well the weights are trained, so each model is built at
its zoo input shape with random weights (BatchNorm statistics settled on one batch), exported to float, and
quantized by the same code as ``edgekit compress --quantize int8`` (per-tensor weights, the first setting the
gate tries). Calibration uses random inputs: it moves the scales, not the bytes.

Columns: the artifact's bytes on disk (all its files: .xml + .bin for OpenVINO), the ratio int8/float, and
the "payload" ratio (weights + biases only) that shows how much of a small model is format overhead:
TFLite tensor tables and names, ONNX node and tensor names, OpenVINO's XML graph (NNCF adds a
FakeQuantize with four constants per activation).

Usage:
  python benchmarks/int8_size.py [--models ds_cnn_s,mobilenet_v2] [--json FILE]
Goal (issue 4): int8 size <= 0.30x float.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# (label, zoo name, input shape, classes, options)
CONFIGS = [
    ("mobilenet_v2 a0.35 (zoo default)", "mobilenet_v2", (96, 96, 3), 10, {}),
    ("mobilenet_v2 a1.0", "mobilenet_v2", (96, 96, 3), 10, {"alpha": 1.0}),
    ("mobilenet_v3_small a0.75 (zoo default)", "mobilenet_v3_small", (96, 96, 3), 10, {}),
    ("ds_cnn_s", "ds_cnn_s", (49, 10), 12, {}),
    ("ds_cnn_m", "ds_cnn_m", (49, 10), 12, {}),
    ("ds_cnn_l", "ds_cnn_l", (49, 10), 12, {}),
    ("kwt", "kwt", (49, 40), 12, {}),
]
FORMATS = ("tflite", "onnx", "openvino")
LIMIT = 0.30


def say(s: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {s}", file=sys.stderr, flush=True)


def payload_bytes(path: Path) -> int:
    from edgekit.compress.measure import constant_tensors

    return sum(int(a.nbytes) for a in constant_tensors(path) if a.size >= 8)


def measure(label, name, shape, classes, options, work: Path) -> list[dict]:
    import numpy as np

    from edgekit.artifact import ArtifactMeta
    from edgekit.compat import settle_batchnorm
    from edgekit.artifact import model_files
    from edgekit.compress.engine import export_float, keras_source, quantize_format
    from edgekit.compress.quantize import QuantizeConfig
    from edgekit.compress.quantizers import QuantizeJob
    from edgekit.zoo import build_model

    rng = np.random.default_rng(0)
    model = build_model(name, shape, classes, **options)
    x = rng.standard_normal((64, *shape)).astype(np.float32)
    settle_batchnorm(model, x)
    meta = ArtifactMeta(format="keras", task="image-classification" if len(shape) == 3 else "audio-classification",
                        labels=[str(i) for i in range(classes)])
    stem = name
    floats = export_float(model, FORMATS, work / "float", stem, meta, lambda s: None)
    cfg = QuantizeConfig().validate()
    rows = []
    for fmt in FORMATS:
        q = quantize_format(fmt, keras_source(model, floats.get(fmt)),
                            QuantizeJob(work / f"int8-{fmt}", stem, meta, cfg, x))
        fb = sum(f.stat().st_size for f in model_files(floats[fmt]))
        qb = sum(f.stat().st_size for f in model_files(q))
        ratio = qb / fb
        pr = payload_bytes(q) / max(1, payload_bytes(floats[fmt]))
        rows.append({"model": label, "params": int(model.count_params()), "format": fmt, "float_kb": fb / 1024,
                     "int8_kb": qb / 1024, "ratio": ratio, "payload_ratio": pr, "met": ratio <= LIMIT})
        say(f"{label} {fmt}: {fb / 1024:.1f} KB -> {qb / 1024:.1f} KB = {ratio:.3f}x (payload {pr:.3f}x)")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=None, help="Comma-separated zoo names (default: all image and KWS models)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    want = set(a.models.split(",")) if a.models else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8-size-") as tmp:
        for i, (label, name, shape, classes, options) in enumerate(CONFIGS):
            if want and name not in want:
                continue
            rows += measure(label, name, shape, classes, options, Path(tmp) / str(i))
    from edgekit.tables import format_table

    print(format_table([{"model": r["model"], "params": r["params"], "format": r["format"],
                         "float KB": round(r["float_kb"], 1), "int8 KB": round(r["int8_kb"], 1),
                         "int8/float": round(r["ratio"], 3), "payload int8/float": round(r["payload_ratio"], 3),
                         f"<= {LIMIT}": "yes" if r["met"] else "no"} for r in rows]))
    print(f"\n{sum(r['met'] for r in rows)}/{len(rows)} rows meet int8 size <= {LIMIT}x float")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
