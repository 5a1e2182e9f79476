"""An emulated Raspberry Pi: arm64 Debian bookworm under QEMU user-mode emulation, reached over SSH.

Raspberry Pi OS 64-bit is Debian bookworm for arm64, so a debootstrapped arm64 root run through
``qemu-user-static`` (binfmt_misc) is the same userland a Pi has: ``uname -m`` says aarch64, pip
picks ``manylinux_*_aarch64`` wheels and LiteRT runs its aarch64 kernels (emulated, so slowly).

* ``build_root()`` debootstraps the root once (python3, python3-venv, python3-pip, openssh-server, a
  ``pi`` user) and caches it as a tarball named by a hash of its inputs, so a repeat run only unpacks.
* ``EmulatedPi`` unpacks the cached root into a work folder, mounts ``/proc`` (not ``/sys``: LiteRT's
  CPU detection crashed under QEMU with ``/sys`` bound), writes a throwaway host key and user key and
  starts the root's own sshd (chroot) on a free 127.0.0.1 port. ``stop()`` kills every process whose
  root is that folder, unmounts ``/proc`` and removes the folder.

Needs root (debootstrap, chroot, mount) and binfmt_misc registration for aarch64; where either is
missing, ``Unavailable`` says why. CLI: ``python -m edgekit.deploy.emulated build|start|stop|status``.
Nothing here imports beyond the standard library: it is host-side test and lab tooling.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = "bookworm"
ARCH = "arm64"
MIRROR = "http://deb.debian.org/debian"
# ca-certificates: pip on the device can reach an index for bundles without wheels.
PACKAGES = ("python3", "python3-venv", "python3-pip", "openssh-server", "ca-certificates")
USER = "pi"
# Bump when the way the root is made changes: it is part of the cache key.
RECIPE = 1
BINFMT = Path("/proc/sys/fs/binfmt_misc")
SSHD_CONFIG = "/etc/ssh/edgekit_sshd_config"
# What tells a device it is emulated: the agent and the tests read it (the figures measured there are
# QEMU's, not a Pi's).
MARKER = "/etc/edgekit-emulated.json"
# The unpacked root is ~330 MB, a runtime venv ~200 MB per distinct bundle runtime; memory is only
# used as files are written.
TMPFS_SIZE = "4g"


class Unavailable(RuntimeError):
    """This machine cannot run the emulated device (no root, no QEMU, binfmt not permitted...)."""


def cache_dir() -> Path:
    base = os.environ.get("EDGEKIT_CACHE")
    return (Path(base) if base else Path("~/.cache/edgekit").expanduser()) / "emulated"


def mirror() -> str:
    return os.environ.get("EDGEKIT_EMULATED_MIRROR", MIRROR)


def cache_key() -> str:
    spec = {"suite": SUITE, "arch": ARCH, "mirror": mirror(), "packages": sorted(PACKAGES), "user": USER,
            "recipe": RECIPE}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def _compressor() -> tuple[str, list[str]]:
    # zstd packs and unpacks the ~300 MB root several times faster than gzip; both are in Debian.
    if shutil.which("zstd"):
        return "tar.zst", ["-I", "zstd -T0 -3"]
    return "tar.gz", ["-z"]


def cached_root() -> Path | None:
    for ext in ("tar.zst", "tar.gz"):
        p = cache_dir() / f"debian-{SUITE}-{ARCH}-{cache_key()}.{ext}"
        if p.is_file():
            return p
    return None


# -- what the machine must allow --------------------------------------------------------------------

def check_host(need_debootstrap: bool = False) -> None:
    """Raise Unavailable saying exactly what is missing; register binfmt for aarch64 if it is not."""
    if os.name != "posix" or sys.platform != "linux":
        raise Unavailable(f"needs Linux (binfmt_misc, chroot); this is {sys.platform}")
    if os.geteuid() != 0:
        raise Unavailable("needs root (debootstrap, chroot and mounting /proc in the device root)")
    tools = ["chroot", "mount", "umount", "tar", "ssh-keygen"] + (["debootstrap"] if need_debootstrap else [])
    missing = [t for t in tools if not shutil.which(t) and not Path("/usr/sbin", t).exists()]
    if not Path("/usr/bin/qemu-aarch64-static").exists():
        missing.append("qemu-aarch64-static")
    if missing:
        raise Unavailable(f"missing {', '.join(missing)}: apt-get install -y qemu-user-static binfmt-support "
                          "debootstrap openssh-client zstd")
    ensure_binfmt()


def ensure_binfmt() -> None:
    entry = BINFMT / "qemu-aarch64"
    if not (BINFMT / "register").exists():
        r = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True, text=True)
        if r.returncode != 0:
            raise Unavailable(f"binfmt_misc is not mounted and mounting it is not permitted here "
                              f"({r.stderr.strip() or r.returncode}); an emulated aarch64 device needs it")
    if not _binfmt_enabled(entry):
        if not shutil.which("update-binfmts"):
            raise Unavailable("aarch64 binfmt is not registered and update-binfmts is missing: "
                              "apt-get install -y binfmt-support qemu-user-static")
        r = subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, text=True)
        if r.returncode != 0 or not _binfmt_enabled(entry):
            raise Unavailable("binfmt registration for qemu-aarch64 is not permitted here "
                              f"(update-binfmts --enable qemu-aarch64: {(r.stderr or r.stdout).strip() or r.returncode})")
    flags = next((ln.split(":", 1)[1].strip() for ln in entry.read_text().splitlines() if ln.startswith("flags:")), "")
    if "F" not in flags:
        # Without F (fix-binary) the kernel looks the interpreter up inside the chroot, where it is not.
        raise Unavailable(f"qemu-aarch64 binfmt is registered without the F flag (flags: {flags or 'none'}); "
                          "re-register it with Debian's qemu-user-static (update-binfmts --enable qemu-aarch64)")


def _binfmt_enabled(entry: Path) -> bool:
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


# -- building the root once -------------------------------------------------------------------------

def _chroot(root: Path, *cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
           "HOME": "/root"}
    r = subprocess.run(["chroot", str(root), *cmd], capture_output=True, text=True, env=env, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"in the device root, {' '.join(cmd)} exited {r.returncode}: "
                           f"{(r.stderr or r.stdout).strip()[-1500:]}")
    return r


def finish_root(root: Path) -> None:
    """After debootstrap: the Pi's user, no apt caches, no baked-in host keys, the emulation marker."""
    # Password '*' (none, but not locked): with UsePAM off, sshd refuses even key logins to a locked ('!') account.
    _chroot(root, "useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", USER)
    _chroot(root, "apt-get", "clean")
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    # Host keys are made per start (throwaway); a cached key would be shared by every run.
    for k in (root / "etc/ssh").glob("ssh_host_*"):
        k.unlink()
    (root / "etc/hostname").write_text("raspberrypi\n")
    qemu = subprocess.run(["/usr/bin/qemu-aarch64-static", "--version"], capture_output=True, text=True)
    (root / MARKER.lstrip("/")).write_text(json.dumps({
        "emulated": True, "by": "qemu-user", "qemu": (qemu.stdout.splitlines() or ["?"])[0],
        "note": "arm64 Debian under QEMU user-mode emulation on an x86-64 host: timings measured here "
                "are the emulator's, not a Raspberry Pi's", "suite": SUITE, "key": cache_key()}) + "\n")


