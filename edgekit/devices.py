"""Device profiles: what a deployment target is (``devices/*.yaml``).

A profile says the CPU architecture, OS and Python, the backends and accelerators there, the
preferred format and precision, threads, memory and disk budget, how to install the runtime
(pip requirements per backend, apt packages, venv and pip options, wheel platforms for
offline bundles), the service manager and SSH defaults.

Profiles are found in ``$EDGEKIT_DEVICES`` (colon-separated folders), then in ``devices/`` of a
source checkout, then in the copies shipped inside the package (``edgekit/_resources/devices``),
so ``edgekit devices --profiles`` works from a checkout and from an installed wheel alike.
Device-side safe: stdlib + PyYAML only.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError, allowed
from .formats import BACKENDS, BY_BACKEND, FORMATS
from .formats import PRECISIONS as _QUANTIZED

# What a profile may prefer, in order: float32 or any precision the quantizers make ("float16" reads fp16).
PRECISIONS = ("float32",) + _QUANTIZED
PRECISION_ALIASES = {"float16": "fp16", "fp32": "float32"}
SERVICE_MANAGERS = ("systemd", "supervisor")
FORMAT_OF_BACKEND = {b: f.name for b, f in BY_BACKEND.items()}
# The edgekit extra that brings each backend's runtime (pyproject's optional-dependencies).
EXTRA_OF_BACKEND = {b: f.extra for b, f in BY_BACKEND.items()}
# `uname -m` spellings of the same architecture.
ARCH_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64", "armhf": "armv7l"}


def normalize_arch(arch: str) -> str:
    a = str(arch).strip().lower()
    return ARCH_ALIASES.get(a, a)


@dataclass
class PythonSpec:
    version: str = ">=3.10"  # a minimum like ">=3.10"
    command: str = "python3"  # how to start it on the device

    def minimum(self) -> tuple[int, ...]:
        m = re.fullmatch(r"\s*>=\s*(\d+)\.(\d+)\s*", self.version)
        if not m:
            raise ConfigError(f"python.version must look like '>=3.10'; received {self.version!r}")
        return int(m.group(1)), int(m.group(2))

    def accepts(self, version: str) -> bool:
        parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
        return parts >= self.minimum()


@dataclass
class RuntimeSpec:
    python_version: str = "3.11"  # the device's Python, for picking carried wheels
    wheel_platforms: list = field(default_factory=list)  # pip --platform tags for carried wheels
    requirements: dict = field(default_factory=dict)  # backend -> pip requirement lines
    apt: list = field(default_factory=list)  # system packages the device needs (doctor checks them)
    venv_args: list = field(default_factory=list)  # e.g. --system-site-packages (JetPack's TensorRT)
    pip_args: list = field(default_factory=list)  # e.g. --extra-index-url for vendor wheels

    def requirements_for(self, backend: str) -> list[str]:
        """Requirement lines for a backend; the default pulls edgekit with that backend's extra and serve."""
        reqs = self.requirements.get(backend)
        return list(reqs) if reqs else [f"edgekit[{EXTRA_OF_BACKEND[backend]},serve]"]


@dataclass
class ServiceSpec:
    manager: str = "systemd"
    fallback: str = "supervisor"  # used where systemd is absent (chroots, containers, test homes)
    host: str = "0.0.0.0"
    port: int = 8080
    name: str = "edgekit"  # systemd unit edgekit.service


@dataclass
class SSHSpec:
    user: str | None = None
    port: int = 22
    root: str = "~/edgekit"  # where releases/, venvs/ and current live on the device


@dataclass
class DeviceProfile:
    name: str
    arch: list
    os: str = ""
    description: str = ""
    python: PythonSpec = field(default_factory=PythonSpec)
    backends: list = field(default_factory=list)
    accelerators: list = field(default_factory=list)
    preferred: dict = field(default_factory=dict)  # format, precision (a list, best first), backend, device
    threads: int | None = None
    memory_mb: int | None = None
    min_free_memory_mb: int = 256
    min_free_disk_mb: int = 400
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    service: ServiceSpec = field(default_factory=ServiceSpec)
    ssh: SSHSpec = field(default_factory=SSHSpec)
    notes: str = ""
    source: str = ""  # the file it came from

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        """One row for ``edgekit devices --profiles``."""
        p = self.preferred
        return {
            "name": self.name,
            "arch": ",".join(self.arch),
            "os": self.os,
            "python": self.python.version,
            "backends": ",".join(self.backends),
            "accelerators": ",".join(self.accelerators),
            "format": p.get("format"),
            "precision": ",".join(p.get("precision") or []) or None,
            "device": p.get("device"),
            "threads": self.threads,
            "memory_mb": self.memory_mb,
        }

    def accepts_arch(self, arch: str) -> bool:
        return normalize_arch(arch) in {normalize_arch(a) for a in self.arch}

    def check_backend(self, backend: str) -> None:
        if backend not in self.backends:
            raise ConfigError(f"Profile {self.name!r} has no {backend!r} backend; received a model for {backend}. "
                              f"This profile runs: {', '.join(self.backends)} "
                              f"(preferred format: {self.preferred.get('format')})")


