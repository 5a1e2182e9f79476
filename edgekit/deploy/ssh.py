"""SSH to a device with asyncssh: connect with a clear error for each way it fails, run commands,
upload files over SFTP. No hand-built scp/ssh command strings.

Host-key policy (``host_key_check``):
  strict      the key must already be in known_hosts (the safe default)
  accept-new  trust and record a host seen for the first time; a changed key is still refused
  off         no checking (throwaway lab devices only)
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import re
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DeployError, MissingDependencyError

HOST_KEY_CHECKS = ("strict", "accept-new", "off")
HOST_NAME_RE = re.compile(r"^[A-Za-z0-9._:%-]{1,253}$")
USER_RE = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}\$?$")


class StepFailed(DeployError):
    """A deploy step failed on one host; ``step`` names it (connect, preflight, upload, verify, install, ...)."""

    def __init__(self, host: str, step: str, message: str, **detail):
        self.host = host
        self.step = step
        self.detail = detail
        super().__init__(f"{host}: step '{step}' failed: {message}")


class Interrupted(StepFailed):
    """Ctrl-C (the task was cancelled) during a step; the message says what the device serves now."""


def require_asyncssh():
    import warnings

    try:
        with warnings.catch_warnings():  # newer cryptography warns, at asyncssh's import, that DSA is deprecated
            warnings.simplefilter("ignore")
            import asyncssh
    except ImportError:
        raise MissingDependencyError("asyncssh", "deploy", "Deploying over SSH") from None
    return asyncssh


@dataclass
class Target:
    """Where and how to reach one device."""

    host: str
    user: str | None = None
    port: int = 22
    key: str | None = None
    known_hosts: str | None = None  # a file; None: ~/.ssh/known_hosts
    host_key_check: str = "strict"
    connect_timeout: float = 15.0
    name: str = ""  # label in tables; defaults to user@host:port
    extra: dict = field(default_factory=dict)  # per-host deploy settings from an inventory

    @classmethod
    def parse(cls, spec: str, **kw) -> "Target":
        """``host``, ``user@host`` or ``user@host:port`` (an explicit port= wins only if the spec has none)."""
        if not spec or not str(spec).strip():
            raise ConfigError("--host needs a device address like pi@raspberrypi.local; received an empty value")
        spec = str(spec).strip()
        user, _, host = spec.rpartition("@")
        port = kw.pop("port", None)
        bracketed = host.startswith("[") and "]:" in host  # [IPv6]:port
        if host.count(":") == 1 or bracketed:  # host:port; several colons alone is a bare IPv6 address
            host, _, p = host.rpartition(":")
            if not p.isdigit():
                raise ConfigError(f"Port in {spec!r} must be a number; received {p!r}")
            if port not in (None, int(p)):
                raise ConfigError(f"Two ports for {spec!r}: {p} in the address and {port} from --port; give one")
            port = int(p)
        host = host.strip("[]")
        if not host:
            raise ConfigError(f"No host name in {spec!r}; expected user@host")
        if not HOST_NAME_RE.match(host):  # it is echoed into suggested shell commands (ssh-keyscan ...)
            raise ConfigError(f"Host {host!r} in {spec!r} is not a host name or an IP address (letters, digits, "
                              "'.', '-', '_', ':', '%')")
        if user and not USER_RE.match(user):
            raise ConfigError(f"User {user!r} in {spec!r} is not a user name")
        if isinstance(port, str) and port.strip().isdigit():
            port = int(port)
        if isinstance(port, bool) or not isinstance(port, (int, type(None))) or not 1 <= (port or 22) <= 65535:
            raise ConfigError(f"Port for {spec!r} must be 1-65535; received {port!r}")
        check = kw.get("host_key_check") or "strict"
        if check not in HOST_KEY_CHECKS:
            raise ConfigError(f"Unknown host key check {check!r}. Available: {', '.join(HOST_KEY_CHECKS)}")
        return cls(host=host, user=user or kw.pop("user", None), port=int(port or 22),
                   **{k: v for k, v in kw.items() if k != "user" and v is not None})

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        who = f"{self.user}@" if self.user else ""
        return f"{who}{self.host}" + ("" if self.port == 22 else f":{self.port}")


def _known_hosts_file(t: Target) -> Path:
    return Path(t.known_hosts).expanduser() if t.known_hosts else Path("~/.ssh/known_hosts").expanduser()


def _is_known(asyncssh, path: Path, t: Target) -> bool:
    if not path.exists():
        return False
    try:
        addr = socket.gethostbyname(t.host)
    except OSError:
        addr = t.host
    keys = asyncssh.read_known_hosts(str(path)).match(t.host, addr, t.port)
    return any(len(k) for k in keys)


def _record_host_key(path: Path, t: Target, key) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = t.host if t.port == 22 else f"[{t.host}]:{t.port}"
    line = f"{name} {key.export_public_key('openssh').decode().strip()}\n"
    with open(path, "a") as f:
        f.write(line)


async def connect(t: Target):
    """An open asyncssh connection, or StepFailed('connect') saying why not and what to try."""
    asyncssh = require_asyncssh()
    key = Path(t.key).expanduser() if t.key else None
    if key is not None and not key.is_file():
        raise StepFailed(t.label, "connect", f"SSH key {key} does not exist")
    kh_path = _known_hosts_file(t)
    record = False
    if t.host_key_check == "off":
        known_hosts = None
    elif t.host_key_check == "accept-new" and not _is_known(asyncssh, kh_path, t):
        known_hosts, record = None, True
    elif kh_path.exists():
        known_hosts = str(kh_path)
    else:
        raise StepFailed(t.label, "connect", f"no known_hosts file at {kh_path} to check the host key against; "
                         f"add the device's key (ssh-keyscan -p {t.port} {t.host} >> {kh_path}) or pass "
                         "--host-key-check accept-new")
    kw = {"port": t.port, "known_hosts": known_hosts, "connect_timeout": t.connect_timeout}
    if t.user:
        kw["username"] = t.user
    if t.key:
        kw["client_keys"] = [str(key)]
        kw["agent_path"] = None  # only the key asked for, so a wrong key is reported as such
    try:
        conn = await asyncssh.connect(t.host, **kw)
    except asyncssh.HostKeyNotVerifiable as e:
        raise StepFailed(t.label, "connect", f"host key not trusted ({e}); it is not in {kh_path} or has changed. "
                         f"Add it (ssh-keyscan -p {t.port} {t.host} >> {kh_path}) or pass "
                         "--host-key-check accept-new for a device seen for the first time") from None
    except asyncssh.PermissionDenied:
        raise StepFailed(t.label, "connect", f"authentication refused for user {t.user or '(default)'} "
                         f"with key {t.key or '(ssh agent / default keys)'}; check --key and the device's "
                         "~/.ssh/authorized_keys") from None
    except (asyncio.TimeoutError, asyncssh.TimeoutError):
        raise StepFailed(t.label, "connect", f"no answer from {t.host}:{t.port} within {t.connect_timeout:g}s "
                         "(is the device on and reachable?)") from None
    except (OSError, asyncssh.Error) as e:
        msg = getattr(e, "strerror", None) or getattr(e, "reason", None) or str(e) or type(e).__name__
        raise StepFailed(t.label, "connect", f"cannot reach {t.host}:{t.port}: {msg}") from None
    if record:
        _record_host_key(kh_path, t, conn.get_server_host_key())
    return conn


class Remote:
    """One device: run shell commands and the agent, upload files."""

    def __init__(self, conn, target: Target):
        self.conn = conn
        self.t = target
        self.agent_path: str | None = None
        self.python = "python3"

    async def sh(self, command: str, step: str, timeout: float = 120.0, check: bool = True):
        try:
            r = await asyncio.wait_for(self.conn.run(command, check=False), timeout)
        except asyncio.TimeoutError:
            raise StepFailed(self.t.label, step, f"timed out after {timeout:g}s: {command[:80]}") from None
        except require_asyncssh().Error as e:
            raise StepFailed(self.t.label, step, f"connection lost: {e}") from None
        if check and r.exit_status != 0:
            err = (r.stderr or r.stdout or "").strip()[-800:]
            raise StepFailed(self.t.label, step, f"`{command[:60]}` exited {r.exit_status}: {err}")
        return r

    async def put(self, local: str | os.PathLike, remote: str, step: str) -> None:
        """Upload to a temporary name, then rename: a half-sent file never sits under the final name."""
        asyncssh = require_asyncssh()
        tmp = f"{remote}.partial"
        try:
            async with self.conn.start_sftp_client() as sftp:
                await sftp.makedirs(posixpath.dirname(remote), exist_ok=True)
                await sftp.put(str(local), tmp)
                await sftp.posix_rename(tmp, remote)
        except (asyncssh.SFTPError, OSError) as e:
            raise StepFailed(self.t.label, step, f"upload of {Path(local).name} to {remote} failed: {e}") from None

    async def install_agent(self, root: str) -> None:
        from .bundle import sha256_file

        src = Path(__file__).with_name("agent.py")
        path = f"{root}/.agent/agent-{sha256_file(src)[:12]}.py"
        r = await self.sh(f"test -f {shlex.quote(path)}", "preflight", check=False)
        if r.exit_status != 0:
            await self.put(src, path, "preflight")
        self.agent_path = path

    async def agent(self, command: str, root: str, step: str, ssh_timeout: float = 600.0, **args) -> dict:
        """Run an agent command; its JSON answer, or StepFailed naming the step the agent reports."""
        parts = [self.python, self.agent_path, command, "--root", root]
        for k, v in args.items():
            if v is None or v is False:
                continue
            flag = "--" + k.replace("_", "-")
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                # --flag=value: a value that starts with '-' (a pip option) is not taken for a flag
                parts.append(flag if item is True else f"{flag}={item}")
        r = await self.sh(" ".join(shlex.quote(p) for p in parts), step, timeout=ssh_timeout, check=False)
        result = None
        for line in reversed((r.stdout or "").strip().splitlines()):
            try:
                result = json.loads(line)
                break
            except ValueError:
                continue
        if not isinstance(result, dict):
            raise StepFailed(self.t.label, step, f"device helper gave no answer (exit {r.exit_status}): "
                             f"{(r.stderr or r.stdout or '').strip()[-800:]}")
        if not result.get("ok"):
            detail = {k: v for k, v in result.items() if k not in ("ok", "step", "error")}
            raise StepFailed(self.t.label, result.get("step") or step, result.get("error", "failed"), **detail)
        return result

    async def close(self):
        self.conn.close()
        try:
            await self.conn.wait_closed()
        except Exception:
            pass
