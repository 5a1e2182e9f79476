"""The device side of ``edgekit deploy``: one stdlib-only script the host uploads and runs over SSH.

It must run on whatever ``python3`` a device has before any runtime is installed (Python >= 3.8,
no third-party imports, no edgekit import) and must not assume systemd: chroots, containers and
plain sshd homes get the fallback supervisor (a pid file and a restart loop in POSIX sh).

Layout under the deploy root (default ``~/edgekit``)::

    releases/<version>/   one unpacked, checksum-verified bundle (+ venv -> ../../venvs/<key>)
    venvs/<key>/          runtime virtual environments, keyed by requirements + wheels, shared
    current -> releases/<version>       switched atomically (rename of a new symlink)
    history.json          what was current before, for rollback
    service.env           device-local server settings (host, port, threads)
    run/ log/             supervisor pid files, server log

Every command prints one JSON object as its last stdout line and exits 0 (ok) or 1 (failed).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request

HEALTH_PATH = "/v2/health/ready"
# Written into a release folder on the device after verification; not part of the bundle.
DEVICE_FILES = {"smoke.json"}
# Made in a release folder on the device (install links the runtime venv there): no bundle file may be it.
DEVICE_NAMES = DEVICE_FILES | {"venv", "venv.new"}
# A release name is one folder name under releases/: never a path, never hidden, nothing a shell reads.
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
# The systemd unit is written to /etc/systemd/system/<name>.service.
UNIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
# service.env is sourced by run.sh (POSIX sh): a host is a name or an address, nothing else.
HOST_RE = re.compile(r"^[A-Za-z0-9._:%-]{1,253}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_MEMBERS = 20000  # an edgekit bundle has a few dozen (wheels are carried whole, not unpacked)
MAX_MANIFEST_BYTES = 16 << 20
# A PAX or GNU long-name header holds a name and a few attributes; tarfile reads it whole into memory, so
# its size is checked from the 512-byte block before it is read (issue 25: a 700 MB one took 2.8 GB).
MAX_META_HEADER_BYTES = 1 << 20
SIG_NAME = "manifest.json.sig"  # an `edgekit bundle --sign` signature of manifest.json, the second member
MAX_SIG_BYTES = 64 << 10
SIG_NAMESPACE = "edgekit-bundle"
DEFAULT_MIN_FREE_DISK_MB = 400


class StepError(Exception):
    def __init__(self, step, message, **detail):
        super().__init__(message)
        self.step = step
        self.detail = detail


# -- small helpers --------------------------------------------------------------------------------

def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def write_json(path, obj):
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def write_text(path, text):
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def tail(path, n=20):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
    except OSError:
        return ""


@contextlib.contextmanager
def locked(root):
    """One mutating deploy command at a time per device; the lock dies with the process."""
    import fcntl

    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, ".lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StepError("lock", "another deploy is running on this device (%s/.lock is held)" % root)
        yield


# -- names that become paths, checked before anything is written ---------------------------------

def check_version(version, step="verify"):
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise StepError(step, "invalid release version %r: 1-100 letters, digits, '.', '_', '+' or '-', "
                              "starting with a letter or digit (it becomes a folder under releases/)" % (version,))
    return version


def check_relpath(rel, what="bundle file"):
    """A path inside a release folder: relative, '/'-separated, no empty, '.' or '..' part, no control bytes."""
    if not isinstance(rel, str) or not rel:
        raise StepError("verify", "%s name %r is not a path" % (what, rel))
    parts = rel.split("/")
    if rel.startswith("/") or "\\" in rel or any(ord(c) < 32 for c in rel) or \
            any(p in ("", ".", "..") for p in parts):
        raise StepError("verify", "%s %r escapes the release folder (it must be a relative path with no "
                                  "'..', '.' or empty part)" % (what, rel))
    return rel


def check_host(host, step="args"):
    if not isinstance(host, str) or not HOST_RE.match(host):
        raise StepError(step, "invalid server host %r: a host name or an IP address" % (host,))
    return host


def check_port(port, step="args"):
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise StepError(step, "invalid server port %r: an integer 1-65535" % (port,))
    return port


def _kind(v):
    return type(v).__name__ if not isinstance(v, (dict, list)) else ("an object" if isinstance(v, dict) else "a list")


def check_manifest(manifest, version=None):
    """Every manifest field the agent, the smoke test and the host rely on, with the type they need:
    a clear refusal naming the field, never a KeyError or TypeError later. Returns the manifest."""
    if not isinstance(manifest, dict):
        raise StepError("verify", "manifest.json must be a JSON object; received %s" % _kind(manifest))
    if not manifest:
        raise StepError("verify", "manifest.json is empty; build bundles with `edgekit bundle`")
    for key in ("version", "files", "profile", "model", "smoke", "service", "runtime"):
        if key not in manifest:
            raise StepError("verify", "manifest.json has no %r field; build bundles with `edgekit bundle`" % key)
    check_version(manifest["version"])
    if version is not None and manifest["version"] != version:
        raise StepError("verify", "bundle manifest says version %r, expected %r" % (manifest["version"], version))
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise StepError("verify", "manifest 'files' must be an object mapping path -> {sha256, size}; "
                                  "received %s" % _kind(files))
    for rel, want in files.items():
        check_relpath(rel, "manifest file entry")
        if rel == "manifest.json" or rel.split("/")[0] in DEVICE_NAMES:
            raise StepError("verify", "manifest file entry %r names a file the device writes itself" % rel)
        if not isinstance(want, dict) or not isinstance(want.get("sha256"), str) or \
                not SHA256_RE.match(want["sha256"]):
            raise StepError("verify", "manifest file entry %r needs a sha256 (64 hex digits); received %r"
                                      % (rel, want))
        size = want.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise StepError("verify", "manifest file entry %r needs a size in bytes; received %r" % (rel, size))
    for key in ("profile", "model", "smoke", "service", "runtime"):
        if not isinstance(manifest[key], dict):
            raise StepError("verify", "manifest %r must be an object; received %s" % (key, _kind(manifest[key])))
    # Paths the smoke test and run.sh open inside the release: each must be a listed file.
    for where, rel in (("model.path", manifest["model"].get("path")), ("smoke.input", manifest["smoke"].get("input")),
                       ("smoke.expected", manifest["smoke"].get("expected"))):
        if rel not in files:
            raise StepError("verify", "manifest %s %r is not one of the bundle's files" % (where, rel))
    svc = manifest["service"]
    check_host(svc.get("host", "0.0.0.0"), "verify")
    check_port(svc.get("port", 8080), "verify")
    name = svc.get("name", "edgekit")
    if not isinstance(name, str) or not UNIT_RE.match(name):
        raise StepError("verify", "manifest service.name %r is not a service name (letters, digits, '_', '.', "
                                  "'@', '-')" % (name,))
    threads = manifest.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise StepError("verify", "manifest threads must be a positive integer or null; received %r" % (threads,))
    rt = manifest["runtime"]
    for key in ("venv_args", "pip_args"):
        if not isinstance(rt.get(key, []), list) or not all(isinstance(a, str) for a in rt.get(key, [])):
            raise StepError("verify", "manifest runtime.%s must be a list of strings; received %r" % (key, rt.get(key)))
    min_free_disk_mb(manifest)
    return manifest


def min_free_disk_mb(manifest):
    """The free disk the bundle's profile says must remain after unpacking."""
    v = (manifest.get("profile") or {}).get("min_free_disk_mb", DEFAULT_MIN_FREE_DISK_MB)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise StepError("verify", "manifest profile.min_free_disk_mb must be a whole number of MB; received %r" % (v,))
    return v


