"""Real OpenSSH servers on 127.0.0.1 stand in for devices.

Each "device" is Debian's sshd on a free port with a throwaway host key, a throwaway user key and
its own home folder (sshd's SetEnv HOME), so ``~/edgekit`` on the device is a temp folder. The
device's Python is the machine's ``python3`` (as on a Pi), and its runtime is pip-installed into a
venv from the wheels the test bundles carry, the same path an offline device takes.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class Device:
    """One sshd = one device. ``target(...)`` gives an edgekit Target that reaches it."""

    def __init__(self, base: Path, client_key: Path, known_hosts: Path):
        self.base = base
        self.home = base / "home"
        self.home.mkdir(parents=True)
        self.port = free_port()
        self.serve_port = free_port()
        self.client_key = client_key
        host_key = keygen(base / "host_ed25519")
        (base / "authorized_keys").write_text(Path(str(client_key) + ".pub").read_text())
        self.config = base / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {base / 'sshd.pid'}",
            f"AuthorizedKeysFile {base / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",  # temp folders are world-traversable; this sshd serves tests only
            f"SetEnv HOME={self.home}",
            "Subsystem sftp internal-sftp",
            "MaxSessions 30",
            "MaxStartups 30",
            "LogLevel ERROR",
            "",
        ]))
        pub = Path(str(host_key) + ".pub").read_text().split()
        with open(known_hosts, "a") as f:
            f.write(f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n")
        self.known_hosts = known_hosts
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stderr=open(base / "sshd.log", "w"))
        deadline = time.time() + 10
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(base / 'sshd.log').read_text()}")
            time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    @property
    def root(self) -> Path:
        return self.home / "edgekit"

    @property
    def address(self) -> str:
        # sshd run by a non-root user can only log that same user in.
        return f"{getpass.getuser()}@127.0.0.1:{self.port}"

    def target(self, **kw):
        from edgekit.deploy.ssh import Target

        kw.setdefault("key", str(self.client_key))
        kw.setdefault("known_hosts", str(self.known_hosts))
        return Target.parse(self.address, **kw)

    def current(self) -> str | None:
        try:
            return os.path.basename(os.readlink(self.root / "current"))
        except OSError:
            return None

    def stop_service(self) -> None:
        script = self.root / "current" / "supervise.sh"
        if script.exists():
            subprocess.run(["/bin/sh", str(script), "stop"], capture_output=True, timeout=30)

    def close(self) -> None:
        self.stop_service()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# sshd's default PATH for a session: the "device" runs whichever python3 comes first on it.
SSH_PATH = "/usr/local/bin:/usr/bin:/bin"


@pytest.fixture(scope="session")
def device_python() -> str:
    """The device's Python version (X.Y): carried wheels must be built for it."""
    py = shutil.which("python3", path=SSH_PATH)
    if py is None:
        pytest.skip("no python3 on the device PATH (apt-get install -y python3 python3-venv)")
    r = subprocess.run([py, "-c", "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"{py} has no venv/ensurepip module (apt-get install -y python3-venv): {r.stderr.strip()[-200:]}")
    return r.stdout.strip()


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory, device_python):
    if not os.path.exists(SSHD):
        pytest.skip(f"{SSHD} is missing: install Debian's openssh-server (apt-get install -y openssh-server "
                    "openssh-client) to run the SSH deploy tests")
    d = tmp_path_factory.mktemp("ssh")
    key = keygen(d / "client_ed25519")
    wrong = keygen(d / "wrong_ed25519")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation folder
    return {"key": key, "wrong": wrong, "known_hosts": d / "known_hosts", "dir": d}


@pytest.fixture(scope="session")
def make_device(ssh_keys, tmp_path_factory):
    devices = []

    def make(name: str = "device") -> Device:
        dev = Device(tmp_path_factory.mktemp(name), ssh_keys["key"], ssh_keys["known_hosts"])
        devices.append(dev)
        return dev

    yield make
    for dev in devices:
        dev.close()


@pytest.fixture(scope="session")
def device(make_device):
    return make_device("pi")


def _tiny_tflite(path: Path) -> Path:
    """A 3-class image classifier, built in a subprocess so this test process never imports TensorFlow."""
    code = (
        "import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'\n"
        "import numpy as np, tensorflow as tf, keras\n"
        "keras.utils.set_random_seed(0)\n"
        "m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation='relu'),\n"
        "    keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation='softmax')])\n"
        f"open({str(path)!r}, 'wb').write(tf.lite.TFLiteConverter.from_keras_model(m).convert())\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def tflite_model(request, tmp_path_factory):
    """The lead's shared exported model when conftest provides it, else a tiny one of our own."""
    try:
        return Path(request.getfixturevalue("exported_models")["tflite"])
    except pytest.FixtureLookupError:
        return _tiny_tflite(tmp_path_factory.mktemp("model") / "tiny.tflite")


@pytest.fixture(scope="session")
def bundles(tflite_model, tmp_path_factory, device_python):
    """Bundles for the x86-cpu profile carrying every wheel (offline install on the device)."""
    from edgekit.deploy.bundle import build_bundle

    d = tmp_path_factory.mktemp("bundles")
    out = {}

    def build(version: str, model: Path) -> Path:
        path = d / f"{version}.tar.gz"
        try:
            build_bundle(model, "x86-cpu", path, version=version, with_wheels=True, python_version=device_python)
        except Exception as e:  # pip download needs the package index (or its cache)
            if "pip download" in str(e):
                pytest.skip(f"cannot collect runtime wheels for the test bundles: {str(e)[:300]}")
            raise
        return path

    def make(version: str, model: Path = tflite_model) -> Path:
        if version in ("v1", "v2") and "v1" not in out:
            # Built back to back so both carry the same edgekit wheel (the checkout may change meanwhile).
            out["v1"], out["v2"] = build("v1", model), build("v2", model)
        if version not in out:
            out[version] = build(version, model)
        return out[version]

    return make