def pack_root(root: Path, out: Path) -> None:
    _, zflags = _compressor()
    partial = out.with_name(out.name + ".partial")
    subprocess.run(["tar", "--numeric-owner", "-C", str(root), *zflags, "-cf", str(partial), "."], check=True)
    os.replace(partial, out)  # a cache entry is complete or absent, never half-written


def build_root(force: bool = False, log=print) -> Path:
    """The cached root tarball, debootstrapping it first if there is none for these inputs."""
    existing = cached_root()
    if existing and not force:
        return existing
    check_host(need_debootstrap=True)
    ext, _ = _compressor()
    out = cache_dir() / f"debian-{SUITE}-{ARCH}-{cache_key()}.{ext}"
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=out.parent))
    root = work / "root"
    t0 = time.time()
    try:
        log(f"debootstrap {SUITE} {ARCH} from {mirror()} (a few minutes; QEMU runs the arm64 maintainer scripts)")
        r = subprocess.run(["debootstrap", f"--arch={ARCH}", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                            SUITE, str(root), mirror()], capture_output=True, text=True)
        if r.returncode != 0:
            dlog = root / "debootstrap" / "debootstrap.log"
            detail = dlog.read_text()[-1500:] if dlog.exists() else (r.stderr or r.stdout)[-1500:]
            raise RuntimeError(f"debootstrap failed ({r.returncode}): {detail}")
        finish_root(root)
        log(f"packing {out.name}")
        pack_root(root, out)
        log(f"built in {time.time() - t0:.0f}s: {out} ({out.stat().st_size >> 20} MB)")
        return out
    finally:
        _remove_tree(work)


