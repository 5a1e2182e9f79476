"""Deploy over real SSH to local OpenSSH servers: round trip, failures that must leave the previous
release serving, rollback, status, fleets. The device side really installs a venv with pip, runs
the smoke test with LiteRT and starts ``edgekit serve`` under the fallback supervisor."""

from __future__ import annotations

import asyncio
import getpass
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from edgekit.deploy.bundle import rebundle
from edgekit.deploy.deploy import DeployOptions, deploy_host, rollback_host, status_host
from edgekit.deploy.ssh import StepFailed, Target

pytestmark = pytest.mark.ssh


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


def same_runtime(a: Path, b: Path) -> bool:
    """Bundles with identical requirements and wheels share a venv on the device."""
    from edgekit.deploy.bundle import read_manifest

    ma, mb = read_manifest(a), read_manifest(b)
    pick = lambda m: {k: v["sha256"] for k, v in m["files"].items() if k.startswith("wheels/") or k == "requirements.txt"}
    return pick(ma) == pick(mb)


def opts_for(device, **kw) -> DeployOptions:
    return DeployOptions(serve_port=device.serve_port, health_timeout=kw.pop("health_timeout", 60), **kw)


def deploy(bundle, device, **kw):
    return asyncio.run(deploy_host(bundle, device.target(), opts_for(device, **kw)))


@pytest.fixture(scope="module")
def serving(device, bundles):
    """The device serves release v1 (deployed once for the module)."""
    if device.current() != "v1":
        r = deploy(bundles("v1"), device)
        assert r["status"] == "deployed"
    assert ready(device.serve_port)
    return device


