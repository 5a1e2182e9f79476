"""The bundle's smoke test, run on the device inside the release's runtime venv (as ``smoke_test.py``).

Loads the model with ``edgekit.runtime``, runs the fixed sample input stored in the bundle, compares
every output with the expected output the host computed, and times a short benchmark. Prints one
JSON line; exit 0 only when the outputs match. Device side: NumPy + edgekit.runtime, never TensorFlow.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def compare(got, expected, tolerance: dict) -> dict:
    import numpy as np

    rows = {}
    for name, want in expected.items():
        tol = tolerance.get(name, {"atol": 1e-3, "rtol": 1e-3})
        if name not in got:
            rows[name] = {"passed": False, "error": f"output {name!r} missing; the model gave {sorted(got)}"}
            continue
        a = np.asarray(got[name], dtype=np.float64)
        b = np.asarray(want, dtype=np.float64)
        if a.shape != b.shape:
            rows[name] = {"passed": False, "error": f"shape {list(a.shape)}, expected {list(b.shape)}"}
            continue
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        ok = bool(np.all(np.isfinite(a))) and bool(np.allclose(a, b, atol=tol["atol"], rtol=tol["rtol"]))
        row = {"passed": ok, "max_abs_diff": diff, "atol": tol["atol"], "rtol": tol["rtol"]}
        if a.ndim >= 2 and a.shape[-1] > 1:
            row["top1_agreement"] = float(np.mean(a.reshape(-1, a.shape[-1]).argmax(-1)
                                                  == b.reshape(-1, b.shape[-1]).argmax(-1)))
        rows[name] = row
    return rows


def check_detections(got: dict, want: dict) -> dict:
    """A detector's boxes drawn again on the device, through the artifact's own post-processing: every expected
    box matched (same class, IoU >= ``want["iou"]``)."""
    if want.get("skipped"):
        return {"passed": True, "skipped": want["skipped"]}
    import numpy as np

    from edgekit.runtime.boxes import Detections, Postprocess, match_detections

    post = Postprocess.from_params(want["postprocess"])
    mine = post(got[want["output"]])[0]
    ref = Detections(np.asarray(want["boxes"], np.float32).reshape(-1, 4), np.asarray(want["scores"], np.float32),
                     np.asarray(want["classes"], np.int64))
    m = match_detections([ref], [mine], iou=float(want.get("iou", 0.9)))
    return {"passed": m["matched"] == m["boxes"], "expected": m["boxes"], "matched": m["matched"],
            "drawn": len(mine), "min_iou": round(m["min_iou"], 4)}


def run(folder: str | os.PathLike) -> dict:
    import numpy as np

    from edgekit.runtime import load

    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    smoke = manifest["smoke"]
    out = {"passed": False, "model": manifest["model"]["path"], "backend": manifest["backend"]}
    t0 = time.perf_counter()
    try:
        session = load(folder / manifest["model"]["path"], device=manifest.get("device", "cpu"),
                       threads=manifest.get("threads"))
    except Exception as e:  # a corrupt or incompatible model is exactly what this test exists to catch
        out["error"] = f"cannot load the model: {type(e).__name__}: {e}".splitlines()[0]
        return out
    out["load_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
    with np.load(folder / smoke["input"]) as f:
        feed = {k: f[k] for k in f.files}
    with np.load(folder / smoke["expected"]) as f:
        expected = {k: f[k] for k in f.files}
    try:
        got = session.run(feed)
    except Exception as e:
        out["error"] = f"inference failed: {type(e).__name__}: {e}".splitlines()[0]
        return out
    out["outputs"] = compare(got, expected, smoke.get("tolerance", {}))
    out["passed"] = all(r["passed"] for r in out["outputs"].values())
    if smoke.get("detections"):
        out["detections"] = check_detections(got, smoke["detections"])
        out["passed"] = out["passed"] and out["detections"]["passed"]
    if not out["passed"]:
        bad = {k: v for k, v in out["outputs"].items() if not v["passed"]}
        if bad:
            out["error"] = "outputs differ from the expected ones: " + "; ".join(
                f"{k}: {v.get('error') or 'max abs diff %.3g > atol %.3g' % (v['max_abs_diff'], v['atol'])}"
                for k, v in bad.items())
        else:
            d = out["detections"]
            out["error"] = (f"the device drew {d['matched']} of the {d['expected']} expected boxes again "
                            f"(same class, IoU >= 0.9)")
        return out
    runs = int(smoke.get("bench_runs", 20))
    for _ in range(3):
        session.run(feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(feed)
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    out["bench"] = {"runs": runs, "p50_ms": round(times[len(times) // 2], 3),
                    "p90_ms": round(times[min(len(times) - 1, int(len(times) * 0.9))], 3),
                    "mean_ms": round(sum(times) / len(times), 3), "threads": manifest.get("threads")}
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = argv[0] if argv else os.path.dirname(os.path.abspath(__file__))
    result = run(folder)
    print(json.dumps(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
