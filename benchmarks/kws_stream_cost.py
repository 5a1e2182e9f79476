"""Streaming cost of a keyword spotter on this machine: real-time factor and milliseconds per hop of the live
path (edgekit.apps.kws.KeywordSpotter: streaming front-end, one window per hop, post-processing), split into
the model's own inference and the rest, 1 thread.

Usage: python benchmarks/kws_stream_cost.py MODEL [MODEL ...] [--seconds 120] [--hop-ms 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--hop-ms", type=float, default=100.0)
    a = ap.parse_args(argv)
    from edgekit.apps.kws import KeywordSpotter
    from edgekit.runtime import load
    from edgekit.tables import format_table

    audio = (np.random.default_rng(0).standard_normal(int(a.seconds * 16000)) * 0.05).astype(np.float32)
    rows = []
    for m in a.models:
        s = load(m, threads=1)
        sp = KeywordSpotter(s, hop_ms=a.hop_ms)
        r = sp.run(audio)
        x = sp.source.stream.window().reshape(sp.source._shape)
        t0 = time.perf_counter()
        for _ in range(500):
            s.predict(x)
        model_ms = (time.perf_counter() - t0) / 500 * 1000
        hop = 1000 * r.processing_seconds / r.inferences
        rows.append({"model": os.path.basename(m), "hops": r.inferences, "ms_per_hop": round(hop, 3),
                     "model_ms": round(model_ms, 3), "rest_ms": round(hop - model_ms, 3),
                     "real_time_factor": round(r.real_time_factor, 4)})
    print(format_table(rows))
    print(f"{a.seconds:g} s of audio, hop {a.hop_ms:g} ms, 1 thread; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