class Layout:
    def __init__(self, root):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.releases = os.path.join(self.root, "releases")
        self.venvs = os.path.join(self.root, "venvs")
        self.current = os.path.join(self.root, "current")
        self.history = os.path.join(self.root, "history.json")
        self.service_env = os.path.join(self.root, "service.env")
        self.run = os.path.join(self.root, "run")
        self.log = os.path.join(self.root, "log")
        self.trust = os.path.join(self.root, "trust")
        self.allowed_signers = os.path.join(self.trust, "allowed_signers")
        self.trust_policy = os.path.join(self.trust, "policy.json")

    def release(self, version):
        return os.path.join(self.releases, check_version(version, "args"))

    def current_version(self):
        try:
            return os.path.basename(os.readlink(self.current).rstrip("/"))
        except OSError:
            return None

    def versions(self):
        try:
            names = [n for n in os.listdir(self.releases) if not n.startswith(".")]
        except OSError:
            return []
        return sorted(names, key=lambda n: os.path.getmtime(os.path.join(self.releases, n)))


# -- probe / doctor -------------------------------------------------------------------------------

def meminfo():
    out = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0]) // 1024  # kB -> MB
    except (OSError, ValueError):
        pass
    return out


def free_disk_mb(path):
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path or "/")
    return st.f_bavail * st.f_frsize // (1 << 20)


def has_systemd():
    # sd_booted(): systemd is PID 1 only if this folder exists; a binary on disk is not enough. Inside a
    # chroot of a systemd host the folder may be bound in, but systemctl there ignores every request.
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl") is not None and not in_chroot()


def in_chroot():
    """Our / differs from PID 1's / (systemd's own running_in_chroot test); containers count as not."""
    try:
        a, b = os.stat("/"), os.stat("/proc/1/root/.")
    except OSError:  # no /proc or not allowed to look: assume a normal system
        return False
    return (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino)


def emulation():
    """Is this CPU emulated? Under QEMU user-mode emulation ``uname -m`` is the guest's (aarch64) but
    /proc/cpuinfo is the x86 host's: latencies measured here are the emulator's, not the device's."""
    machine = platform.machine()
    if machine.startswith(("x86", "i686", "amd64", "AMD64")):
        return None
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read(1 << 16)
    except OSError:
        return None
    if "vendor_id" not in info or not any(v in info for v in ("GenuineIntel", "AuthenticAMD")):
        return None
    host = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "x86-64")
    return {"by": "qemu-user", "guest": machine, "host_cpu": host,
            "note": "emulated %s on %s: latency figures are the emulator's, not the device's" % (machine, host)}


def apt_installed(packages):
    if not packages:
        return {}
    if not shutil.which("dpkg-query"):
        return {p: None for p in packages}
    out = {}
    for p in packages:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, universal_newlines=True)
        out[p] = r.returncode == 0 and "install ok installed" in r.stdout
    return out


def cmd_probe(args):
    L = Layout(args.root)
    venv_ok, venv_err = True, ""
    try:
        import ensurepip  # noqa: F401  (Debian splits it into python3-venv; without it venv fails)
        import venv  # noqa: F401
    except ImportError as e:
        venv_ok, venv_err = False, str(e)
    mem = meminfo()
    modules = {}
    for m in args.module or []:
        try:
            import importlib.util

            modules[m] = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):
            modules[m] = False
    return {
        "arch": platform.machine(),
        "system": platform.system(),
        "os": _os_release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "root": L.root,
        "disk_free_mb": free_disk_mb(L.root),
        "mem_total_mb": mem.get("MemTotal"),
        "mem_available_mb": mem.get("MemAvailable", mem.get("MemFree")),
        "venv": venv_ok,
        "venv_error": venv_err,
        "systemd": has_systemd(),
        "emulated": emulation(),
        "is_root": os.geteuid() == 0,
        "apt": apt_installed(args.apt or []),
        "modules": modules,
        "current": L.current_version(),
        "releases": L.versions(),
    }


def _os_release():
    info = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    info[k] = v.strip('"')
    except OSError:
        pass
    return info.get("PRETTY_NAME", platform.platform())


# -- unpack and verify ----------------------------------------------------------------------------

_META_TYPES = {tarfile.XHDTYPE: "PAX", tarfile.XGLTYPE: "PAX global", tarfile.SOLARIS_XHDTYPE: "PAX",
               tarfile.GNUTYPE_LONGNAME: "GNU long-name", tarfile.GNUTYPE_LONGLINK: "GNU long-link"}


class BoundedTarInfo(tarfile.TarInfo):
    """A member header whose extended (PAX / GNU long-name) header is refused from its size, before
    tarfile reads it into memory."""

    def _proc_member(self, tf):
        kind = _META_TYPES.get(self.type)
        if kind and self.size > MAX_META_HEADER_BYTES:
            raise StepError("verify", "the bundle has a %s header of %d bytes; at most %d are allowed"
                            % (kind, self.size, MAX_META_HEADER_BYTES))
        return super()._proc_member(tf)


