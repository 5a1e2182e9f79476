"""``edgekit doctor``: check a machine (this one, or a device over SSH) against a device profile and
say what is missing and how to fix it. Rows: check, wanted, found, ok (True / False / None = info)."""

from __future__ import annotations

import argparse
import json
import shlex

from ..devices import EXTRA_OF_BACKEND, DeviceProfile
from . import agent
from .deploy import DeployOptions, open_device
from .ssh import Target

_BACKENDS_SNIPPET = ("import json; from edgekit.runtime import describe_backends; "
                     "print(json.dumps(describe_backends()))")


def _row(check, wanted, found, ok, fix=""):
    return {"check": check, "wanted": wanted, "found": found, "ok": ok, "fix": fix if ok is False else ""}


def _accelerator_seen(name: str, backends: list[dict]) -> bool:
    installed = [b for b in backends if b.get("installed")]
    if name == "xnnpack":  # LiteRT's default CPU delegate: present whenever LiteRT is
        return any(b["backend"] == "litert" for b in installed)
    for b in installed:
        for d in b.get("devices") or []:
            if d.get("kind") == name or name in str(d.get("device", "")).lower():
                return True
    return False


def evaluate(profile: DeviceProfile, probe: dict, backends: list[dict] | None, where: str,
             deployed: bool = False) -> list[dict]:
    """``deployed``: backends come from a release's runtime, which holds only what that bundle needs."""
    rows = []
    arch = probe.get("arch", "?")
    rows.append(_row("architecture", ",".join(profile.arch), arch, profile.accepts_arch(arch),
                     f"this machine is not a {profile.name}; pick another profile (edgekit devices --profiles)"))
    py = probe.get("python", "?")
    rows.append(_row("python", f"{profile.python.command} {profile.python.version}", py,
                     profile.python.accepts(py), f"install Python {profile.python.version} (see the profile notes)"))
    venv_pkgs = " ".join(p for p in profile.runtime.apt if "venv" in p) or "python3-venv"
    rows.append(_row("venv module", "venv + ensurepip", "yes" if probe.get("venv") else probe.get("venv_error"),
                     bool(probe.get("venv")), f"apt-get install -y {venv_pkgs}"))
    disk = probe.get("disk_free_mb")
    rows.append(_row("free disk", f">= {profile.min_free_disk_mb} MB at {probe.get('root')}", f"{disk} MB",
                     disk is not None and disk >= profile.min_free_disk_mb, "free some space or pass --root elsewhere"))
    mem = probe.get("mem_available_mb")
    rows.append(_row("memory available", f">= {profile.min_free_memory_mb} MB", f"{mem} MB",
                     mem is not None and mem >= profile.min_free_memory_mb, "stop other services or add swap"))
    if profile.memory_mb:
        rows.append(_row("memory total", f"{profile.memory_mb} MB (typical)", f"{probe.get('mem_total_mb')} MB", None))
    rows.append(_row("service manager", f"{profile.service.manager} (fallback: {profile.service.fallback})",
                     "systemd" if probe.get("systemd") else f"no systemd: the {profile.service.fallback} is used",
                     None))
    for pkg, state in sorted((probe.get("apt") or {}).items()):
        rows.append(_row(f"apt {pkg}", "installed", {True: "installed", False: "missing", None: "no dpkg"}[state],
                         None if state is None else state, f"apt-get install -y {pkg}"))
    if backends is None:
        rows.append(_row("backends", ", ".join(profile.backends), f"no runtime yet on {where}", None,
                         "edgekit deploy installs it"))
        return rows
    by_name = {b["backend"]: b for b in backends}
    for name in profile.backends:
        b = by_name.get(name, {})
        preferred = profile.preferred.get("backend") == name
        installed = bool(b.get("installed"))
        missing_ok = None if (deployed or not preferred) else False
        rows.append(_row(f"backend {name}", "installed" + (" (preferred)" if preferred else ""),
                         b.get("version") or ("not in the deployed runtime" if deployed else "not installed"),
                         True if installed else missing_ok, f"pip install 'edgekit[{EXTRA_OF_BACKEND[name]}]'"))
    for acc in profile.accelerators:
        seen = _accelerator_seen(acc, backends)
        rows.append(_row(f"accelerator {acc}", "visible to a backend", "yes" if seen else "not seen",
                         seen if acc == profile.preferred.get("device") else (True if seen else None),
                         "install the vendor driver/runtime (see the profile's runtime.apt and notes)"))
    return rows


def check_local(profile: DeviceProfile, root: str | None = None) -> list[dict]:
    from ..runtime import describe_backends

    args = argparse.Namespace(root=root or profile.ssh.root, apt=profile.runtime.apt, module=[])
    return evaluate(profile, agent.cmd_probe(args), describe_backends(), "this machine")


async def check_remote(target: Target, profile: DeviceProfile, opts: DeployOptions | None = None) -> list[dict]:
    opts = opts or DeployOptions()
    device = await open_device(target, profile, opts, check_profile=False)
    try:
        probe = await device.agent("probe", "doctor", apt=list(profile.runtime.apt))
        backends = None
        venv_py = f"{device.root}/current/venv/bin/python"
        r = await device.remote.sh(f"test -x {shlex.quote(venv_py)} && {shlex.quote(venv_py)} -c "
                                   f"{shlex.quote(_BACKENDS_SNIPPET)}", "doctor", check=False)
        if r.exit_status == 0:
            try:
                backends = json.loads(r.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                backends = None
    finally:
        await device.remote.close()
    return evaluate(profile, probe, backends, f"{target.label} (no release deployed)", deployed=True)