# -- loading and validation ---------------------------------------------------------------------

def _known(cls) -> list[str]:
    return [f.name for f in fields(cls)]


def _check_keys(d: dict, cls, where: str) -> None:
    unknown = sorted(set(d) - set(_known(cls)) - {"source"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}. Allowed: {', '.join(_known(cls))}")


def _as_list(v, key: str, where: str) -> list:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list):
        raise ConfigError(f"{where}: {key} must be a list; received {v!r}")
    return [str(x) for x in v]


def _sub(cls, d, key: str, where: str):
    if d is None:
        return cls()
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: {key} must be a mapping; received {d!r}")
    _check_keys(d, cls, f"{where} ({key})")
    return cls(**d)


def _positive_int(v, key: str, where: str, allow_none: bool = False):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key.startswith("min_") else 1):
        raise ConfigError(f"{where}: {key} must be a positive integer{' or null' if allow_none else ''}; "
                          f"received {v!r}")
    return v


def profile_from_dict(d: Any, source: str = "<dict>") -> DeviceProfile:
    """Validate a mapping and build a DeviceProfile; errors name the file, the key and what is allowed."""
    where = f"Device profile {source}"
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a mapping of keys; received {type(d).__name__}")
    _check_keys(d, DeviceProfile, where)
    for key in ("name", "arch"):
        if not d.get(key):
            raise ConfigError(f"{where}: missing required key {key!r}")
    kw = dict(d)
    kw.pop("source", None)
    kw["arch"] = [normalize_arch(a) for a in _as_list(d["arch"], "arch", where)]
    kw["backends"] = _as_list(d.get("backends"), "backends", where)
    kw["accelerators"] = _as_list(d.get("accelerators"), "accelerators", where)
    for b in kw["backends"]:
        if b not in BACKENDS:
            raise ConfigError(f"{where}: {allowed(b, BACKENDS, 'backend')}")
    if not kw["backends"]:
        raise ConfigError(f"{where}: backends is empty. Allowed: {', '.join(BACKENDS)}")
    kw["python"] = _sub(PythonSpec, d.get("python"), "python", where)
    try:
        kw["python"].minimum()
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    kw["runtime"] = _sub(RuntimeSpec, d.get("runtime"), "runtime", where)
    kw["service"] = _sub(ServiceSpec, d.get("service"), "service", where)
    kw["ssh"] = _sub(SSHSpec, d.get("ssh"), "ssh", where)
    rt = kw["runtime"]
    for key in ("wheel_platforms", "apt", "venv_args", "pip_args"):
        setattr(rt, key, _as_list(getattr(rt, key), f"runtime.{key}", where))
    if not isinstance(rt.requirements, dict):
        raise ConfigError(f"{where}: runtime.requirements must map backend -> list of requirements; "
                          f"received {rt.requirements!r}")
    for b, reqs in rt.requirements.items():
        if b not in BACKENDS:
            raise ConfigError(f"{where}: runtime.requirements: {allowed(b, BACKENDS, 'backend')}")
        rt.requirements[b] = _as_list(reqs, f"runtime.requirements.{b}", where)
    rt.python_version = str(rt.python_version)
    svc = kw["service"]
    for key in ("manager", "fallback"):
        if getattr(svc, key) not in SERVICE_MANAGERS:
            raise ConfigError(f"{where}: service.{key}: {allowed(getattr(svc, key), SERVICE_MANAGERS, 'service manager')}")
    svc.port = _positive_int(svc.port, "service.port", where)
    if svc.port > 65535:
        raise ConfigError(f"{where}: service.port must be 1-65535; received {svc.port}")
    # service.host and service.name end up in the device's service.env (read by its shell) and unit path.
    if not isinstance(svc.host, str) or not re.fullmatch(r"[A-Za-z0-9._:%-]{1,253}", svc.host):
        raise ConfigError(f"{where}: service.host must be a host name or IP address like 127.0.0.1 or 0.0.0.0; "
                          f"received {svc.host!r}")
    if not isinstance(svc.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}", svc.name):
        raise ConfigError(f"{where}: service.name must be a service name (letters, digits, '_', '.', '@', '-'); "
                          f"received {svc.name!r}")
    kw["ssh"].port = _positive_int(kw["ssh"].port, "ssh.port", where)
    pref = d.get("preferred") or {}
    if not isinstance(pref, dict):
        raise ConfigError(f"{where}: preferred must be a mapping (format, precision, backend, device); received {pref!r}")
    allowed_pref = {"format": FORMATS, "precision": PRECISIONS, "backend": BACKENDS}
    pref = dict(pref)
    if "precision" in pref:
        # One precision or several in order of preference (Jetson: fp16 on the GPU, float32 after).
        precs = [PRECISION_ALIASES.get(str(p), str(p)) for p in _as_list(pref["precision"], "preferred.precision",
                                                                        where)]
        for p in precs:
            if p not in PRECISIONS:
                raise ConfigError(f"{where}: preferred.precision: {allowed(p, PRECISIONS, 'precision')}")
        pref["precision"] = precs
    for key, value in pref.items():
        if key in ("device", "precision"):
            continue
        if key not in allowed_pref:
            raise ConfigError(f"{where}: preferred.{key} is not a known key. Allowed: format, precision, backend, device")
        if value not in allowed_pref[key]:
            raise ConfigError(f"{where}: preferred.{key}: {allowed(value, allowed_pref[key], key)}")
    if pref.get("backend") and pref["backend"] not in kw["backends"]:
        raise ConfigError(f"{where}: preferred.backend {pref['backend']!r} is not among backends "
                          f"({', '.join(kw['backends'])})")
    kw["preferred"] = dict(pref)
    kw["threads"] = _positive_int(d.get("threads"), "threads", where, allow_none=True)
    kw["memory_mb"] = _positive_int(d.get("memory_mb"), "memory_mb", where, allow_none=True)
    kw["min_free_memory_mb"] = _positive_int(d.get("min_free_memory_mb", 256), "min_free_memory_mb", where)
    kw["min_free_disk_mb"] = _positive_int(d.get("min_free_disk_mb", 400), "min_free_disk_mb", where)
    kw["name"] = str(d["name"])
    return DeviceProfile(source=source, **kw)


