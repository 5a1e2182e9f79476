"""Measure issue 3's training goals and print them.

    python benchmarks/train_goals.py                 # all goals
    python benchmarks/train_goals.py --only kws_ds_cnn,digits_mobilenet --out runs/goals

Goals: ds_cnn_s on keywords >= 90% held-out-voice test top-1 with <= 10 min training on this
machine; the keyword transformer on keywords >= 90%; a MobileNet on mnist-5k and on digits >= 97%.
Test top-1 is re-measured with edgekit.evaluate on the saved model (not taken from the training log).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

GOALS = {
    # name: (model, data, epochs, train options, target top-1, max training seconds)
    "kws_ds_cnn": ("ds_cnn_s", "keywords", 20, {}, 0.90, 600.0),
    "kws_kwt": ("kwt", "keywords", 30, {"data_options": {"frontend": {"kind": "logmel"}}}, 0.90, None),
    "mnist_mobilenet": ("mobilenet_v2", "mnist-5k", 40, {"model_options": {"alpha": 0.35, "bn_momentum": 0.9}},
                        0.97, None),
    "digits_mobilenet": ("mobilenet_v2", "digits", 60, {"model_options": {"alpha": 0.35, "bn_momentum": 0.9},
                                                        "batch_size": 32}, 0.97, None),
}


def run_goal(name: str, out_root: Path, quiet: bool) -> dict:
    from edgekit.evaluate import evaluate
    from edgekit.train import train

    model, data, epochs, opts, target, max_s = GOALS[name]
    t0 = time.time()
    r = train(model, data, epochs, out_root / name, overwrite=True, quiet=quiet, patience=None, **opts)
    wall = time.time() - t0
    ev = evaluate(r.model_path)  # same data path as `edgekit eval`
    ok = ev["top1"] >= target and (max_s is None or r.metrics["train_seconds"] <= max_s)
    return {"goal": name, "model": model, "data": data, "epochs": r.metrics["epochs_run"],
            "test_top1": round(ev["top1"], 4), "target": target, "samples": ev["samples"],
            "train_s": r.metrics["train_seconds"], "max_train_s": max_s, "wall_s": round(wall, 1),
            "params": r.metrics["params"], "macs": r.metrics["macs"], "met": ok, "run": str(r.out_dir)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="Comma-separated goals: " + ", ".join(GOALS))
    ap.add_argument("--out", default="runs/goals", help="Folder for the run folders.")
    ap.add_argument("--json", help="Also write the results here.")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.only.split(",")] if a.only else list(GOALS)
    bad = [n for n in names if n not in GOALS]
    if bad:
        ap.error(f"unknown goal(s) {', '.join(bad)}; available: {', '.join(GOALS)}")
    from edgekit.tables import format_table

    rows = []
    for n in names:
        rows.append(run_goal(n, Path(a.out), a.quiet))
        print(json.dumps(rows[-1]), flush=True)
    print(format_table(rows, ["goal", "model", "data", "epochs", "test_top1", "target", "train_s", "max_train_s",
                              "params", "macs", "met"]))
    print(f"cpu cores: {os.cpu_count()}, load average at end: {os.getloadavg()[0]:.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
