"""A profile's service settings reach the device: the bundle writes them under ``service``, the agent
reads them from there into ``service.env``, and the server really binds that host and port — with and
without ``bundle``/``deploy`` overrides. Also: a bad release name is refused before anything reaches
the device, and Ctrl-C during activate ends with the switch finished (or rolled back) and said."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from edgekit.deploy import agent
from edgekit.deploy.bundle import build_bundle, read_manifest, rebundle
from edgekit.deploy.deploy import DeployOptions, deploy_host, status_host
from edgekit.devices import ServiceSpec
from edgekit.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) == 0


def ready(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/v2/health/ready", timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


def profile_file(tmp_path: Path, **service) -> Path:
    """x86-cpu with a different service section (same name, so the same runtime and venv)."""
    d = yaml.safe_load((REPO / "devices" / "x86-cpu.yaml").read_text())
    d["service"].update(service)
    p = tmp_path / f"svc-{service.get('port', 'x')}.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def env_of(root: Path) -> dict:
    return agent.read_env(str(root / "service.env"))


def sourced(root: Path) -> tuple[str, str]:
    """What run.sh's shell reads from service.env."""
    r = subprocess.run(["/bin/sh", "-c", '. "$1"; printf "%s %s" "$EDGEKIT_HOST" "$EDGEKIT_PORT"', "sh",
                        str(root / "service.env")], capture_output=True, text=True, check=True)
    host, port = r.stdout.split()
    return host, port


# -- no SSH: every service field, and what wins -------------------------------------------------------