def open_bundle(path, mode="r:gz"):
    """A bundle tarball opened for reading with every member header bounded (see BoundedTarInfo)."""
    return tarfile.open(path, mode, tarinfo=BoundedTarInfo)


def load_manifest_json(raw):
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise StepError("verify", "manifest.json is not valid JSON: %s" % " ".join(str(e).split()))
    except RecursionError:
        raise StepError("verify", "manifest.json is nested too deeply to be a manifest")


def read_bundle_manifest(tar, version=None):
    """The manifest, read from the tarball's first member before anything is extracted, and the
    signature member after it if there is one. Returns (first member, manifest, its bytes, signature
    bytes or None, the member after them or None)."""
    first = tar.next()
    if first is None or first.name != "manifest.json" or not first.isfile():
        raise StepError("verify", "the bundle does not start with manifest.json (found %r); build bundles with "
                                  "`edgekit bundle`" % (first.name if first is not None else "an empty archive"))
    if first.size > MAX_MANIFEST_BYTES:
        raise StepError("verify", "manifest.json is %d bytes; a manifest is at most %d" % (first.size, MAX_MANIFEST_BYTES))
    raw = tar.extractfile(first).read()
    manifest = check_manifest(load_manifest_json(raw), version)
    sig, after = None, tar.next()
    if after is not None and after.name == SIG_NAME:
        if not after.isfile() or after.size > MAX_SIG_BYTES:
            raise StepError("verify", "%s must be a file of at most %d bytes" % (SIG_NAME, MAX_SIG_BYTES))
        sig, after = tar.extractfile(after).read(), tar.next()
    return first, manifest, raw, sig, after


def plan_unpack(tar, version, free_mb, trust=None):
    """Check every member from its header, before extracting any: the manifest's signature against the
    device's trusted signers (``trust``: a Layout), only regular files and folders, each inside the
    release, each file listed in the manifest with the size the manifest gives, and the total leaving the
    free disk the profile requires. Returns (manifest, members, total bytes, signature result)."""
    first, manifest, raw, sig, pending = read_bundle_manifest(tar, version)
    signed = check_signature(trust, raw, sig) if trust is not None else None
    listed = manifest["files"]
    folders = set()
    for rel in listed:
        parts = rel.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    keep_mb = min_free_disk_mb(manifest)
    declared = sum(w["size"] for w in listed.values()) + first.size
    if free_mb is not None and declared / (1 << 20) + keep_mb > free_mb:
        raise StepError("verify", "the bundle unpacks to %.1f MB (manifest sizes); %d MB are free on the device and "
                                  "its profile keeps %d MB free" % (declared / (1 << 20), free_mb, keep_mb))
    members, seen, total = [first], {"manifest.json", SIG_NAME}, first.size
    while True:
        m, pending = (pending, None) if pending is not None else (tar.next(), None)
        if m is None:
            break
        if len(members) >= MAX_MEMBERS:
            raise StepError("verify", "the bundle has more than %d members" % MAX_MEMBERS)
        check_relpath(m.name, "bundle member")
        if m.name in seen:
            raise StepError("verify", "bundle member %r appears twice" % m.name)
        seen.add(m.name)
        if m.isdir():
            if m.name not in folders:
                raise StepError("verify", "bundle folder %r holds no file the manifest lists" % m.name)
        elif m.isfile() and not m.issparse():
            want = listed.get(m.name)
            if want is None:
                raise StepError("verify", "bundle member %r is not listed in the manifest" % m.name)
            if m.size != want["size"]:
                raise StepError("verify", "bundle member %r is %d bytes; the manifest says %d"
                                % (m.name, m.size, want["size"]))
            total += m.size
        else:
            kind = ("a symlink" if m.issym() else "a hard link" if m.islnk() else "a fifo" if m.isfifo()
                    else "a device" if m.ischr() or m.isblk() else "a sparse file" if m.issparse()
                    else "not a regular file or folder")
            raise StepError("verify", "bundle member %r is %s; a bundle holds only regular files and folders"
                            % (m.name, kind))
        members.append(m)
    missing = sorted(set(listed) - seen)
    if missing:
        raise StepError("verify", "checksum verification failed: listed but not in the bundle: " + ", ".join(missing[:5]))
    return manifest, members, total, signed


# -- signatures -----------------------------------------------------------------------------------

def signature_policy(L):
    """'require' or 'accept' for unsigned bundles. Default: require a signature once an allowed-signers
    file is installed (devices set up before signing keep deploying), accept while there is none; the
    policy file (deploy --unsigned accept|refuse) overrides."""
    policy = read_json(L.trust_policy, {}) or {}
    unsigned = policy.get("unsigned") if isinstance(policy, dict) else None
    if unsigned in ("accept", "refuse"):
        return "accept" if unsigned == "accept" else "require"
    return "require" if _has_signers(L) else "accept"


def _has_signers(L):
    try:
        with open(L.allowed_signers) as f:
            return any(ln.strip() and not ln.lstrip().startswith("#") for ln in f)
    except OSError:
        return False


