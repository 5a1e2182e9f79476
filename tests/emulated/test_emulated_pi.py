"""The whole deploy round trip against an emulated Raspberry Pi 5 (arm64 Debian under QEMU).

Real parts only: a debootstrapped arm64 root, QEMU user-mode emulation, the root's own sshd, the
asyncssh deploy, pip installing aarch64 wheels that the bundle carries, LiteRT's aarch64 kernels
running the smoke test and the model server. Figures measured there are QEMU's, and every one the
test reads must say so.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgekit.deploy.deploy import status_row
from edgekit.deploy.emulated import corrupt_model_bundle

# A cold run debootstraps the root inside the fixture (5 min on an idle 2-core machine, 20 on a busy
# one) and everything after runs under emulation: well past the suite's 900 s default.
pytestmark = [pytest.mark.emulated, pytest.mark.timeout(3600)]

PROFILE = "raspberry-pi-5"
# Starting Python + uvicorn + LiteRT under emulation takes tens of seconds on a busy 2-core host.
HEALTH_TIMEOUT = "300"


def get(port: int, path: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST" if body else "GET",
                                 data=json.dumps(body).encode() if body else None,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {}
    except OSError:
        return 0, {}


def test_round_trip_on_an_emulated_raspberry_pi_5(pi, int8_tflite, cli, tmp_path):
    t: dict[str, float] = {"device_start_s": pi.timings["root_s"] + pi.timings["start_s"]}
    ssh = pi.ssh_args()
    assert pi.run("uname -m").stdout.strip() == "aarch64"

    def timed(name, *args, ok=True):
        t0 = time.perf_counter()
        r = cli(*args, timeout=1800)
        t[name] = round(time.perf_counter() - t0, 1)
        if ok:
            assert r.returncode == 0, f"edgekit {' '.join(args[:2])} failed:\n{r.stdout}\n{r.stderr}"
        return r

    # Bundles for the Pi 5 profile, carrying aarch64 wheels (the device installs with --no-index). v2 is
    # built right after v1 so both carry the same edgekit wheel even while the checkout changes.
    v1, v2 = tmp_path / "v1.tar.gz", tmp_path / "v2.tar.gz"
    b = timed("bundle_s", "bundle", str(int8_tflite), "--profile", PROFILE, "--out", str(v1), "--version", "v1",
              "--with-wheels", "--json", "-")
    m2 = json.loads(timed("bundle_v2_s", "bundle", str(int8_tflite), "--profile", PROFILE, "--out", str(v2),
                          "--version", "v2", "--with-wheels", "--json", "-").stdout)
    manifest = json.loads(b.stdout)
    wheels = manifest["runtime"]["wheels"]
    assert any(w.startswith("ai_edge_litert") and "aarch64" in w for w in wheels), wheels
    assert not any("x86_64" in w for w in wheels), wheels

    # Deploy: preflight sees aarch64, pip installs the carried wheels, LiteRT runs the smoke test there.
    d = timed("deploy_s", "deploy", str(v1), *ssh, "--serve-port", str(pi.serve_port),
              "--health-timeout", HEALTH_TIMEOUT, "-q", "--json", "-")
    row = json.loads(d.stdout)[0]
    assert row["status"] == "deployed" and row["release"] == "v1"
    assert row["arch"] == "aarch64" and row["python"].startswith("3.11")
    assert row["service"] == "supervisor"  # a chroot has no systemd: the profile's fallback
    assert row["venv_reused"] is False and row["p50_ms"] > 0
    assert row["emulated"]["by"] == "qemu-user" and row["emulated"]["guest"] == "aarch64"
    t.update({f"deploy.{k}_s": v for k, v in row["steps"].items()})
    venv_py = pi.home / "edgekit" / "current" / "venv" / "bin" / "python"
    assert (pi.root / "home/pi/edgekit/current").resolve().name == "v1"
    r = pi.run(f"/{venv_py.relative_to(pi.root)} -c 'import platform, ai_edge_litert, numpy; "
               "print(platform.machine(), numpy.__version__)'")
    assert r.returncode == 0 and r.stdout.startswith("aarch64"), r.stderr

    # The server on the device answers from the host, and gives the outputs the host computed.
    smoke = json.loads(pi.run("cat edgekit/current/smoke.json").stdout)
    assert smoke["passed"] and smoke["backend"] == "litert"
    code, index = get(pi.serve_port, "/v2/repository/index")
    assert code == 200 and index, index
    with np.load(pi.home / "edgekit/current/smoke/input.npz") as f:
        feed = {k: f[k] for k in f.files}
    with np.load(pi.home / "edgekit/current/smoke/expected.npz") as f:
        expected = {k: f[k] for k in f.files}
    code, out = get(pi.serve_port, f"/v2/models/{index[0]['name']}/infer", {"inputs": [
        {"name": k, "shape": list(v.shape), "datatype": "FP32", "data": v.astype(np.float32).ravel().tolist()}
        for k, v in feed.items()]})
    assert code == 200, out
    got = {o["name"]: np.asarray(o["data"], dtype=np.float64).reshape(o["shape"]) for o in out["outputs"]}
    for name, want in expected.items():
        tol = manifest["smoke"]["tolerance"][name]
        np.testing.assert_allclose(got[name], want, atol=tol["atol"], rtol=tol["rtol"])

    # Status: release, supervisor, health, and latency figures labelled as emulated.
    s = timed("status_s", "status", *ssh, "--json", "-")
    st = json.loads(s.stdout)[0]
    assert st["current"] == "v1" and st["arch"] == "aarch64"
    assert st["service"]["manager"] == "supervisor" and st["service"]["state"] == "active"
    assert st["health"]["ready"] is True and st["bench"]["p50_ms"] > 0
    assert st["emulated"] and st["emulated"]["by"] == "qemu-user", st.get("emulated")
    # The table `edgekit status` prints says it too, beside the figures (not only the JSON).
    assert status_row({**st, "host": pi.address})["cpu"] == "emulated (qemu-user)"

    # A corrupt model: verify passes (checksums are right), the smoke test on the device fails,
    # nothing is switched and v1 keeps serving.
    bad = corrupt_model_bundle(v1, tmp_path / "bad.tar.gz", "v-corrupt")
    f = timed("failed_deploy_s", "deploy", str(bad), *ssh, "--serve-port", str(pi.serve_port),
              "--health-timeout", HEALTH_TIMEOUT, "-q", ok=False)
    assert f.returncode == 2, f.stderr
    assert "step 'smoke' failed" in f.stderr and "cannot load the model" in f.stderr, f.stderr
    assert "release v1 is still serving" in f.stderr, f.stderr
    assert (pi.home / "edgekit/current").resolve().name == "v1"
    assert not (pi.home / "edgekit/releases/v-corrupt").exists()
    assert get(pi.serve_port, "/v2/health/ready")[0] == 200

    # Upgrade to v2 (same runtime: the venv is reused), then roll back to v1 with --rollback.
    d2 = json.loads(timed("deploy_v2_s", "deploy", str(v2), *ssh, "--serve-port", str(pi.serve_port),
                          "--health-timeout", HEALTH_TIMEOUT, "-q", "--json", "-").stdout)[0]
    runtime = lambda m: {k: v["sha256"] for k, v in m["files"].items() if k.startswith("wheels/")}
    assert runtime(m2) == runtime(manifest), "v1 and v2 should carry the same wheels"
    assert d2["release"] == "v2" and d2["previous"] == "v1" and d2["venv_reused"] is True
    rb = json.loads(timed("rollback_s", "deploy", "--rollback", *ssh, "--serve-port", str(pi.serve_port),
                          "--health-timeout", HEALTH_TIMEOUT, "--json", "-").stdout)[0]
    assert rb["release"] == "v1" and rb["previous"] == "v2"
    assert (pi.home / "edgekit/current").resolve().name == "v1"
    assert get(pi.serve_port, "/v2/health/ready")[0] == 200

    # `edgekit bench` on the device itself, in the release's venv: emulated figures, labelled so.
    t0 = time.perf_counter()
    code, out, err = pi.ssh("edgekit/current/venv/bin/python -m edgekit.cli bench "
                            f"edgekit/current/{manifest['model']['path']} --runs 30 --warmup 5 --json -")
    t["device_bench_s"] = round(time.perf_counter() - t0, 1)
    assert code == 0, err
    bench = json.loads(out)[0]
    assert bench["backend"] == "litert" and 0 < bench["p50_ms"] <= bench["p90_ms"]
    label = json.loads((pi.root / "etc/edgekit-emulated.json").read_text())
    print(f"\nEMULATED (QEMU user-mode on x86-64; not a Raspberry Pi's speed, {label['qemu']}): "
          f"edgekit bench {Path(manifest['model']['path']).name} on the device: p50 {bench['p50_ms']:.2f} ms, "
          f"p90 {bench['p90_ms']:.2f} ms, load {bench['load_ms']:.0f} ms; smoke p50 {row['p50_ms']} ms")
    print("round-trip timings (s): " + json.dumps(t))