def test_every_service_field_of_the_profile_is_in_the_manifest_where_the_agent_reads_it(tflite_model, tmp_path):
    values = {"manager": "supervisor", "fallback": "supervisor", "host": "127.0.0.1", "port": 18123,
              "name": "edgekit-test"}
    assert set(values) == {f.name for f in dataclasses.fields(ServiceSpec)}  # a new field must be added here
    m = build_bundle(tflite_model, profile_file(tmp_path, **values), tmp_path / "b.tar.gz", version="s1")
    assert {k: m["service"][k] for k in values} == values
    root = tmp_path / "dev"
    L = agent.Layout(str(root))
    root.mkdir()
    env = agent.write_service_env(L, m)  # no flags: the bundle's service section
    assert (env["EDGEKIT_HOST"], env["EDGEKIT_PORT"]) == ("127.0.0.1", "18123")
    assert sourced(root) == ("127.0.0.1", "18123")
    assert agent.unit_name(m) == "edgekit-test.service"
    assert agent.service_manager(m) == "supervisor"
    # The rendered run.sh carries the same defaults, for a device whose service.env is gone.
    import tarfile

    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        run_sh = tar.extractfile("run.sh").read().decode()
    assert "EDGEKIT_HOST=127.0.0.1\n" in run_sh and "EDGEKIT_PORT=18123\n" in run_sh
    # `bundle --serve-host/--serve-port` override the profile's.
    out = subprocess.run([sys.executable, "-m", "edgekit.cli", "bundle", str(tflite_model), "--profile",
                          str(profile_file(tmp_path, **values)), "--out", str(tmp_path / "c.tar.gz"), "--version", "s2",
                          "--serve-host", "localhost", "--serve-port", "18124", "--json", "-"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    m2 = read_manifest(tmp_path / "c.tar.gz")
    assert (m2["service"]["host"], m2["service"]["port"]) == ("localhost", 18124)
    out = subprocess.run([sys.executable, "-m", "edgekit.cli", "bundle", str(tflite_model), "--profile", "x86-cpu",
                          "--out", str(tmp_path / "d.tar.gz"), "--serve-host", "0.0.0.0;id"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "invalid server host '0.0.0.0;id'" in out.stderr


def _manifest(host="127.0.0.1", port=18123, threads=None):
    return {"service": {"host": host, "port": port}, "threads": threads}


@pytest.mark.parametrize("steps, want", [
    # (manifest service, --serve-host, --serve-port) per deploy -> service.env after the last
    ([(_manifest(port=18123), None, None)], ("127.0.0.1", "18123", "")),
    # The bundle's new port wins over the old one: the old value was no flag's.
    ([(_manifest(port=18123), None, None), (_manifest("0.0.0.0", 18124), None, None)], ("0.0.0.0", "18124", "")),
    # A flag wins and sticks across later deploys without it; the other setting still follows the bundle.
    ([(_manifest(), None, 9000), (_manifest("localhost", 18125), None, None)], ("localhost", "9000", "port")),
    ([(_manifest(), "localhost", None), (_manifest("0.0.0.0", 18126), None, None)], ("localhost", "18126", "host")),
    ([(_manifest(), "localhost", 9000), (_manifest("0.0.0.0", 1), "127.0.0.1", None)], ("127.0.0.1", "9000",
                                                                                      "host port")),
])
def test_service_env_precedence(steps, want, tmp_path):
    L = agent.Layout(str(tmp_path))
    for manifest, host, port in steps:
        env = agent.write_service_env(L, manifest, host, port, "supervisor")
    assert (env["EDGEKIT_HOST"], env["EDGEKIT_PORT"], env["EDGEKIT_PINNED"]) == want
    assert sourced(tmp_path) == want[:2] and env_of(tmp_path)["EDGEKIT_MANAGER"] == "supervisor"


@pytest.mark.parametrize("old, want", [
    # service.env from before pins were recorded held the old hard-coded defaults unless a flag was given.
    ("EDGEKIT_HOST='0.0.0.0'\nEDGEKIT_PORT='8080'\n", ("127.0.0.1", "18123")),
    ("EDGEKIT_HOST='0.0.0.0'\nEDGEKIT_PORT='8081'\n", ("127.0.0.1", "8081")),
])
def test_service_env_written_before_pins_keeps_only_flag_values(old, want, tmp_path):
    (tmp_path / "service.env").write_text(old)
    env = agent.write_service_env(agent.Layout(str(tmp_path)), _manifest())
    assert (env["EDGEKIT_HOST"], env["EDGEKIT_PORT"]) == want


@pytest.mark.parametrize("host, port", [("x';touch /tmp/pwned;'", None), ("$(id)", None), (None, 0), (None, 70000)])
def test_service_env_refuses_values_the_shell_would_run(host, port, tmp_path):
    with pytest.raises(agent.StepError, match="invalid server (host|port)"):
        agent.write_service_env(agent.Layout(str(tmp_path)), _manifest(), host, port)
    assert not (tmp_path / "service.env").exists()


# -- real SSH to a local sshd ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def svc(make_device):
    return make_device("svc")


@pytest.fixture(scope="module")
def svc_bundle(tflite_model, device_python, tmp_path_factory):
    """A bundle for a profile whose server is on loopback at a port of its own: (profile, bundle, port)."""
    d = tmp_path_factory.mktemp("svc")
    port = free_port()
    prof = profile_file(d, host="127.0.0.1", port=port)
    b1 = d / "s1.tar.gz"
    try:
        build_bundle(tflite_model, prof, b1, version="s1", with_wheels=True, python_version=device_python)
    except Exception as e:  # pip download needs the package index (or its cache)
        if "pip download" in str(e):
            pytest.skip(f"cannot collect runtime wheels: {str(e)[:300]}")
        raise
    return prof, b1, port


def _deploy(bundle, device, **opts):
    return asyncio.run(deploy_host(bundle, device.target(), DeployOptions(health_timeout=60, **opts)))


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "edgekit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _ssh_flags(device):
    return ["--host", device.address, "--key", device.client_key, "--known-hosts", device.known_hosts]


@pytest.mark.ssh
def test_profile_host_and_port_reach_the_device_with_and_without_overrides(svc, svc_bundle, tflite_model,
                                                                           device_python, tmp_path):
    prof, b1, p1 = svc_bundle
    p2, p3 = free_port(), free_port()
    # 1. No override anywhere: the profile's loopback host and port, not 0.0.0.0:8080.
    r = _deploy(b1, svc)
    assert r["status"] == "deployed"
    env = env_of(svc.root)
    assert (env["EDGEKIT_HOST"], env["EDGEKIT_PORT"], env["EDGEKIT_PINNED"]) == ("127.0.0.1", str(p1), "")
    assert ready(p1) and not listening("127.0.0.2", p1)  # bound to 127.0.0.1 only, not every interface
    assert asyncio.run(status_host(svc.target()))["health"]["port"] == p1
    # 2. A bundle built with another port (`bundle --serve-port`) replaces the old one: no flag had pinned it.
    b2 = tmp_path / "s2.tar.gz"
    build_bundle(tflite_model, prof, b2, version="s2", port=p2, with_wheels=True, python_version=device_python)
    assert read_manifest(b2)["service"]["port"] == p2
    r = _deploy(b2, svc)
    assert env_of(svc.root)["EDGEKIT_PORT"] == str(p2) and ready(p2) and not listening("127.0.0.1", p1)
    # 3. `deploy --serve-host/--serve-port`: they win, and stick for a later deploy without them.
    b3 = rebundle(b1, tmp_path / "s3.tar.gz", "s3")
    out = _cli("deploy", b3, *_ssh_flags(svc), "--serve-host", "localhost", "--serve-port", p3, "-q")
    assert out.returncode == 0, out.stderr
    env = env_of(svc.root)
    assert (env["EDGEKIT_HOST"], env["EDGEKIT_PORT"], env["EDGEKIT_PINNED"]) == ("localhost", str(p3), "host port")
    assert ready(p3) and not listening("127.0.0.1", p2)
    b4 = rebundle(b2, tmp_path / "s4.tar.gz", "s4")
    _deploy(b4, svc)
    assert env_of(svc.root)["EDGEKIT_PORT"] == str(p3) and svc.current() == "s4" and ready(p3)


def _tree(top: Path) -> set[str]:
    return {p.relative_to(top).as_posix() for p in top.rglob("*")}


@pytest.mark.ssh
@pytest.mark.parametrize("version", ["x/../../../../evil-dir/pwn", "../evil", ".hidden"])
def test_a_bad_release_name_is_refused_before_anything_reaches_the_device(svc, bundles, version, tmp_path):
    evil = rebundle(bundles("v1"), tmp_path / "evil.tar.gz", version)
    before = _tree(svc.base)
    with pytest.raises(ConfigError, match="invalid release version"):
        _deploy(evil, svc)
    out = _cli("deploy", evil, *_ssh_flags(svc))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "invalid release version" in out.stderr
    after = _tree(svc.base)
    assert after == before  # no upload, no agent, no folder: not under ~/edgekit, not beside it
    assert not (svc.base / "evil-dir").exists() and not any(".upload-" in p for p in after)


def _interrupt_during_activate(bundle, device, extra=()):
    """Run `edgekit deploy` and send it SIGINT (Ctrl-C) once it reports the activate step."""
    # SIGINT back to its default in the child: pytest started in the background (`cmd &` in a script) hands
    # it down ignored, and Python then never turns Ctrl-C into KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "edgekit.cli", "deploy", str(bundle), *map(str, _ssh_flags(device)),
                             *map(str, extra)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    deadline = time.time() + 300
    for line in proc.stderr:
        lines.append(line)
        if "activate ..." in line:
            time.sleep(1.0)  # the device is switching (the server takes seconds to come up)
            proc.send_signal(signal.SIGINT)
            break
        assert time.time() < deadline, lines
    rest, err = proc.communicate(timeout=300)
    return proc.returncode, "".join(lines) + err


@pytest.mark.ssh
def test_ctrl_c_during_activate_finishes_the_switch_and_says_what_serves(svc, svc_bundle, tmp_path):
    _, b1, _ = svc_bundle
    if svc.current() is None:
        _deploy(b1, svc)
    port = int(env_of(svc.root)["EDGEKIT_PORT"])

    def slow_start(folder):  # a server that takes 4 s to start: Ctrl-C lands mid-switch
        run = folder / "run.sh"
        run.write_text(run.read_text().replace('exec "$@"', 'sleep 4; exec "$@"'))

    slow = rebundle(b1, tmp_path / "int.tar.gz", "s-int", slow_start)
    code, err = _interrupt_during_activate(slow, svc)
    assert code == 130, err
    assert "waiting to say which release serves" in err
    last = err.strip().splitlines()[-1]
    assert "interrupted (Ctrl-C) during activate" in last and "release s-int is serving and healthy" in last, err
    assert "Aborted" not in err and svc.current() == "s-int" and ready(port)

    def dies(folder):  # passes the smoke test, its server never comes up: the device rolls back by itself
        run = folder / "run.sh"
        run.write_text(run.read_text().replace('exec "$@"', 'sleep 2; exit 3'))

    bad = rebundle(b1, tmp_path / "bad.tar.gz", "s-bad", dies)
    code, err = _interrupt_during_activate(bad, svc, ["--health-timeout", "6"])
    error = next(ln for ln in err.splitlines() if ln.startswith("Error:"))  # then the server's log tail
    assert code == 130 and "interrupted (Ctrl-C) during activate; the device finished on its own" in error, err
    assert err.rstrip().endswith("rolled back to s-int, which is serving and healthy"), err
    assert svc.current() == "s-int" and ready(port)
