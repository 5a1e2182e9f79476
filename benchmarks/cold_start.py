"""Cold-start figures (issue 2 goals), each in a fresh process, median of N:

* import edgekit.runtime + load a small .tflite + first inference  (goal <= 1.0 s wall)
* `edgekit --help`                                                 (goal <= 0.5 s wall)
* tensorflow / keras absent from sys.modules after `import edgekit.runtime, edgekit.cli`
Usage: python benchmarks/cold_start.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from _models import mobilenet_v3_small


def wall(cmd) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    from edgekit.tables import format_table

    tfl = mobilenet_v3_small()["tflite"]
    py = sys.executable
    first = ("import numpy as np, edgekit.runtime as r; s = r.load(%r); "
             "s.predict(np.zeros((1, 96, 96, 3), np.float32))" % str(tfl))
    exe = shutil.which("edgekit") or [py, "-m", "edgekit.cli"]
    help_cmd = [exe, "--help"] if isinstance(exe, str) else exe + ["--help"]
    rows = []
    for name, cmd, goal in [("python startup alone", [py, "-c", "pass"], None),
                            ("import runtime + load .tflite + 1st inference", [py, "-c", first], 1.0),
                            ("edgekit --help", help_cmd, 0.5)]:
        ts = [wall(cmd) for _ in range(a.repeat)]
        med = statistics.median(ts)
        rows.append({"what": name, "median_s": med, "min_s": min(ts), "goal_s": goal,
                     "status": "-" if goal is None else ("met" if med <= goal else "MISSED")})
    probe = subprocess.run([py, "-c", "import sys, edgekit.runtime, edgekit.cli; "
                            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    rows.append({"what": "tensorflow/keras in sys.modules", "median_s": None, "min_s": None, "goal_s": None,
                 "status": "met (none)" if probe == "[]" else f"MISSED {probe}"})
    print(format_table(rows))


if __name__ == "__main__":
    main()
