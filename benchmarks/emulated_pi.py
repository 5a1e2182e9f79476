"""Deploy round trip to an emulated Raspberry Pi 5 and `edgekit bench` there (issue 9).

The device is arm64 Debian bookworm under QEMU user-mode emulation (edgekit.deploy.emulated), so
EVERY latency printed here is EMULATED: it measures QEMU on this x86-64 host, not a Pi. The native
host figures are printed beside them only to show the emulation cost.

Prints: the round-trip step timings (device start, bundle, deploy and its steps, status, a failing
deploy, an upgrade, a rollback) and `edgekit bench` of MobileNetV3-Small f32 and int8 run on the
device inside the deployed release's venv. Needs root, qemu-user-static, binfmt-support, debootstrap.
Usage: sudo python benchmarks/emulated_pi.py [--runs 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _models import CACHE, mobilenet_v3_small

# The same root cache as the tests (tests/conftest.py): one debootstrap serves both.
os.environ.setdefault("EDGEKIT_CACHE", str(Path(__file__).resolve().parent.parent / ".cache" / "edgekit"))


def int8_tflite(size: int = 96) -> Path:
    """MobileNetV3-Small full-int8 TFLite (int8 in/out), the Pi 5 profile's preferred artifact; cached."""
    out = CACHE / f"mnv3s_{size}_0.75_10" / "model_int8.tflite"
    if out.exists():
        return out
    import numpy as np
    import tensorflow as tf

    from edgekit.compat import load_keras_model

    model = load_keras_model(out.parent / "model.keras")
    rng = np.random.default_rng(3)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.random((1, size, size, 3), dtype=np.float32)] for _ in range(32))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    out.write_bytes(conv.convert())
    return out


def bench_rows(text: str, where: str) -> list[dict]:
    return [{"where": where, "model": Path(r["model"]).name, "threads": r.get("threads") or "default",
             "load_ms": r["load_ms"], "first_ms": r["first_ms"], "p50_ms": r["p50_ms"], "p90_ms": r["p90_ms"],
             "peak_rss_mb": r["peak_rss_mb"]} for r in json.loads(text)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", help="also write every figure to this file")
    a = ap.parse_args()
    import subprocess

    from edgekit.deploy.bundle import build_bundle
    from edgekit.deploy.deploy import DeployOptions, deploy_host, rollback_host, status_host
    from edgekit.deploy.emulated import EmulatedPi, Unavailable, corrupt_model_bundle
    from edgekit.deploy.ssh import StepFailed
    from edgekit.tables import format_table

    f32 = mobilenet_v3_small()["tflite"]
    i8 = int8_tflite()
    t: list[dict] = []

    def step(name, fn, note=""):
        t0 = time.perf_counter()
        try:
            out = fn()
        except StepFailed as e:
            out = e
        t.append({"step": name, "seconds": round(time.perf_counter() - t0, 1), "note": note})
        return out

    pi = EmulatedPi()
    try:
        step("device: root (cached or built) + unpack + sshd", lambda: pi.start(build_log=print))
    except Unavailable as e:
        print(f"emulated Raspberry Pi unavailable: {e}", file=sys.stderr)
        return 3
    try:
        opts = DeployOptions(serve_port=pi.serve_port, health_timeout=300)
        tmp = Path(tempfile.mkdtemp(prefix="emulated-bench-"))
        run = asyncio.run
        # Both bundles first, back to back: they carry the same edgekit wheel (and so share a venv on the
        # device) even while the checkout changes under a long run.
        step("bundle f32 (aarch64 wheels)", lambda: build_bundle(f32, "raspberry-pi-5", tmp / "f32.tar.gz",
                                                                 version="f32", with_wheels=True))
        step("bundle int8", lambda: build_bundle(i8, "raspberry-pi-5", tmp / "i8.tar.gz", version="int8",
                                                 with_wheels=True))
        r = step("deploy f32 (fresh venv)", lambda: run(deploy_host(tmp / "f32.tar.gz", pi.target(), opts)))
        for k, v in r["steps"].items():
            t.append({"step": f"  deploy step: {k}", "seconds": v, "note": ""})
        st = step("status", lambda: run(status_host(pi.target())))
        assert st["emulated"], "the device did not report itself as emulated"
        r = step("deploy int8", lambda: run(deploy_host(tmp / "i8.tar.gz", pi.target(), opts)))
        t[-1]["note"] = "venv reused" if r["venv_reused"] else "new venv (the runtime differs)"
        corrupt_model_bundle(tmp / "i8.tar.gz", tmp / "bad.tar.gz", "corrupt")
        e = step("failing deploy (corrupt model)", lambda: run(deploy_host(tmp / "bad.tar.gz", pi.target(), opts)))
        t[-1]["note"] = f"failed at {getattr(e, 'step', '?')}; int8 kept serving"
        rb = step("rollback int8 -> f32", lambda: run(rollback_host(pi.target(), opts)))
        t[-1]["note"] = f"now {rb['release']}"
        models = " ".join(f"edgekit/releases/{v}/model/{p.name}" for v, p in (("f32", f32), ("int8", i8)))
        code, dev, err = step("edgekit bench on the device (over SSH)", lambda: pi.ssh(
            f"edgekit/current/venv/bin/python -m edgekit.cli bench {models} --runs {a.runs} --warmup 5 --json -",
            timeout=1800))
        if code != 0:
            print(err, file=sys.stderr)
            return 1
        host = subprocess.run([sys.executable, "-m", "edgekit.cli", "bench", str(f32), str(i8), "--runs",
                               str(a.runs), "--json", "-"], capture_output=True, text=True, check=True)
    finally:
        pi.stop()
    label = st["emulated"]
    rows = bench_rows(dev, "EMULATED aarch64 (QEMU)") + bench_rows(host.stdout, "native x86-64 host")
    print("\nRound trip to the emulated Raspberry Pi 5 (seconds):")
    print(format_table(t))
    print(f"\nedgekit bench, MobileNetV3-Small 96x96 α0.75 — EMULATED figures: {label['note']}; "
          f"they say nothing about a real Pi's speed:")
    print(format_table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps({"emulated": label, "round_trip": t, "bench": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
