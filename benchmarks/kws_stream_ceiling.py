"""How far post-processing can take a keyword spotter on streams: the calibration grid (threshold x smoothing x
refractory time) swept on each split's own streams, the most recall at each false-alarm budget.

On the calibration split this is what `edgekit calibrate` chooses from; on the test split it is an oracle (the
operating point chosen on the very streams it is judged on), so it bounds what any calibration of this model can
reach there. When the oracle misses a goal, the model has to change, not the post-processing.

    python benchmarks/kws_stream_ceiling.py runs/demo/artifacts/kws-ds-cnn-float32.tflite [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BUDGETS = (1.0, 2.0, 5.0, 10.0, 20.0)  # false alarms an hour


def ceiling(model, split: str) -> dict:
    from edgekit.apps.streams import _Scored, sweep
    from edgekit.data.streams import builtin_streams

    streams = builtin_streams(split)
    scored = _Scored(model, streams, 100.0, None, "cpu", None, True)
    _, _, rows = sweep(scored, 1.0)
    out = {"split": split, "hours": round(scored.seconds / 3600, 2),
           "keywords": sum(len(s.keywords) for s in streams), "budgets": []}
    for budget in BUDGETS:
        ok = [r for r in rows if r["fa_per_hour"] <= budget + 1e-9]
        best = max(ok, key=lambda r: (r["hits"], -r["false_alarms"])) if ok else None
        out["budgets"].append({"fa_per_hour_max": budget, **({k: best[k] for k in (
            "recall", "fa_per_hour", "threshold", "smooth_ms", "refractory_ms")} if best else {"recall": None})})
    out["max_recall"] = max(r["recall"] for r in rows)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--splits", default="calibration,test")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    results = [ceiling(a.model, s) for s in a.splits.split(",")]
    print(f"{'split':12s} {'hours':>5s} {'kw':>4s}  " + "  ".join(f"<={b:g}/h" for b in BUDGETS) + "  any")
    for r in results:
        cells = "  ".join(f"{(b['recall'] if b['recall'] is not None else float('nan')):>6.3f}" for b in r["budgets"])
        print(f"{r['split']:12s} {r['hours']:5.2f} {r['keywords']:4d}  {cells}  {r['max_recall']:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
