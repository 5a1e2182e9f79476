"""Every precision in every format that makes it, through ``edgekit.compress`` on real trained models: the
fp16 goal of issue 15 and the table of precision x format (size, payload, drop, p50, speed-up vs float).

Goal (issue 15): fp16 artifacts for MobileNetV2 and ds_cnn_s in all three formats with payload <= 0.52x
float and top-1 drop <= 0.2 points, evaluated through the device runtime on CPU. "Payload" is the bytes of
the stored weight tensors (``edgekit.compress.measure.weight_bytes``): graph, names and metadata don't
halve, and on a 24k-parameter model they are a large part of the file.

Usage:
  python benchmarks/precisions.py --work /tmp/precisions [--kws-model M.keras] [--image-model M.keras]
         [--models kws,image] [--precisions fp16,int8-weights,int8,int16x8] [--epochs 15] [--bench-runs 200]
         [--json FILE]
Without a model path the script trains one into --work (ds_cnn_s on keywords, MobileNetV2 a0.35 on
mnist-5k). int16x8 is made in TFLite and ONNX only (NNCF has no int16 activations); an int8 miss climbs the
ladder as ``edgekit compress`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from compress_goals import say, trained  # noqa: E402  (the same trained models, the same log lines)

FP16_PAYLOAD, FP16_DROP = 0.52, 0.2


def measure(label: str, model: Path, data: str, precisions: list[str], out: Path, bench_runs: int) -> list[dict]:
    from edgekit import formats
    from edgekit.compress import ExportConfig, QuantizeConfig, compress
    from edgekit.compress.measure import weight_bytes
    from edgekit.compress.report import render
    from edgekit.errors import GateError

    rows = []
    # int16x8 only where a format makes it: one compress per group of formats that can make every precision.
    groups: dict[tuple, list[str]] = {}
    for fmt in formats.FORMATS:
        groups.setdefault(tuple(p for p in precisions if p in formats.get(fmt).precisions), []).append(fmt)
    for precs, fmts in groups.items():
        sub = out / "-".join(fmts)
        say(f"{label}: {', '.join(precs)} in {', '.join(fmts)} ...")
        try:
            res = compress(model, data, sub, quantize=QuantizeConfig(precision=list(precs)),
                           export=ExportConfig(formats=tuple(fmts), bench_runs=bench_runs), progress=say)
        except GateError as e:
            res = e.result
            say(str(e))
        print(render(res), flush=True)
        refs = {r["format"]: r for r in res.rows if r["gate"] == "reference"}
        for r in res.rows:
            ref = refs[r["format"]]
            pay = weight_bytes(sub / r["artifact"]) / weight_bytes(sub / ref["artifact"])
            rows.append({"model": label, "format": r["format"], "precision": r["precision"],
                         "remedy": r.get("remedy") or "-", "size_kb": round(r["size_kb"], 1),
                         "size_x": round(r["size_x"], 3), "payload_x": round(pay, 3), "top1": round(r["top1"], 4),
                         "drop": round(r["drop"], 2), "p50_ms": r["p50_ms"], "speedup": r.get("speedup")})
        for f in res.failures:
            rows.append({"model": label, "format": f["format"], "precision": f.get("precision"),
                         "remedy": "FAILED: " + ",".join(a["remedy"] for a in f["attempts"])})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--kws-model", default=None)
    ap.add_argument("--image-model", default=None)
    ap.add_argument("--models", default="kws,image")
    ap.add_argument("--precisions", default="fp16,int8-weights,int8,int16x8")
    ap.add_argument("--epochs", type=int, default=15, help="Training epochs when a model must be trained")
    ap.add_argument("--bench-runs", type=int, default=200)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    precisions = [p for p in a.precisions.split(",") if p]
    models = {}
    if "kws" in a.models:
        models["ds_cnn_s/keywords"] = (trained("kws", a.kws_model, a.work, a.epochs), "keywords")
    if "image" in a.models:
        models["mobilenet_v2/mnist-5k"] = (trained("image", a.image_model, a.work, a.epochs), "mnist-5k")
    rows = []
    for label, (model, data) in models.items():
        rows += measure(label, model, data, precisions, a.work / label.replace("/", "_"), a.bench_runs)
    from edgekit.tables import format_table

    cols = ["model", "format", "precision", "remedy", "size_kb", "size_x", "payload_x", "top1", "drop", "p50_ms",
            "speedup"]
    print(format_table(rows, cols))
    fp16 = [r for r in rows if r.get("precision") == "fp16"]
    met = [r for r in fp16 if r["payload_x"] <= FP16_PAYLOAD and r["drop"] <= FP16_DROP]
    print(f"\nfp16 goal (payload <= {FP16_PAYLOAD}x, drop <= {FP16_DROP} points): {len(met)}/{len(fp16)} artifacts")
    for r in fp16:
        if r not in met:
            print(f"  missed: {r['model']} {r['format']}: payload {r['payload_x']}x, drop {r['drop']}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2, default=str))
    return 0 if len(met) == len(fp16) else 1


if __name__ == "__main__":
    sys.exit(main())