def test_round_trip_deploy_status_upgrade_rollback(serving, bundles):
    device = serving
    st = asyncio.run(status_host(device.target()))
    assert st["current"] == "v1" and st["health"]["ready"] and st["service"]["state"] == "active"
    assert st["service"]["manager"] == "supervisor"  # no systemd here: the profile's fallback
    assert st["model"]["backend"] == "litert" and st["bench"]["p50_ms"] > 0 and st["arch"] == "x86_64"
    assert st["serving"]["infer_ms_p50"] > 0 and st["serving"]["model"] == st["model"]["name"]  # live, on the device
    # Upgrade: same runtime, so the venv is reused and only the model changes.
    r = deploy(bundles("v2"), device)
    assert r["release"] == "v2" and r["previous"] == "v1"
    assert r["venv_reused"] is same_runtime(bundles("v1"), bundles("v2"))
    assert set(r["steps"]) == {"connect", "preflight", "upload", "verify", "install", "smoke", "activate"}
    assert device.current() == "v2" and ready(device.serve_port)
    assert (device.root / "releases" / "v1").is_dir()  # kept for rollback
    # Roll back to v1, then forward again through the CLI.
    rb = asyncio.run(rollback_host(device.target(), opts_for(device)))
    assert rb["release"] == "v1" and rb["previous"] == "v2"
    assert device.current() == "v1" and ready(device.serve_port)
    out = subprocess.run([sys.executable, "-m", "edgekit.cli", "deploy", "--rollback", "--to", "v2", "--host",
                          device.address, "--key", str(device.client_key), "--known-hosts", str(device.known_hosts),
                          "--serve-port", str(device.serve_port), "--json", "-"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["release"] == "v2" and device.current() == "v2"
    rb = asyncio.run(rollback_host(device.target(), opts_for(device)))
    assert device.current() == "v1" and ready(device.serve_port)


def test_checksum_mismatch_is_refused_and_v1_keeps_serving(serving, bundles, tmp_path):
    def tamper(folder):
        model = next((folder / "model").glob("*.tflite"))
        model.write_bytes(model.read_bytes()[:-1] + b"\x01")

    bad = rebundle(bundles("v1"), tmp_path / "tampered.tar.gz", "v-tampered", tamper, rehash=False)
    with pytest.raises(StepFailed) as e:
        deploy(bad, serving)
    assert e.value.step == "verify"
    assert "sha256 mismatch" in str(e.value) and ".tflite" in str(e.value)
    assert "release v1 is still serving" in str(e.value)
    assert serving.current() == "v1" and ready(serving.serve_port)
    assert not (serving.root / "releases" / "v-tampered").exists()


def test_corrupt_model_fails_the_smoke_test_and_v1_keeps_serving(serving, bundles, tmp_path):
    def corrupt(folder):
        model = next((folder / "model").glob("*.tflite"))
        model.write_bytes(b"\0" * 64 + model.read_bytes()[64:])

    bad = rebundle(bundles("v1"), tmp_path / "corrupt.tar.gz", "v-corrupt", corrupt)
    with pytest.raises(StepFailed) as e:
        deploy(bad, serving)
    assert e.value.step == "smoke" and "cannot load the model" in str(e.value)
    assert serving.current() == "v1" and ready(serving.serve_port)
    assert not (serving.root / "releases" / "v-corrupt").exists()


def test_server_that_never_gets_ready_is_rolled_back(serving, bundles, tmp_path):
    # Passes the smoke test, but its server dies on start: the device switches back to v1 by itself.
    def broken_start(folder):
        run = folder / "run.sh"
        run.write_text(run.read_text().replace('exec "$@"', 'echo "model server refuses to start" >&2; exit 3'))

    bad = rebundle(bundles("v1"), tmp_path / "nostart.tar.gz", "v-nostart", broken_start)
    with pytest.raises(StepFailed) as e:
        deploy(bad, serving, health_timeout=20)
    assert e.value.step == "health"
    assert "rolled back to v1, which is serving and healthy" in str(e.value)
    assert "model server refuses to start" in str(e.value)  # the log tail says why
    assert serving.current() == "v1" and ready(serving.serve_port)


def test_connection_failures_name_the_step(serving, bundles, ssh_keys):
    closed = Target.parse(f"{getpass.getuser()}@127.0.0.1:{_closed_port()}", key=str(ssh_keys["key"]),
                          known_hosts=str(ssh_keys["known_hosts"]))
    with pytest.raises(StepFailed) as e:
        asyncio.run(deploy_host(bundles("v1"), closed, DeployOptions()))
    assert e.value.step == "connect" and "cannot reach 127.0.0.1" in str(e.value)

    wrong = serving.target(key=str(ssh_keys["wrong"]))
    with pytest.raises(StepFailed) as e:
        asyncio.run(deploy_host(bundles("v2"), wrong, opts_for(serving)))
    assert e.value.step == "connect" and "authentication refused" in str(e.value)

    empty = ssh_keys["dir"] / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(StepFailed, match="host key not trusted"):
        asyncio.run(status_host(serving.target(known_hosts=str(empty))))
    # accept-new records a first-seen key, after which strict checking passes.
    st = asyncio.run(status_host(serving.target(known_hosts=str(empty), host_key_check="accept-new")))
    assert st["current"] == "v1" and "127.0.0.1" in empty.read_text()
    assert asyncio.run(status_host(serving.target(known_hosts=str(empty))))["current"] == "v1"
    assert serving.current() == "v1" and ready(serving.serve_port)

    r = subprocess.run([sys.executable, "-m", "edgekit.cli", "status", "--host", f"{getpass.getuser()}@127.0.0.1:{_closed_port()}",
                        "--key", str(ssh_keys["key"])], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "step 'connect' failed" in r.stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


def test_fleet_deploys_in_parallel_and_one_bad_host_does_not_stop_the_others(serving, make_device, bundles,
                                                                              ssh_keys, tmp_path):
    fresh = make_device("fresh")
    inv = tmp_path / "inventory.yaml"
    inv.write_text("\n".join([
        "concurrency: 2",
        "defaults:",
        f"  key: {ssh_keys['key']}",
        f"  known_hosts: {ssh_keys['known_hosts']}",
        "hosts:",
        f"  - {{host: {serving.address}, name: pi-a, serve_port: {serving.serve_port}}}",
        f"  - {{host: {fresh.address}, name: pi-b, serve_port: {fresh.serve_port}}}",
        f"  - {{host: {getpass.getuser()}@127.0.0.1:{_closed_port()}, name: pi-off}}",
        "",
    ]))
    out = tmp_path / "fleet.json"
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", "deploy", str(bundles("v2")), "--hosts", str(inv),
                        "--json", str(out), "-q"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "1 of 3 devices failed: pi-off (connect)" in r.stderr
    assert "pi-a" in r.stdout and "deployed" in r.stdout and "failed" in r.stdout  # the summary table
    rows = {x["host"]: x for x in json.loads(out.read_text())}
    assert rows["pi-a"]["status"] == "deployed"
    assert rows["pi-b"]["status"] == "deployed" and rows["pi-b"]["venv_reused"] is False  # a real pip install
    assert rows["pi-off"]["status"] == "failed" and rows["pi-off"]["step"] == "connect"
    assert serving.current() == "v2" and fresh.current() == "v2"
    assert ready(serving.serve_port) and ready(fresh.serve_port)
    st = subprocess.run([sys.executable, "-m", "edgekit.cli", "status", "--hosts", str(inv), "--json", "-"],
                        capture_output=True, text=True, timeout=300)
    assert st.returncode == 2  # pi-off does not answer
    by_host = {x["host"]: x for x in json.loads(st.stdout)}
    assert by_host["pi-b"]["current"] == "v2" and by_host["pi-b"]["health"]["ready"] is True
    assert by_host["pi-b"]["bench"]["p50_ms"] > 0


def test_doctor_checks_the_device_over_ssh(serving):
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", "doctor", "--profile", "x86-cpu", "--host", serving.address,
                        "--key", str(serving.client_key), "--known-hosts", str(serving.known_hosts), "--json", "-"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = {x["check"]: x for x in json.loads(r.stdout)}
    assert rows["architecture"]["ok"] and rows["python"]["ok"] and rows["venv module"]["ok"]
    assert rows["backend litert"]["ok"] and "ai-edge-litert" in rows["backend litert"]["found"]
    assert "supervisor" in rows["service manager"]["found"]
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", "doctor", "--profile", "raspberry-pi-5", "--host",
                        serving.address, "--key", str(serving.client_key), "--known-hosts", str(serving.known_hosts)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "missing what raspberry-pi-5 needs: architecture" in r.stderr


def test_preflight_refuses_a_bundle_for_another_architecture(serving, tflite_model, tmp_path):
    from edgekit.deploy.bundle import build_bundle

    pi = build_bundle(tflite_model, "raspberry-pi-5", tmp_path / "pi.tar.gz", version="pi-1")
    assert pi["arch"] == ["aarch64"]
    before = serving.current()
    with pytest.raises(StepFailed) as e:
        deploy(tmp_path / "pi.tar.gz", serving)
    assert e.value.step == "preflight"
    assert "the device is x86_64, profile 'raspberry-pi-5' is for aarch64" in str(e.value)
    assert serving.current() == before and ready(serving.serve_port)


def test_a_port_held_by_another_server_is_not_taken_for_the_new_release(serving, bundles, tmp_path):
    """Issue 25: another server on the port answers the ready probe of a model with the same name; the new
    service restart-loops on 'address already in use'. Deploy must fail (the ready answer did not come
    from the process it started) and put the previous release back, not report success."""
    import http.server
    import threading

    import socket

    device = serving
    before = device.current()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # every readiness route: 200
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", port), Ready)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with pytest.raises(StepFailed) as e:
            asyncio.run(deploy_host(rebundle(bundles("v1"), tmp_path / "sq.tar.gz", "squatted"), device.target(),
                                    DeployOptions(serve_port=port, health_timeout=20)))
    finally:
        other.shutdown()
        other.server_close()
    assert e.value.step == "health", str(e.value)
    assert "answered by another process" in str(e.value), str(e.value)
    assert device.current() == before and ready(device.serve_port)  # the previous release serves again
