"""edgekit Session.run against each backend's raw API, same model and threads, interleaved.

Goal (issue 2): overhead <= 5% of median latency, batch 1, MobileNetV3-Small-size model.
Usage: python benchmarks/runtime_overhead.py [--threads 1] [--rounds 30] [--per-round 50] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from _models import mobilenet_v3_small


def raw_callables(sess, x):
    """The backend's own API doing exactly one inference, with the same native objects."""
    if sess.backend == "litert":
        it = sess.interpreter
        i_in = it.get_input_details()[0]["index"]
        i_out = it.get_output_details()[0]["index"]

        def raw():
            it.set_tensor(i_in, x)
            it.invoke()
            return it.get_tensor(i_out)
    elif sess.backend == "onnxruntime":
        rs = sess.raw_session
        name = rs.get_inputs()[0].name
        outs = [o.name for o in rs.get_outputs()]

        def raw():
            return rs.run(outs, {name: x})
    else:
        cm = sess.compiled_model
        req = cm.create_infer_request()
        port = cm.outputs[0]

        def raw():
            return np.array(req.infer({0: x})[port])
    return raw


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=50)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    from edgekit import runtime
    from edgekit.tables import format_table

    files = mobilenet_v3_small()
    rows = []
    for fmt, path in files.items():
        sess = runtime.load(path, threads=a.threads)
        x = sess.sample_input(batch=1)[sess.inputs[0].name]
        raw = raw_callables(sess, x)
        wrapped = lambda: sess.predict(x)  # noqa: E731
        np.testing.assert_allclose(np.asarray(raw()).reshape(-1), wrapped().reshape(-1), rtol=1e-5, atol=1e-6)
        for _ in range(50):
            raw(), wrapped()
        t_raw, t_ek = [], []
        perf = time.perf_counter
        for r in range(a.rounds):  # interleave so drift and noise hit both sides alike
            order = (raw, wrapped) if r % 2 == 0 else (wrapped, raw)
            for fn in order:
                bucket = t_raw if fn is raw else t_ek
                for _ in range(a.per_round):
                    t = perf()
                    fn()
                    bucket.append(perf() - t)
        m_raw, m_ek = np.median(t_raw) * 1e3, np.median(t_ek) * 1e3
        # The 10th percentile is what the code costs when the machine isn't busy elsewhere.
        q_raw, q_ek = np.percentile(t_raw, 10) * 1e3, np.percentile(t_ek, 10) * 1e3
        rows.append({"backend": sess.backend, "threads": a.threads, "raw_p50_ms": m_raw, "edgekit_p50_ms": m_ek,
                     "overhead_us": (m_ek - m_raw) * 1e3, "ratio": m_ek / m_raw, "ratio_p10": q_ek / q_raw,
                     "goal_<=1.05": "met" if m_ek / m_raw <= 1.05 else "MISSED"})
        sess.close()
    print(format_table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