# -- one running device -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt.startswith(prefix) or mnt == prefix.rstrip("/"):
                out.append(mnt)
    return sorted(out, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Delete a device folder, but never through a mount (a bound /proc or /dev would be walked)."""
    if not path.exists():
        return
    left = _mounts_under(path)
    if left:
        raise RuntimeError(f"refusing to delete {path}: still mounted: {', '.join(left)}")
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def processes_in(root: Path) -> list[int]:
    """Every process whose root directory is this device (sshd, shells, the model server, its supervisor)."""
    want = str(root.resolve())
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.readlink(d / "root") == want:
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


class EmulatedPi:
    """One emulated Raspberry Pi: ``start()``, use ``target()`` / ``address``, ``stop()`` (also on errors)."""

    def __init__(self, workdir: str | os.PathLike | None = None, port: int | None = None,
                 serve_port: int | None = None):
        self.workdir = Path(workdir) if workdir else None
        self.port = port
        self.serve_port = serve_port
        self.sshd_pid: int | None = None
        self.timings: dict = {}

    # paths on the host side
    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def client_key(self) -> Path:
        return self.workdir / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.workdir / "known_hosts"

    @property
    def home(self) -> Path:
        return self.root / "home" / USER

    @property
    def address(self) -> str:
        return f"{USER}@127.0.0.1:{self.port}"

    def target(self, **kw):
        from .ssh import Target

        kw.setdefault("key", str(self.client_key))
        kw.setdefault("known_hosts", str(self.known_hosts))
        return Target.parse(self.address, **kw)

    def ssh_args(self) -> list[str]:
        """The flags every edgekit deploy/status command needs to reach this device."""
        return ["--host", self.address, "--key", str(self.client_key), "--known-hosts", str(self.known_hosts)]

    def start(self, base: str | os.PathLike | None = None, build_log=print) -> "EmulatedPi":
        check_host()
        t0 = time.time()
        tarball = build_root(log=build_log)
        self.timings["root_s"] = round(time.time() - t0, 1)
        base = Path(base) if base else cache_dir() / "run"
        base.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix="pi-", dir=base))
        try:
            self._start(tarball)
        except BaseException:
            self.stop()
            raise
        self.timings["start_s"] = round(time.time() - t0 - self.timings["root_s"], 1)
        return self

    def _start(self, tarball: Path) -> None:
        root = self.root
        root.mkdir()
        # A tmpfs root: unpacking and pip's thousands of small files go to memory, and throwing the
        # device away is an unmount (deleting a venv-laden root from a busy disk took a minute).
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=755", "edgekit-pi", str(root)],
                       check=True)
        _, zflags = ("", ["-I", "zstd -T0"]) if tarball.name.endswith(".zst") else ("", ["-z"])
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), *zflags, "-xpf", str(tarball)], check=True)
        # /proc yes (ps, /proc/meminfo for the deploy preflight, Python's os.cpu_count); /sys no: with /sys
        # bound, LiteRT's CPU feature detection crashed under QEMU.
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        self.port = self.port or free_port()
        self.serve_port = self.serve_port or free_port()
        for p in (self.workdir / "host_ed25519", self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgekit-emulated", "-f", str(p)],
                           check=True)
        etc_ssh = root / "etc/ssh"
        shutil.copy(self.workdir / "host_ed25519", etc_ssh / "ssh_host_ed25519_key")
        os.chmod(etc_ssh / "ssh_host_ed25519_key", 0o600)
        uid, gid = _ids(root, USER)
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        for p in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(p, uid, gid)
        os.chmod(ssh_dir / "authorized_keys", 0o600)
        (root / SSHD_CONFIG.lstrip("/")).write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            "HostKey /etc/ssh/ssh_host_ed25519_key",
            "PidFile /run/sshd-edgekit.pid",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "UsePAM no",  # no PAM stack is configured in a minbase root; keys are all this device takes
            "Subsystem sftp internal-sftp",  # no extra emulated process per upload
            "MaxSessions 30",
            "MaxStartups 30",
            "LoginGraceTime 120",  # key exchange under emulation is slow on a busy 2-core host
            "LogLevel ERROR",
            "",
        ]))
        (root / "run/sshd").mkdir(parents=True, exist_ok=True)
        pub = Path(f"{self.workdir / 'host_ed25519'}.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n")
        log = open(self.workdir / "sshd.log", "w")
        proc = subprocess.Popen(["chroot", str(root), "/usr/sbin/sshd", "-D", "-e", "-f", SSHD_CONFIG],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
        self.sshd_pid = proc.pid
        deadline = time.time() + 90  # sshd's start under QEMU takes a second or two, more on a busy host
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    self._save_state()
                    return
            if proc.poll() is not None:
                raise RuntimeError(f"sshd in the emulated root exited {proc.returncode}: "
                                   f"{(self.workdir / 'sshd.log').read_text()[-1500:]}")
            time.sleep(0.2)
        raise RuntimeError(f"sshd in the emulated root did not listen on {self.port} within 90s")

    def run(self, command: str, user: str = USER, timeout: float = 300) -> subprocess.CompletedProcess:
        """A shell command inside the device (through chroot, not SSH): for checks from the host side."""
        home = "/root" if user == "root" else f"/home/{user}"
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": home}
        return subprocess.run(["chroot", f"--userspec={user}:{user}", str(self.root), "/bin/sh", "-c",
                               f"cd {home} && {command}"], capture_output=True, text=True, env=env, timeout=timeout)

    def ssh(self, command: str, timeout: float = 900) -> tuple[int, str, str]:
        """A command on the device over SSH, as a user would run it: (exit status, stdout, stderr)."""
        import asyncio

        from .ssh import connect

        async def go():
            conn = await connect(self.target())
            try:
                r = await asyncio.wait_for(conn.run(command, check=False), timeout)
                return r.exit_status, r.stdout or "", r.stderr or ""
            finally:
                conn.close()
                await conn.wait_closed()

        return asyncio.run(go())

    def stop(self, keep: bool = False) -> None:
        """Kill everything running in the device, unmount /proc, delete the folder (unless ``keep``)."""
        if self.workdir is None or not self.workdir.exists():
            return
        root = self.root
        t0 = time.time()
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            pids = processes_in(root) if root.exists() else []
            if self.sshd_pid and sig == signal.SIGTERM:
                pids.append(self.sshd_pid)
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + wait
            while time.time() < deadline and processes_in(root):
                time.sleep(0.1)
            if not processes_in(root):
                break
        for mnt in _mounts_under(root) if root.exists() else []:
            if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mnt], capture_output=True)  # busy: detach now, free later
        self.timings["kill_umount_s"] = round(time.time() - t0, 1)
        _state_file(self.workdir).unlink(missing_ok=True)
        if not keep:
            _remove_tree(self.workdir)
        self.timings["stop_s"] = round(time.time() - t0, 1)

    def __enter__(self) -> "EmulatedPi":
        return self if self.workdir and self.port else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _save_state(self) -> None:
        _state_file(self.workdir).write_text(json.dumps({
            "workdir": str(self.workdir), "port": self.port, "serve_port": self.serve_port,
            "sshd_pid": self.sshd_pid, "address": self.address, "key": str(self.client_key),
            "known_hosts": str(self.known_hosts)}, indent=2) + "\n")

    @classmethod
    def running(cls) -> list["EmulatedPi"]:
        out = []
        for f in sorted((cache_dir() / "run").glob("*.json")):
            st = json.loads(f.read_text())
            pi = cls(st["workdir"], st["port"], st["serve_port"])
            pi.sshd_pid = st.get("sshd_pid")
            out.append(pi)
        return out


def _state_file(workdir: Path) -> Path:
    return workdir.parent / f"{workdir.name}.json"


def _ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == user:
            return int(f[2]), int(f[3])
    raise RuntimeError(f"user {user!r} is missing from the device root")


def corrupt_model_bundle(src: str | os.PathLike, dest: str | os.PathLike, version: str) -> Path:
    """A copy of a bundle with a garbled model but valid checksums: it passes the device's verify step
    and must fail its smoke test, which is how a rehearsal of a failing deploy looks."""
    from .bundle import rebundle

    def garble(folder: Path) -> None:
        manifest = json.loads((folder / "manifest.json").read_text())
        model = folder / manifest["model"]["path"]
        model.write_bytes(b"\0" * 64 + model.read_bytes()[64:])

    return rebundle(src, dest, version, garble)


# -- CLI ------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgekit.deploy.emulated",
                                 description="An emulated Raspberry Pi (arm64 Debian under QEMU) for deploy tests.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="debootstrap and cache the arm64 root (once; later runs reuse it)")
    b.add_argument("--force", action="store_true", help="rebuild even if a cached root exists")
    sub.add_parser("start", help="start a device (sshd on a free 127.0.0.1 port); prints how to deploy to it")
    s = sub.add_parser("stop", help="stop devices started with `start` (all, or the one on --port)")
    s.add_argument("--port", type=int)
    sub.add_parser("status", help="list the running devices and the cached root")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            t0 = time.time()
            path = build_root(force=args.force)
            print(json.dumps({"root": str(path), "seconds": round(time.time() - t0, 1)}))
        elif args.cmd == "start":
            pi = EmulatedPi().start()
            print(json.dumps({"address": pi.address, "key": str(pi.client_key), "known_hosts": str(pi.known_hosts),
                              "serve_port": pi.serve_port, "workdir": str(pi.workdir), **pi.timings}, indent=2))
            print(f"deploy: edgekit deploy B.tar.gz {' '.join(pi.ssh_args())} --serve-port {pi.serve_port} "
                  "--health-timeout 300", file=sys.stderr)
        elif args.cmd == "stop":
            for pi in EmulatedPi.running():
                if args.port in (None, pi.port):
                    pi.stop()
                    print(f"stopped {pi.address}")
        else:
            print(json.dumps({"cached_root": str(cached_root() or ""), "key": cache_key(),
                              "running": [{"address": p.address, "workdir": str(p.workdir)}
                                          for p in EmulatedPi.running()]}, indent=2))
    except Unavailable as e:
        print(f"emulated device unavailable: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
