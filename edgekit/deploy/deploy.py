"""``edgekit deploy``: put a bundle on a device over SSH, prove it works there, then switch to it.

Steps, each named in errors: connect → preflight (arch, Python, venv, free disk and memory against
the profile) → upload (to ``releases/``, SFTP) → verify (checksums on the device) → install (runtime
venv, pip) → smoke (load, infer, compare, bench on the device) → activate (switch ``current``
atomically, restart the service, health-check). Nothing serving changes before ``activate``; if
activate fails the device itself switches back to the previous release and restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..devices import DeviceProfile, load_profile, normalize_arch, profile_from_dict
from ..errors import ConfigError
from .agent import StepError, check_host
from .bundle import read_manifest, sha256_file
from .ssh import Interrupted, Remote, StepFailed, Target, connect

STEPS = ("connect", "preflight", "upload", "verify", "install", "smoke", "activate")


@dataclass
class DeployOptions:
    """Per-device settings; None means: from the profile (root, python) or the bundle (serve host/port)."""

    root: str | None = None
    python: str | None = None
    serve_port: int | None = None
    serve_host: str | None = None
    pip_args: list = field(default_factory=list)
    health_timeout: float = 60.0
    install_timeout: float = 900.0
    keep: int = 3
    manager: str | None = None  # force "supervisor" or "systemd"; default: the profile's, with fallback
    allowed_signers: str | None = None  # install this allowed-signers file on the device (signed bundles)
    unsigned: str | None = None  # "accept" or "refuse": the device's policy for unsigned bundles


class Device:
    """An open connection to one device with its deploy root resolved and the agent uploaded."""

    def __init__(self, remote: Remote, root: str, arch: str, python_version: str):
        self.remote = remote
        self.root = root
        self.arch = arch
        self.python_version = python_version

    async def agent(self, command: str, step: str, **kw) -> dict:
        return await self.remote.agent(command, self.root, step, **kw)


async def open_device(target: Target, profile: DeviceProfile, opts: DeployOptions, check_profile: bool = True):
    """Connect, check architecture and Python against the profile, upload the device helper."""
    conn = await connect(target)
    remote = Remote(conn, target)
    remote.python = opts.python or profile.python.command
    try:
        py_cmd = shlex.quote(remote.python)  # --python is checked on the host, and quoted here all the same
        probe = ("uname -m; printf '%s\\n' \"$HOME\"; "
                 f"{py_cmd} -c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])' 2>&1 || echo none")
        r = await remote.sh(probe, "preflight", check=False)
        lines = (r.stdout or "").strip().splitlines() + ["", "", ""]
        arch, home, py = lines[0].strip(), lines[1].strip(), lines[2].strip()
        if check_profile and not profile.accepts_arch(arch):
            raise StepFailed(target.label, "preflight", f"the device is {arch or 'unknown'}, profile {profile.name!r} "
                             f"is for {', '.join(profile.arch)}; choose a matching --profile when bundling")
        if not py[:1].isdigit():
            raise StepFailed(target.label, "preflight", f"no Python at {remote.python!r} on the device ({py}); "
                             f"install it (apt-get install python3 python3-venv) or pass --python")
        if check_profile and not profile.python.accepts(py):
            raise StepFailed(target.label, "preflight", f"the device has Python {py}, profile {profile.name!r} needs "
                             f"{profile.python.version}; install a newer Python or pass --python")
        root = opts.root or profile.ssh.root
        if root == "~" or root.startswith("~/"):
            root = home.rstrip("/") + root[1:]
        if not root.startswith("/"):
            raise StepFailed(target.label, "preflight", f"deploy root must be absolute or start with ~/; "
                             f"received {root!r}")
        await remote.install_agent(root)
        return Device(remote, root.rstrip("/"), arch, py)
    except BaseException:
        await remote.close()
        raise


def _profile_of(manifest: dict) -> DeviceProfile:
    return profile_from_dict(manifest["profile"], f"bundle {manifest.get('version')}")


PYTHON_RE = re.compile(r"^[A-Za-z0-9_./+-]{1,200}$")


def check_options(opts: DeployOptions) -> None:
    """Settings that end up in the device's service.env (sourced by its shell) or its command lines:
    checked on the host."""
    try:
        if opts.serve_host is not None:
            check_host(opts.serve_host)
    except StepError as e:
        raise ConfigError(f"serve_host: {e}") from None
    if opts.serve_port is not None and (isinstance(opts.serve_port, bool) or not isinstance(opts.serve_port, int)
                                        or not 1 <= opts.serve_port <= 65535):
        raise ConfigError(f"serve_port must be 1-65535; received {opts.serve_port!r}")
    if opts.python is not None and (not isinstance(opts.python, str) or not PYTHON_RE.match(opts.python)):
        raise ConfigError(f"--python must be a command or path like python3 or /usr/bin/python3.11 (letters, "
                          f"digits, '_', '.', '/', '+', '-'); received {opts.python!r}")
    if opts.unsigned not in (None, "accept", "refuse"):
        raise ConfigError(f"--unsigned must be accept or refuse; received {opts.unsigned!r}")
    if opts.allowed_signers is not None and not Path(opts.allowed_signers).is_file():
        raise ConfigError(f"--allowed-signers {opts.allowed_signers!r}: no such file")


def handled_cancel() -> None:
    """This task turned its cancellation (Ctrl-C) into an answer: clear the request, so later awaits
    (clean-up, timeouts) behave as in a task never cancelled."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()