def check_signature(L, manifest_bytes, sig):
    """Verify ``sig`` (an ``ssh-keygen -Y sign -n edgekit-bundle`` signature of manifest.json, which
    lists every file's sha256) against the device's allowed-signers file, before anything is extracted.
    Returns what was found; raises StepError for a bad signature, or a missing one the device requires."""
    policy = signature_policy(L)
    if sig is None:
        if policy == "require":
            raise StepError("verify", "the bundle is not signed and this device requires signed bundles "
                                      "(%s); sign it with `edgekit bundle --sign KEY`, or deploy with "
                                      "--unsigned accept" % L.allowed_signers)
        return {"signed": False, "policy": policy}
    if not _has_signers(L):
        if policy == "require":
            raise StepError("verify", "this device requires signed bundles but has no allowed signers (%s); "
                                      "deploy with --allowed-signers FILE" % L.allowed_signers)
        return {"signed": True, "verified": False, "policy": policy,
                "note": "no allowed signers on the device: the signature was not checked"}
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise StepError("verify", "the bundle is signed but ssh-keygen is missing on the device "
                                  "(apt-get install openssh-client)")
    import tempfile

    work = tempfile.mkdtemp(prefix=".sig-", dir=L.root)
    try:
        sig_path = os.path.join(work, "manifest.json.sig")
        with open(sig_path, "wb") as f:
            f.write(sig)
        r = subprocess.run([keygen, "-Y", "find-principals", "-s", sig_path, "-f", L.allowed_signers],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        principals = [p.strip() for p in r.stdout.splitlines() if p.strip()] if r.returncode == 0 else []
        for who in principals:
            v = subprocess.run([keygen, "-Y", "verify", "-f", L.allowed_signers, "-I", who, "-n", SIG_NAMESPACE,
                                "-s", sig_path], input=manifest_bytes, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=60)
            if v.returncode == 0:
                return {"signed": True, "verified": True, "signer": who, "policy": policy}
        why = "its key is not in the device's allowed signers" if not principals else \
            "it does not match this manifest (the bundle was changed after signing)"
        raise StepError("verify", "the bundle's signature is not valid: %s (%s)" % (why, L.allowed_signers))
    except (OSError, subprocess.SubprocessError) as e:
        raise StepError("verify", "cannot check the bundle's signature: %s" % e)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cmd_trust(args):
    """Install an allowed-signers file (``--signers``, uploaded beside the root) and/or set the policy
    for unsigned bundles (``--unsigned accept|refuse``)."""
    L = Layout(args.root)
    with locked(L.root):
        os.makedirs(L.trust, mode=0o700, exist_ok=True)
        if args.signers:
            src = _inside(L.root, args.signers, "--signers")
            try:
                with open(src, "rb") as f:
                    data = f.read(1 << 20)
            finally:
                with contextlib.suppress(OSError):
                    os.remove(src)
            lines = [ln for ln in data.decode("utf-8", "replace").splitlines()
                     if ln.strip() and not ln.lstrip().startswith("#")]
            if not lines or any(len(ln.split()) < 3 for ln in lines):
                raise StepError("trust", "the allowed-signers file needs lines 'PRINCIPAL [OPTIONS] KEYTYPE KEY' "
                                         "(see ssh-keygen(1), ALLOWED SIGNERS)")
            tmp = L.allowed_signers + ".tmp%d" % os.getpid()
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, L.allowed_signers)
        if args.unsigned:
            write_json(L.trust_policy, {"unsigned": args.unsigned})
        return {"allowed_signers": _has_signers(L), "unsigned": signature_policy(L)}


def verify_release(folder, version=None):
    """Every file the manifest lists is there (inside the folder, not a link) with its size and sha256;
    nothing unlisted besides."""
    manifest = read_json(os.path.join(folder, "manifest.json"))
    if manifest is None:
        raise StepError("verify", "manifest.json is missing or unreadable in the bundle")
    check_manifest(manifest, version)
    listed = manifest["files"]
    real = os.path.realpath(folder)
    problems = []
    for rel, want in sorted(listed.items()):
        p = os.path.join(folder, rel)
        if os.path.islink(p) or not os.path.realpath(p).startswith(real + os.sep):
            problems.append("%s: not a file inside the release" % rel)
            continue
        if not os.path.isfile(p):
            problems.append("%s: missing" % rel)
            continue
        size = os.path.getsize(p)
        if size != want["size"]:
            problems.append("%s: %d bytes, manifest says %d" % (rel, size, want["size"]))
            continue
        got = sha256_file(p)
        if got != want["sha256"]:
            problems.append("%s: sha256 mismatch (manifest %s..., file %s...)" % (rel, want["sha256"][:12], got[:12]))
    present = set()
    for dirpath, dirs, files in os.walk(folder):
        if dirpath == folder:
            dirs[:] = [d for d in dirs if d not in DEVICE_NAMES]
        for f in files:
            present.add(os.path.relpath(os.path.join(dirpath, f), folder))
    extra = sorted(present - set(listed) - {"manifest.json"} - DEVICE_NAMES)
    if extra:
        problems.append("unlisted file(s): " + ", ".join(extra[:5]))
    if problems:
        raise StepError("verify", "checksum verification failed: " + "; ".join(problems[:5]))
    return manifest


def _inside(root, path, what):
    real = os.path.realpath(path or "")
    if not path or not real.startswith(os.path.realpath(root) + os.sep):
        raise StepError("args", "%s %r is not inside the deploy root %s" % (what, path, root))
    return real


def cmd_unpack(args):
    L = Layout(args.root)
    tarball = None
    try:
        tarball = _inside(L.root, args.tarball, "--tarball")
        check_version(args.version, "args")
        with locked(L.root):
            return _unpack(L, args, tarball)
    finally:
        if tarball is not None:  # the upload is spent, whatever happened: never leave .upload-* behind
            with contextlib.suppress(OSError):
                os.remove(tarball)


def _unpack(L, args, tarball):
    got = sha256_file(tarball)
    if args.sha256 and got != args.sha256:
        raise StepError("verify", "uploaded bundle is corrupt: sha256 %s... on the device, %s... on the host"
                        % (got[:12], args.sha256[:12]))
    os.makedirs(L.releases, exist_ok=True)
    final = L.release(args.version)
    staging = os.path.join(L.releases, ".staging-%s-%d" % (args.version, os.getpid()))
    shutil.rmtree(staging, ignore_errors=True)
    try:
        try:
            with open_bundle(tarball) as tar:  # edgekit bundle writes .tar.gz
                manifest, members, _, signed = plan_unpack(tar, args.version, free_disk_mb(L.releases), L)
                # Only the members checked above; the data filter (where Python has it) is a second guard.
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(staging, members=members, filter="data")
                else:
                    tar.extractall(staging, members=members)
        except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as e:
            raise StepError("verify", "the bundle cannot be unpacked: %s" % " ".join(str(e).split()))
        manifest = verify_release(staging, args.version)
        reused = False
        if os.path.isdir(final):
            if os.path.exists(os.path.join(final, "manifest.json")) and \
                    sha256_file(os.path.join(final, "manifest.json")) == sha256_file(os.path.join(staging, "manifest.json")):
                reused = True  # same release deployed again: keep its folder (and venv link)
            elif L.current_version() == args.version:
                raise StepError("verify", "release %s is serving and differs from this bundle; "
                                          "build the bundle with a new --version" % args.version)
            else:
                shutil.rmtree(final)
        if not reused:
            os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"release": args.version, "files": len(manifest["files"]), "reused": reused, "signature": signed}