def profile_dirs() -> list[Path]:
    """Folders searched for ``<name>.yaml``, first match wins."""
    dirs = [Path(p) for p in os.environ.get("EDGEKIT_DEVICES", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    checkout = here.parent / "devices"
    if (here.parent / "pyproject.toml").exists() and checkout.is_dir():
        dirs.append(checkout)
    dirs.append(here / "_resources" / "devices")
    return [d for d in dirs if d.is_dir()]


def yaml_problem(e: Exception) -> str:
    """A YAML error in one line, ``line L, column C: problem (context)``: PyYAML's own text spans
    several lines with a quoted excerpt of the file."""
    def at(mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    mark, cmark = getattr(e, "problem_mark", None), getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or (str(e).strip().splitlines() or [type(e).__name__])[0]
    context = getattr(e, "context", None)
    out = f"{at(mark)}: {problem}" if mark is not None else problem
    if context:
        out += f" ({context}" + (f" at {at(cmark)}" if cmark is not None and cmark is not mark else "") + ")"
    return out


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"Device profile {path} is not valid YAML: {yaml_problem(e)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Device profile {path} is not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"Cannot read device profile {path}: {e.strerror}") from None


def profile_names() -> list[str]:
    names: list[str] = []
    for d in profile_dirs():
        for p in sorted(d.glob("*.yaml")):
            if p.stem not in names:
                names.append(p.stem)
    return sorted(names)


def load_profile(name_or_path: str | os.PathLike | DeviceProfile) -> DeviceProfile:
    """A profile by name (``raspberry-pi-5``) or by path to a YAML file."""
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path
    s = str(name_or_path)
    p = Path(s).expanduser()
    if s.endswith((".yaml", ".yml")) or os.sep in s:
        if not p.is_file():
            raise ConfigError(f"No device profile file {p}. Named profiles: {', '.join(profile_names())}")
        return profile_from_dict(_read_yaml(p), str(p))
    for d in profile_dirs():
        f = d / f"{s}.yaml"
        if f.is_file():
            return profile_from_dict(_read_yaml(f), str(f))
    raise ConfigError(allowed(s, profile_names(), "device profile") + " (or a path to a .yaml file)")


def list_profiles() -> list[dict]:
    """Every known profile as a summary row (name, arch, os, python, backends, accelerators, format, ...)."""
    return [load_profile(n).summary() for n in profile_names()]