async def to_the_end(coro, notify: Callable[[], None] | None = None):
    """Await a device-side switch (activate, rollback) to its end even if this task is cancelled
    (Ctrl-C): the device finishes or rolls back by itself once begun, and the caller must say which
    release serves. Returns (result, interrupted); a StepFailed raised after Ctrl-C has ``interrupted``."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task), False
    except asyncio.CancelledError:
        handled_cancel()
        if notify is not None:
            notify()
        try:
            return await task, True
        except StepFailed as e:
            e.interrupted = True
            raise


@contextlib.contextmanager
def _timed(steps: dict, name: str, progress=None, host: str = ""):
    if progress is not None:
        progress(host, name)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        steps[name] = round(time.perf_counter() - t0, 2)


async def deploy_host(bundle: str | Path, target: Target, opts: DeployOptions | None = None,
                      progress: Callable[[str, str], None] | None = None) -> dict:
    """Deploy one bundle to one device. Returns a result dict; raises StepFailed saying what failed and
    which release is serving afterwards. ``progress(host, step)`` is called as each step starts."""
    opts = opts or DeployOptions()
    check_options(opts)
    bundle = Path(bundle)
    manifest = read_manifest(bundle)  # every name that becomes a path on the device is checked here
    profile = _profile_of(manifest)
    version = manifest["version"]
    steps: dict = {}
    t_start = time.perf_counter()
    device = None
    previous = None
    probed = False
    uploading = False
    step = "connect"

    def waiting():
        if progress is not None:
            progress(target.label, f"interrupted: the device finishes switching to {version} or rolls back by "
                                   "itself; waiting to say which release serves")

    try:
        with _timed(steps, "connect", progress, target.label):
            device = await open_device(target, profile, opts)
        step = "preflight"
        with _timed(steps, "preflight", progress, target.label):
            probe = await device.agent("probe", "preflight")
            previous, probed = probe.get("current"), True
            _check_resources(target, profile, probe, manifest, bundle.stat().st_size)
        if opts.allowed_signers or opts.unsigned:
            step = "trust"
            with _timed(steps, "trust", progress, target.label):
                await set_trust(device, opts)
        step = "upload"
        with _timed(steps, "upload", progress, target.label):
            remote_tar = f"{device.root}/releases/.upload-{version}.tar.gz"
            uploading = True
            await device.remote.put(bundle, remote_tar, "upload")
        step = "verify"
        with _timed(steps, "verify", progress, target.label):
            await device.agent("unpack", "verify", tarball=remote_tar, version=version, sha256=sha256_file(bundle))
        step = "install"
        with _timed(steps, "install", progress, target.label):
            inst = await device.agent("install", "install", version=version, pip_arg=list(opts.pip_args),
                                      timeout=opts.install_timeout, ssh_timeout=opts.install_timeout + 120)
        step = "smoke"
        with _timed(steps, "smoke", progress, target.label):
            smoke = (await device.agent("smoke", "smoke", version=version))["smoke"]
        step = "activate"
        with _timed(steps, "activate", progress, target.label):
            act, interrupted = await to_the_end(
                device.agent("activate", "activate", version=version, serve_port=opts.serve_port,
                             serve_host=opts.serve_host, manager=opts.manager, health_timeout=opts.health_timeout,
                             ssh_timeout=2 * opts.health_timeout + 180), waiting)
        if interrupted:
            raise Interrupted(target.label, "activate", f"interrupted (Ctrl-C) during activate, after the switch "
                              f"had begun; the device finished it: release {version} is serving and healthy")
        step = "prune"  # deployed: Ctrl-C from here on only skips tidying old releases
        with contextlib.suppress(StepFailed, asyncio.CancelledError):
            await device.agent("prune", "prune", keep=opts.keep)
    except Interrupted:
        raise
    except StepFailed as e:
        raise _after_failure(e, target, version, previous) from None
    except asyncio.CancelledError:
        # Ctrl-C before activate: nothing serving was touched; the clean-up below removes what was sent.
        handled_cancel()
        after = (f"release {previous} is still serving (nothing was switched)" if previous
                 else "nothing was serving before and nothing was switched" if probed
                 else "nothing was changed on the device")
        raise Interrupted(target.label, step, f"interrupted (Ctrl-C) during {step} — {after}") from None
    finally:
        if device is not None:
            if uploading and step in ("upload", "verify", "install", "smoke"):
                with contextlib.suppress(Exception):
                    await device.agent("discard", "cleanup", version=version)
            await device.remote.close()
    return {
        "host": target.label, "status": "deployed", "release": version, "previous": previous,
        "profile": profile.name, "arch": device.arch, "python": device.python_version,
        "venv_reused": inst.get("reused"), "service": act.get("manager"),
        "health_ms": act.get("health", {}).get("latency_ms"),
        "p50_ms": (smoke.get("bench") or {}).get("p50_ms"), "p90_ms": (smoke.get("bench") or {}).get("p90_ms"),
        "seconds": round(time.perf_counter() - t_start, 2), "steps": steps,
        "emulated": probe.get("emulated"),  # set under QEMU: the smoke latencies are not the device's
    }


async def set_trust(device: Device, opts: DeployOptions) -> dict:
    """Install the allowed-signers file and/or the unsigned-bundle policy on the device."""
    signers = None
    if opts.allowed_signers:
        signers = f"{device.root}/.upload-allowed_signers"
        await device.remote.put(opts.allowed_signers, signers, "trust")
    return await device.agent("trust", "trust", signers=signers, unsigned=opts.unsigned)


def _after_failure(e: StepFailed, target: Target, version: str, previous: str | None) -> StepFailed:
    """Restate a failure with what is serving now: the headline a user needs after a failed deploy."""
    rolled = e.detail.get("rolled_back")
    if rolled:
        if rolled.get("release") and rolled.get("healthy"):
            after = f"rolled back to {rolled['release']}, which is serving and healthy"
        elif rolled.get("release"):
            after = f"rolled back to {rolled['release']}, but it is not healthy: {rolled.get('error', '?')}"
        else:
            after = "there was no previous release; the service is stopped"
    elif previous:
        after = f"release {previous} is still serving (nothing was switched)"
    else:
        after = "nothing was serving before and nothing was switched"
    msg = str(e).split(": ", 1)[1] if ": " in str(e) else str(e)
    msg = msg.removeprefix(f"step '{e.step}' failed: ")
    if getattr(e, "interrupted", False):
        out = Interrupted(target.label, e.step, f"interrupted (Ctrl-C) during activate; the device finished on "
                          f"its own: {msg} — {after}", **e.detail)
    else:
        out = StepFailed(target.label, e.step, f"{msg} — {after}", **e.detail)
    out.release = version
    out.previous = previous
    out.after = after
    return out


def _check_resources(target: Target, profile: DeviceProfile, probe: dict, manifest: dict,
                     bundle_bytes: int = 0) -> None:
    problems = []
    if not probe.get("venv"):
        problems.append(f"Python's venv module is missing ({probe.get('venv_error')}); "
                        f"install {' '.join(p for p in profile.runtime.apt if 'venv' in p) or 'python3-venv'}")
    rt = manifest.get("runtime", {})
    want_py = str(rt.get("python_version", ""))
    have_py = ".".join(str(probe.get("python", "")).split(".")[:2])
    if rt.get("carried") and want_py and have_py != want_py:
        problems.append(f"the bundle carries wheels for Python {want_py}, the device runs Python {have_py}; "
                        f"rebuild it with --python-version {have_py}")
    disk = probe.get("disk_free_mb")
    # The upload and the unpacked release (the manifest's sizes) must fit, leaving what the profile keeps free.
    need_mb = (bundle_bytes + sum(f["size"] for f in manifest["files"].values())) / (1 << 20)
    if disk is not None and disk - need_mb < profile.min_free_disk_mb:
        problems.append(f"{disk} MB free disk at {probe.get('root')}; the bundle needs {need_mb:.1f} MB (upload + "
                        f"unpacked) and profile {profile.name!r} keeps {profile.min_free_disk_mb} MB free")
    mem = probe.get("mem_available_mb")
    if mem is not None and mem < profile.min_free_memory_mb:
        problems.append(f"{mem} MB memory available, profile {profile.name!r} needs {profile.min_free_memory_mb} MB")
    if problems:
        raise StepFailed(target.label, "preflight", "; ".join(problems))


async def rollback_host(target: Target, opts: DeployOptions | None = None, profile: DeviceProfile | None = None,
                        to: str | None = None) -> dict:
    opts = opts or DeployOptions()
    check_options(opts)
    profile = profile or _default_profile()
    t0 = time.perf_counter()
    device = await open_device(target, profile, opts, check_profile=False)

    try:
        out, interrupted = await to_the_end(
            device.agent("rollback", "rollback", to=to, serve_port=opts.serve_port, serve_host=opts.serve_host,
                         manager=opts.manager, health_timeout=opts.health_timeout))
    except StepFailed as e:
        rolled = e.detail.get("rolled_back") or {}
        after = (f"; {rolled['release']} is serving again" if rolled.get("healthy")
                 else "; the device may not be serving" if rolled else "")
        cls = Interrupted if getattr(e, "interrupted", False) else StepFailed
        raise cls(target.label, e.step, str(e).split("failed: ", 1)[-1] + after, **e.detail) from None
    finally:
        await device.remote.close()
    if interrupted:
        raise Interrupted(target.label, "rollback", f"interrupted (Ctrl-C) during rollback; the device finished it: "
                          f"release {out['release']} is serving and healthy")
    return {"host": target.label, "status": "rolled back", "release": out["release"], "previous": out["previous"],
            "health_ms": out["health"]["latency_ms"], "seconds": round(time.perf_counter() - t0, 2)}


async def status_host(target: Target, opts: DeployOptions | None = None,
                      profile: DeviceProfile | None = None) -> dict:
    opts = opts or DeployOptions()
    device = await open_device(target, profile or _default_profile(), opts, check_profile=False)
    try:
        st = await device.agent("status", "status")
    finally:
        await device.remote.close()
    st.pop("ok", None)
    st["host"] = target.label
    st["arch"] = device.arch
    return st


def status_row(st: dict) -> dict:
    h = st.get("health") or {}
    svc = st.get("service") or {}
    bench = st.get("bench") or {}
    return {"host": st["host"], "release": st.get("current") or "-", "backend": (st.get("model") or {}).get("backend"),
            "service": f"{svc.get('state', '?')} ({svc.get('manager', '-')})" if svc.get("manager") else svc.get("state"),
            "ready": h.get("ready"), "health_ms": h.get("latency_ms_p50"),
            "infer_ms": (st.get("serving") or {}).get("infer_ms_p50"),
            "p50_ms": bench.get("p50_ms"), "p90_ms": bench.get("p90_ms"), "rollback_to": st.get("rollback_to"),
            # An emulated CPU (QEMU) measures the emulator: say so next to the figures.
            **({"cpu": f"emulated ({st['emulated'].get('by')})"} if st.get("emulated") else {})}


def _default_profile() -> DeviceProfile:
    """Status and rollback need no bundle: the defaults every profile shares (python3, ~/edgekit)."""
    return DeviceProfile(name="any", arch=[normalize_arch("x86_64")], backends=["litert"])


def resolve_profile(name: str | None) -> DeviceProfile | None:
    return load_profile(name) if name else None


def check_bundle_path(bundle: str | Path | None) -> Path:
    if bundle is None:
        raise ConfigError("deploy needs a bundle (edgekit deploy B.tar.gz --host user@host) or --rollback")
    p = Path(bundle)
    read_manifest(p)  # fails early, before any connection, on a missing or foreign file
    return p