# -- runtime install ------------------------------------------------------------------------------

def venv_key(folder, python, venv_args):
    """Same requirements + same wheels + same interpreter -> same venv: a new model doesn't reinstall."""
    h = hashlib.sha256()
    h.update(("%s|%s|%s\n" % (python, platform.python_version(), " ".join(venv_args))).encode())
    with open(os.path.join(folder, "requirements.txt"), "rb") as f:
        h.update(f.read())
    wheels = os.path.join(folder, "wheels")
    if os.path.isdir(wheels):
        for name in sorted(os.listdir(wheels)):
            h.update(("%s %s\n" % (name, sha256_file(os.path.join(wheels, name)))).encode())
    return h.hexdigest()[:16]


def _run(cmd, step, cwd=None, timeout=None, env=None):
    try:
        r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise StepError(step, "%s timed out after %ss" % (" ".join(cmd[:4]), timeout))
    except OSError as e:
        raise StepError(step, "cannot run %s: %s" % (cmd[0], e))
    if r.returncode != 0:
        raise StepError(step, "%s exited %d: %s" % (" ".join(cmd[:4]), r.returncode, r.stdout.strip()[-1500:]))
    return r.stdout


def cmd_install(args):
    L = Layout(args.root)
    with locked(L.root):
        folder = L.release(args.version)
        manifest = verify_release(folder, args.version)
        runtime = manifest.get("runtime", {})
        venv_args = list(runtime.get("venv_args", []))
        key = venv_key(folder, sys.executable, venv_args)
        venv = os.path.join(L.venvs, key)
        marker = os.path.join(venv, ".complete")
        t0 = time.time()
        reused = os.path.exists(marker)
        if not reused:
            shutil.rmtree(venv, ignore_errors=True)  # a half-built venv from an interrupted deploy
            os.makedirs(L.venvs, exist_ok=True)
            _run([sys.executable, "-m", "venv"] + venv_args + [venv], "install", timeout=300)
            wheels = os.path.join(folder, "wheels")
            pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--disable-pip-version-check",
                   "--no-input", "--find-links", wheels]
            if runtime.get("offline"):
                pip.append("--no-index")  # the bundle carries every wheel: never reach for an index
            pip += list(runtime.get("pip_args", [])) + list(args.pip_arg or [])
            pip += ["-r", os.path.join(folder, "requirements.txt")]
            try:
                _run(pip, "install", cwd=folder, timeout=args.timeout)
            except StepError:
                shutil.rmtree(venv, ignore_errors=True)
                raise
            write_text(marker, json.dumps({"created": time.time(), "release": args.version}) + "\n")
        link = os.path.join(folder, "venv")
        tmp = link + ".new"
        with contextlib.suppress(OSError):
            os.remove(tmp)
        os.symlink(os.path.join("..", "..", "venvs", key), tmp)
        os.replace(tmp, link)
        return {"venv": key, "reused": reused, "seconds": round(time.time() - t0, 2)}


# -- smoke test -----------------------------------------------------------------------------------

def cmd_smoke(args):
    L = Layout(args.root)
    folder = L.release(args.version)
    py = os.path.join(folder, "venv", "bin", "python")
    if not os.path.exists(py):
        raise StepError("smoke", "release %s has no runtime venv (install step did not run)" % args.version)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        r = subprocess.run([py, os.path.join(folder, "smoke_test.py")], cwd=folder, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        raise StepError("smoke", "smoke test timed out after %ss" % args.timeout)
    result = None
    for line in reversed(r.stdout.strip().splitlines()):
        with contextlib.suppress(ValueError):
            result = json.loads(line)
            break
    if not isinstance(result, dict):
        raise StepError("smoke", "smoke test crashed (exit %d): %s" % (r.returncode, r.stderr.strip()[-1500:]))
    write_json(os.path.join(folder, "smoke.json"), result)
    if r.returncode != 0 or not result.get("passed"):
        raise StepError("smoke", "smoke test failed: %s" % result.get("error", "outputs differ from expected"),
                        smoke=result)
    return {"smoke": result}


# -- service --------------------------------------------------------------------------------------

def read_env(path):
    env = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, v = line.split("=", 1)
                    env[k] = v.strip("'\"")
    except OSError:
        pass
    return env


def write_service_env(L, manifest, host=None, port=None, manager=None):
    """Device-local server settings. A --serve-host/--serve-port flag wins and sticks across releases
    (recorded in EDGEKIT_PINNED); everything else comes from the bundle's service section, so a profile
    that moves the server to loopback or another port takes effect on the next deploy."""
    old = read_env(L.service_env)
    service = manifest.get("service") or {}
    if "EDGEKIT_PINNED" in old:
        pinned = set(old["EDGEKIT_PINNED"].split())
    else:  # written before pins were recorded: only a flag could have set a value other than the old defaults
        pinned = {k for k, default in (("host", "0.0.0.0"), ("port", "8080"))
                  if old.get("EDGEKIT_" + k.upper()) not in (None, "", default)}
    if host is not None:
        pinned.add("host")
    if port is not None:
        pinned.add("port")
    host = check_host(host if host is not None else old["EDGEKIT_HOST"] if "host" in pinned
                      else service.get("host", "0.0.0.0"))
    port = check_port(int(port if port is not None else old["EDGEKIT_PORT"] if "port" in pinned
                          else service.get("port", 8080)))
    env = {
        "EDGEKIT_HOST": host,
        "EDGEKIT_PORT": str(port),
        "EDGEKIT_THREADS": "" if manifest.get("threads") is None else str(int(manifest["threads"])),
        "EDGEKIT_PINNED": " ".join(sorted(pinned)),
    }
    if manager:
        env["EDGEKIT_MANAGER"] = manager
    write_text(L.service_env, "".join("%s='%s'\n" % kv for kv in sorted(env.items())))
    return env


def service_manager(manifest, prefer=None):
    want = prefer or manifest.get("service", {}).get("manager", "systemd")
    if want == "systemd" and has_systemd() and (os.geteuid() == 0 or _sudo_ok()):
        return "systemd"
    return "supervisor"


def _sudo_ok():
    if not shutil.which("sudo"):
        return False
    return subprocess.run(["sudo", "-n", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def _priv(cmd):
    return cmd if os.geteuid() == 0 else ["sudo", "-n"] + cmd


def unit_name(manifest):
    return "%s.service" % manifest.get("service", {}).get("name", "edgekit")


def systemd_install(L, folder, manifest):
    with open(os.path.join(folder, "edgekit.service")) as f:
        text = f.read().replace("@ROOT@", L.root).replace("@USER@", _user())
    path = "/etc/systemd/system/" + unit_name(manifest)
    subprocess.run(_priv(["tee", path]), input=text, universal_newlines=True, stdout=subprocess.DEVNULL, check=True)
    _run(_priv(["systemctl", "daemon-reload"]), "restart")
    _run(_priv(["systemctl", "enable", unit_name(manifest)]), "restart")


def _user():
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def supervise(L, action):
    script = os.path.join(L.current, "supervise.sh")
    return _run(["/bin/sh", script, action], "restart", timeout=60)


def restart_service(L, manifest, manager):
    # Only one of the two may hold the port: stop the other one first.
    if manager == "systemd":
        if _pid(os.path.join(L.run, "supervisor.pid")):
            supervise(L, "stop")
        systemd_install(L, os.path.realpath(L.current), manifest)
        _run(_priv(["systemctl", "restart", unit_name(manifest)]), "restart")
    else:
        if _systemd_active(manifest):
            _run(_priv(["systemctl", "stop", unit_name(manifest)]), "restart")
        supervise(L, "restart")


def stop_service(L, manifest):
    if _systemd_active(manifest):
        _run(_priv(["systemctl", "stop", unit_name(manifest)]), "stop")
    if os.path.exists(os.path.join(L.current, "supervise.sh")):
        supervise(L, "stop")


def _systemd_active(manifest):
    if not has_systemd():
        return False
    r = subprocess.run(["systemctl", "is-active", unit_name(manifest)], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, universal_newlines=True)
    return r.stdout.strip() in ("active", "activating", "reloading")


def _systemd_restarts(manifest):
    r = subprocess.run(["systemctl", "show", "-p", "NRestarts", "--value", unit_name(manifest)],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
    try:
        return int(r.stdout.strip() or 0)
    except ValueError:
        return 0


def _journal_tail(manifest, n=20):
    r = subprocess.run(_priv(["journalctl", "-u", unit_name(manifest), "-n", str(n), "--no-pager", "-o", "cat"]),
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
    return r.stdout.strip()


def service_state(L, manifest):
    manager = read_env(L.service_env).get("EDGEKIT_MANAGER") or "supervisor"
    if manager == "systemd":
        r = subprocess.run(["systemctl", "is-active", unit_name(manifest)], stdout=subprocess.PIPE,
                           universal_newlines=True)
        return {"manager": "systemd", "state": r.stdout.strip() or "unknown"}
    pid = _pid(os.path.join(L.run, "supervisor.pid"))
    child = _pid(os.path.join(L.run, "server.pid"))
    state = "active" if pid and child else ("activating" if pid else "inactive")
    restarts = read_json(os.path.join(L.run, "restarts"), 0)
    return {"manager": "supervisor", "state": state, "pid": child, "restarts": restarts}


def _pid(path):
    try:
        with open(path) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _listening_inodes(port):
    """Socket inodes listening on TCP ``port`` (/proc/net/tcp, tcp6); None where /proc can't tell."""
    found, seen = set(), False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        seen = True
        for ln in lines:
            cols = ln.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == int(port):
                found.add("socket:[%s]" % cols[9])
    return found if seen else None


def _holders(pids, sockets):
    """Which of ``pids`` (and their children) hold one of ``sockets`` open."""
    tree = set(p for p in pids if p)
    with contextlib.suppress(OSError):
        for d in os.listdir("/proc"):
            if d.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    with open("/proc/%s/stat" % d) as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) in tree:
                            tree.add(int(d))
    held = set()
    for pid in tree:
        with contextlib.suppress(OSError):
            for fd in os.listdir("/proc/%d/fd" % pid):
                with contextlib.suppress(OSError):
                    if os.readlink("/proc/%d/fd/%s" % (pid, fd)) in sockets:
                        held.add(pid)
    return held


def _service_pid(L, manifest, manager):
    if manager == "systemd":
        r = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", unit_name(manifest)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
        with contextlib.suppress(ValueError):
            return int(r.stdout.strip() or 0) or None
        return None
    return _pid(os.path.join(L.run, "server.pid"))


def answered_by_ours(port, L, manifest, manager):
    """Is the server listening on ``port`` the one this service started (its pid or a child's)? True,
    False (another process holds the port: the new server never bound it), or None where /proc can't tell.
    A ready answer alone is not enough: another server with a model of the same name answers it too."""
    sockets = _listening_inodes(port)
    if not sockets:
        return None
    pid = _service_pid(L, manifest, manager)
    if pid is None:
        return False
    return bool(_holders([pid], sockets))


def health(port, timeout=60.0, L=None, manifest=None, host=None, manager="supervisor"):
    """Poll the server's readiness URL until 200; give up early if the service keeps restarting it.
    With a manifest, the URL is that model's own readiness route: another server on the port (one the
    new release failed to displace) answers 404 there, not 200."""
    url = "http://%s:%s%s" % (_loopback(host), port, HEALTH_PATH)
    name = (manifest or {}).get("name")
    if L is not None and isinstance(name, str) and name:
        from urllib.parse import quote

        url = "http://%s:%s/v2/models/%s/ready" % (_loopback(host), port, quote(name, safe=""))
    deadline = time.time() + timeout
    last = "no answer"
    while True:
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                ms = round((time.perf_counter() - t0) * 1e3, 2)
                ours = answered_by_ours(port, L, manifest, manager) if L is not None else None
                if r.status == 200 and ours is not False:
                    return {"ready": True, "url": url, "latency_ms": ms, "own_process": ours}
                last = ("HTTP %d" % r.status if r.status != 200 else
                        "port %s is answered by another process, not the server this release started" % port)
        except Exception as e:  # connection refused while the server starts, HTTP 503 while loading
            last = str(getattr(e, "reason", e))
        if L is not None:
            systemd = manager == "systemd"
            restarts = _systemd_restarts(manifest) if systemd else read_json(os.path.join(L.run, "restarts"), 0) or 0
            if restarts >= 3:
                log = _journal_tail(manifest) if systemd else tail(os.path.join(L.log, "serve.log"))
                raise StepError("health", "server keeps exiting (%d restarts; last check: %s); log tail:\n%s"
                                % (restarts, last, log))
        if time.time() > deadline:
            log = ""
            if L is not None:
                log = _journal_tail(manifest) if manager == "systemd" else tail(os.path.join(L.log, "serve.log"))
            raise StepError("health", "server not ready at %s after %ss (%s)%s"
                            % (url, timeout, last, ("; log tail:\n" + log) if log else ""))
        time.sleep(0.25)


def _switch(L, version):
    """Point ``current`` at a release: a new symlink renamed over the old one is atomic on POSIX."""
    tmp = L.current + ".new"
    with contextlib.suppress(OSError):
        os.remove(tmp)
    os.symlink(os.path.join("releases", version), tmp)
    os.replace(tmp, L.current)


def _activate(L, version, args, record=True):
    manifest = verify_release(L.release(version), version)
    if not os.path.exists(os.path.join(L.release(version), "venv", "bin", "python")):
        raise StepError("switch", "release %s has no runtime venv" % version)
    previous = L.current_version()
    manager = service_manager(manifest, args.manager)
    env = write_service_env(L, manifest, args.serve_host, args.serve_port, manager)
    _switch(L, version)
    if record:
        hist = read_json(L.history, {}) or {}
        past = [v for v in hist.get("past", []) if v != version]
        if previous and previous != version:
            past = [v for v in past if v != previous] + [previous]
        write_json(L.history, {"current": version, "past": past[-10:], "switched": time.time()})
    restart_service(L, manifest, manager)
    h = health(env["EDGEKIT_PORT"], args.health_timeout, L, manifest, env["EDGEKIT_HOST"], manager)
    return {"release": version, "previous": previous, "manager": manager, "health": h}


@contextlib.contextmanager
def to_the_end():
    """The switch runs to its end once begun: a hang-up or Ctrl-C reaching this process (an SSH session
    that drops, a terminal) must not stop it between the symlink and the health check. It finishes or
    rolls back by itself, and says which release serves."""
    sigs = [s for s in (getattr(signal, "SIGHUP", None), signal.SIGINT) if s is not None]
    old = [signal.signal(s, signal.SIG_IGN) for s in sigs]
    try:
        yield
    finally:
        for s, h in zip(sigs, old):
            signal.signal(s, h)


def _previous_settings(args):
    """Args for putting the previous release back: the flags given for the failed one don't apply."""
    back = argparse.Namespace(**vars(args))
    back.serve_host = back.serve_port = None
    return back


def cmd_activate(args):
    L = Layout(args.root)
    check_version(args.version, "args")
    with locked(L.root), to_the_end():
        previous = L.current_version()
        hist = read_json(L.history, None)
        saved_env = _read_bytes(L.service_env)
        try:
            return _activate(L, args.version, args)
        except (StepError, OSError, subprocess.CalledProcessError) as e:
            step = getattr(e, "step", "switch")
            _restore(L.service_env, saved_env)
            rolled = _revert(L, previous, _previous_settings(args))
            if hist is not None:  # the failed release never served: history is as before
                write_json(L.history, hist)
            raise StepError(step, str(e), rolled_back=rolled)


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _restore(path, data):
    if data is None:
        with contextlib.suppress(OSError):
            os.remove(path)
        return
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _revert(L, previous, args):
    """Put the release that served before back in place; report whether it came back healthy."""
    if not previous or not os.path.isdir(L.release(previous)):
        with contextlib.suppress(Exception):
            stop_service(L, read_json(os.path.join(L.current, "manifest.json"), {}) or {})
        with contextlib.suppress(OSError):
            os.remove(L.current)
        return {"release": None, "note": "no previous release; service stopped"}
    try:
        out = _activate(L, previous, args, record=False)
        hist = read_json(L.history, {}) or {}
        hist["current"] = previous
        write_json(L.history, hist)
        return {"release": previous, "healthy": out["health"]["ready"]}
    except Exception as e:  # report the rollback's own failure; the original error is the headline
        return {"release": previous, "healthy": False, "error": str(e)}


def cmd_rollback(args):
    L = Layout(args.root)
    if args.to is not None:
        check_version(args.to, "args")
    with locked(L.root), to_the_end():
        current = L.current_version()
        hist = read_json(L.history, {}) or {}
        past = [v for v in hist.get("past", []) if v != current and os.path.isdir(os.path.join(L.releases, v))]
        target = args.to or (past[-1] if past else None)
        if not target:
            raise StepError("rollback", "nothing to roll back to: no earlier release on this device (current: %s)"
                            % (current or "none"))
        if not os.path.isdir(L.release(target)):
            raise StepError("rollback", "release %r is not on this device. Available: %s"
                            % (target, ", ".join(L.versions()) or "(none)"))
        saved_env = _read_bytes(L.service_env)
        try:
            out = _activate(L, target, args, record=False)
        except (StepError, OSError) as e:
            _restore(L.service_env, saved_env)
            rolled = _revert(L, current, _previous_settings(args))
            raise StepError(getattr(e, "step", "rollback"), str(e), rolled_back=rolled)
        past = [v for v in hist.get("past", []) if v not in (target, current)] + ([current] if current else [])
        write_json(L.history, {"current": target, "past": past[-10:], "switched": time.time()})
        return out


def cmd_prune(args):
    """Keep the serving release, the rollback candidates and the newest few; drop venvs nobody uses."""
    L = Layout(args.root)
    with locked(L.root):
        hist = read_json(L.history, {}) or {}
        keep = set(L.versions()[-args.keep:]) | set(hist.get("past", [])[-args.keep:])
        if L.current_version():
            keep.add(L.current_version())
        removed = []
        for v in L.versions():
            if v not in keep:
                shutil.rmtree(os.path.join(L.releases, v), ignore_errors=True)
                removed.append(v)
        used = set()
        for v in L.versions():
            with contextlib.suppress(OSError):
                used.add(os.path.basename(os.readlink(os.path.join(L.releases, v, "venv"))))
        for key in os.listdir(L.venvs) if os.path.isdir(L.venvs) else []:
            if key not in used:
                shutil.rmtree(os.path.join(L.venvs, key), ignore_errors=True)
        return {"removed": removed}


def cmd_discard(args):
    """Remove a release that failed before it served (never the current one or a rollback candidate)."""
    L = Layout(args.root)
    with locked(L.root):
        folder = L.release(args.version)
        for leftover in ("%s.tar.gz" % args.version, "%s.tar.gz.partial" % args.version):
            with contextlib.suppress(OSError):  # an upload that never reached unpack
                os.remove(os.path.join(L.releases, ".upload-" + leftover))
        hist = read_json(L.history, {}) or {}
        if args.version in (L.current_version(),) or args.version in hist.get("past", []):
            return {"removed": False}
        shutil.rmtree(folder, ignore_errors=True)
        return {"removed": True}


def cmd_status(args):
    L = Layout(args.root)
    version = L.current_version()
    out = {"root": L.root, "current": version, "releases": L.versions(), "emulated": emulation(),
           "rollback_to": ((read_json(L.history, {}) or {}).get("past") or [None])[-1]}
    if not version:
        out.update(service={"state": "none"}, health={"ready": False})
        return out
    folder = os.path.join(L.releases, version)
    manifest = read_json(os.path.join(folder, "manifest.json"), {}) or {}
    out["model"] = {k: manifest.get(k) for k in ("name", "version", "created", "backend", "device", "profile_name")}
    out["service"] = service_state(L, manifest)
    env = read_env(L.service_env)
    port = env.get("EDGEKIT_PORT", "8080")
    try:
        lat = []
        for _ in range(args.probes):
            lat.append(health(port, timeout=0, host=env.get("EDGEKIT_HOST"))["latency_ms"])
        lat.sort()
        out["health"] = {"ready": True, "port": int(port), "latency_ms_p50": lat[len(lat) // 2],
                         "latency_ms_max": lat[-1]}
    except StepError as e:
        out["health"] = {"ready": False, "port": int(port), "error": str(e).splitlines()[0]}
    if out["health"]["ready"] and args.probes:
        out["serving"] = live_latency(port, manifest, args.probes, env.get("EDGEKIT_HOST"))
    smoke = read_json(os.path.join(folder, "smoke.json"), {}) or {}
    out["bench"] = smoke.get("bench", {})
    out["log_tail"] = tail(os.path.join(L.log, "serve.log"), 5)
    return out


# numpy dtype name -> KServe v2 datatype (the agent has no numpy).
KSERVE_DATATYPES = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int8": "INT8", "uint8": "UINT8",
                    "int16": "INT16", "int32": "INT32", "int64": "INT64", "bool": "BOOL"}


def _loopback(host):
    """Where the device itself reaches a server bound to ``host``."""
    if not host or host in ("0.0.0.0", "::", "*"):
        return "127.0.0.1"
    return "[%s]" % host if ":" in host else host


def live_latency(port, manifest, n, host=None):
    """End-to-end latency of the running server, timed on the device: a zero input through KServe v2 infer."""
    inputs = []
    for spec in manifest.get("inputs", []):
        shape = [1 if d is None else int(d) for d in spec["shape"]]
        size = 1
        for d in shape:
            size *= d
        # A quantized input is float on the wire: the server's Session quantizes it.
        dt = "FP32" if spec.get("scale") else KSERVE_DATATYPES.get(spec["dtype"])
        if dt is None:
            return {"error": "status sends no %s input" % spec["dtype"]}
        inputs.append({"name": spec["name"], "shape": shape, "datatype": dt, "data": [0] * size})
    body = json.dumps({"inputs": inputs}).encode()
    url = "http://%s:%s/v2/models/%s/infer" % (_loopback(host), port, manifest.get("name"))
    times = []
    try:
        for _ in range(n + 1):
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            t0 = time.perf_counter()
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
            times.append((time.perf_counter() - t0) * 1e3)
    except Exception as e:  # status reports, it doesn't fail, when the server can't answer an inference
        return {"error": "infer request failed: %s" % getattr(e, "reason", e)}
    times = sorted(times[1:])  # the first request warms caches
    return {"infer_ms_p50": round(times[len(times) // 2], 2), "infer_ms_max": round(times[-1], 2),
            "requests": n, "model": manifest.get("name")}


def cmd_stop(args):
    L = Layout(args.root)
    stop_service(L, read_json(os.path.join(L.current, "manifest.json"), {}) or {})
    return {"stopped": True}


# -- entry ----------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(prog="edgekit-agent")
    ap.add_argument("command", choices=["probe", "unpack", "install", "smoke", "activate", "rollback", "prune",
                                        "discard", "status", "stop", "trust"])
    ap.add_argument("--root", required=True)
    ap.add_argument("--version")
    ap.add_argument("--tarball")
    ap.add_argument("--sha256")
    ap.add_argument("--to")
    ap.add_argument("--pip-arg", action="append")
    ap.add_argument("--apt", action="append")
    ap.add_argument("--module", action="append")
    ap.add_argument("--serve-host")
    ap.add_argument("--serve-port", type=int)
    ap.add_argument("--manager", choices=["systemd", "supervisor"])
    ap.add_argument("--health-timeout", type=float, default=60.0)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--keep", type=int, default=3)
    ap.add_argument("--probes", type=int, default=5)
    ap.add_argument("--signers")
    ap.add_argument("--unsigned", choices=["accept", "refuse"])
    args = ap.parse_args(argv)
    fn = globals()["cmd_" + args.command]
    try:
        result = fn(args)
        result["ok"] = True
        code = 0
    except StepError as e:
        result = {"ok": False, "step": e.step, "error": str(e)}
        result.update(e.detail)
        code = 1
    except Exception as e:  # an agent bug or an odd device: still one JSON line, never a bare traceback
        result = {"ok": False, "step": args.command, "error": "%s: %s" % (type(e).__name__, e)}
        code = 1
    try:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        sys.stdout.flush()
    except OSError:  # the host hung up (Ctrl-C there): the work is done; `status` tells it what serves
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


if __name__ == "__main__":
    sys.exit(main())
