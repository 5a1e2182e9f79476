"""A corpus of hostile and careless bundles run through the device agent's real unpack and verify.

Each case is a tarball made here byte by byte (no TensorFlow, no SSH): path escapes in the release
version and in manifest file entries, absolute and escaping members, symlinks, hard links, devices,
tar bombs against the manifest sizes and the free disk the profile keeps, and manifests with empty,
missing or mistyped fields. The agent runs as the host runs it (``python agent.py unpack ...`` in a
subprocess, one JSON line out), and every case must be refused with a message naming what is wrong,
with nothing written outside the deploy root and no ``.upload-*`` or ``.staging-*`` left behind.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from edgekit.deploy import agent
from edgekit.deploy.bundle import read_manifest
from edgekit.errors import ConfigError

AGENT = Path(agent.__file__)
MODEL = b"TFL3" + bytes(range(60))
FILES = {"model/m.tflite": MODEL, "smoke/input.npz": b"in" * 8, "smoke/expected.npz": b"out" * 8,
         "run.sh": b"#!/bin/sh\nexit 0\n"}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def base_manifest(version: str = "v1") -> dict:
    return {"schema": 1, "name": "m", "version": version, "threads": None,
            "files": {k: {"sha256": sha(v), "size": len(v)} for k, v in FILES.items()},
            "profile": {"name": "test", "min_free_disk_mb": 1},
            "model": {"path": "model/m.tflite", "files": ["model/m.tflite"], "size": len(MODEL)},
            "smoke": {"input": "smoke/input.npz", "expected": "smoke/expected.npz"},
            "service": {"manager": "supervisor", "fallback": "supervisor", "name": "edgekit",
                        "host": "127.0.0.1", "port": 8080, "health": "/v2/health/ready"},
            "runtime": {"venv_args": [], "pip_args": []}}


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.linkname, ti.mode = kind, size, link, 0o755 if kind == tarfile.DIRTYPE else 0o644
    return ti


class _Zeros(io.RawIOBase):
    """n zero bytes, read in chunks: a bomb member without holding it in memory."""

    def __init__(self, n):
        self.left = n

    def readinto(self, b):
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k

    def readable(self):
        return True


def make_bundle(path: Path, manifest, members=None, manifest_first: bool = True, raw_manifest: bytes | None = None):
    """A gzip tarball: manifest.json, then ``members`` — (name, bytes | int zeros | None dir, kind, link)."""
    if members is None:
        members = [("model", None), ("smoke", None)] + list(FILES.items())
    data = raw_manifest if raw_manifest is not None else json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        def add_manifest():
            tar.addfile(_info("manifest.json", len(data)), io.BytesIO(data))
        if manifest_first:
            add_manifest()
        for m in members:
            name, body = m[0], m[1]
            kind = m[2] if len(m) > 2 else None
            link = m[3] if len(m) > 3 else ""
            if kind is not None:
                tar.addfile(_info(name, 0, kind, link))
            elif body is None:
                tar.addfile(_info(name, 0, tarfile.DIRTYPE))
            elif isinstance(body, int):
                tar.addfile(_info(name, body), io.BufferedReader(_Zeros(body), 1 << 20))
            else:
                tar.addfile(_info(name, len(body)), io.BytesIO(body))
        if not manifest_first:
            add_manifest()
    return path


def tree(top: Path) -> set[str]:
    out = set()
    for dirpath, dirs, files in os.walk(top):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(dirpath, n), top))
    return out


def run_agent(*args) -> tuple[int, dict]:
    r = subprocess.run([sys.executable, str(AGENT), *args], capture_output=True, text=True, timeout=120)
    lines = r.stdout.strip().splitlines()
    assert lines, r.stderr
    return r.returncode, json.loads(lines[-1])


@pytest.fixture
def device_root(tmp_path):
    """A deploy root inside a sandbox folder whose every other file is watched."""
    sandbox = tmp_path / "sandbox"
    root = sandbox / "home" / "edgekit"
    (root / "releases").mkdir(parents=True)
    (sandbox / "outside").mkdir()
    (sandbox / "outside" / "secret").write_text("not yours\n")
    return root


def unpack(root: Path, bundle: Path, version: str) -> tuple[int, dict]:
    """Upload as the host does (releases/.upload-<name>.tar.gz), then run the agent's unpack."""
    upload = root / "releases" / ".upload-case.tar.gz"
    upload.write_bytes(bundle.read_bytes())
    return run_agent("unpack", "--root", str(root), "--tarball", str(upload), "--version", version,
                     "--sha256", hashlib.sha256(bundle.read_bytes()).hexdigest())


def _with(change):
    def build(version="v1"):
        m = base_manifest(version)
        change(m)
        return m
    return build


def _files(**entries):
    def change(m):
        for k, v in entries.items():
            m["files"][k] = v
    return change


ETC = Path("/etc/hostname")
ETC_BYTES = ETC.read_bytes() if ETC.is_file() else b"host\n"
OUTSIDE = {"sha256": sha(ETC_BYTES), "size": len(ETC_BYTES)}

# (id, version given to the agent, manifest builder, members or None for the base set, expected message)
CORPUS = [
    # -- the release version escapes the deploy root ------------------------------------------------------
    ("version-dotdot-path", "x/../../../../evil-dir/pwn", _with(lambda m: m.update(version="x/../../../../evil-dir/pwn")),
     None, "invalid release version"),
    ("version-parent", "..", _with(lambda m: m.update(version="..")), None, "invalid release version"),
    ("version-hidden", ".upload-x", _with(lambda m: m.update(version=".upload-x")), None, "invalid release version"),
    ("version-absolute", "/tmp/evil", _with(lambda m: m.update(version="/tmp/evil")), None, "invalid release version"),
    ("version-shell", "v1;touch x", _with(lambda m: m.update(version="v1;touch x")), None, "invalid release version"),
    ("manifest-version-escapes", "v1", _with(lambda m: m.update(version="../v1")), None, "invalid release version"),
    ("manifest-version-number", "v1", _with(lambda m: m.update(version=7)), None, "invalid release version"),
    ("manifest-version-other", "v1", _with(lambda m: m.update(version="v2")), None, "manifest says version 'v2'"),
    # -- manifest file entries that name files outside the release (they must not be hashed) -----------
    ("entry-absolute", "v1", _with(_files(**{"/etc/hostname": OUTSIDE})), None, "'/etc/hostname' escapes"),
    ("entry-dotdot", "v1", _with(_files(**{"../" * 15 + "etc/hostname": OUTSIDE})), None, "escapes the release"),
    ("entry-inner-dotdot", "v1", _with(_files(**{"model/../../outside/secret": OUTSIDE})), None, "escapes"),
    ("entry-dot", "v1", _with(_files(**{"./run.sh": {"sha256": sha(b"x"), "size": 1}})), None, "escapes"),
    ("entry-empty-part", "v1", _with(_files(**{"model//m.tflite": {"sha256": sha(b"x"), "size": 1}})), None,
     "escapes"),
    ("entry-device-venv", "v1", _with(_files(**{"venv/bin/python": {"sha256": sha(b"x"), "size": 1}})), None,
     "names a file the device writes itself"),
    ("entry-device-smoke", "v1", _with(_files(**{"smoke.json": {"sha256": sha(b"x"), "size": 1}})), None,
     "names a file the device writes itself"),
    # -- members that escape, or are not regular files and folders --------------------------------------
    ("member-dotdot", "v1", base_manifest, [("model", None), ("smoke", None)] + list(FILES.items())
     + [("../../../outside/planted", b"x")], "'../../../outside/planted' escapes"),
    ("member-absolute", "v1", base_manifest, list(FILES.items()) + [("/ABS/planted", b"x")], "escapes"),
    ("member-symlink-file", "v1", base_manifest,
     [(k, v) for k, v in FILES.items() if k != "run.sh"] + [("run.sh", None, tarfile.SYMTYPE, "/etc/hostname")],
     "'run.sh' is a symlink"),
    ("member-symlink-dir", "v1", base_manifest,
     [("model", None, tarfile.SYMTYPE, "../../../outside")] + list(FILES.items()), "'model' is a symlink"),
    ("member-hardlink", "v1", base_manifest,
     [(k, v) for k, v in FILES.items() if k != "run.sh"] + [("run.sh", None, tarfile.LNKTYPE, "/etc/hostname")],
     "'run.sh' is a hard link"),
    ("member-chardev", "v1", base_manifest, list(FILES.items()) + [("null", None, tarfile.CHRTYPE)], "is a device"),
    ("member-fifo", "v1", base_manifest, list(FILES.items()) + [("fifo", None, tarfile.FIFOTYPE)], "is a fifo"),
    ("member-unlisted", "v1", base_manifest, list(FILES.items()) + [("extra.py", b"print(1)")],
     "'extra.py' is not listed in the manifest"),
    ("member-duplicate", "v1", base_manifest, list(FILES.items()) + [("run.sh", b"#!/bin/sh\nrm -rf ~\n")],
     "'run.sh' appears twice"),
    ("member-missing", "v1", base_manifest, [(k, v) for k, v in FILES.items() if k != "run.sh"],
     "listed but not in the bundle: run.sh"),
    # -- bombs: members bigger than the manifest says, or more than the disk the profile keeps free --------
    ("bomb-member-exceeds-manifest", "v1", base_manifest,
     [(k, v) for k, v in FILES.items() if k != "model/m.tflite"] + [("model/m.tflite", 64 << 20)],
     "'model/m.tflite' is 67108864 bytes; the manifest says 64"),
    ("bomb-manifest-sizes-exceed-disk", "v1", _with(_files(**{"model/m.tflite": {"sha256": sha(MODEL), "size": 1 << 50}})),
     None, "unpacks to"),
    ("bomb-profile-keeps-more-than-free", "v1", _with(lambda m: m["profile"].update(min_free_disk_mb=1 << 40)),
     None, "its profile keeps 1099511627776 MB free"),
    # -- manifests that are empty, or whose fields have the wrong type ------------------------------------
    ("manifest-empty-object", "v1", lambda v="v1": {}, None, "manifest.json is empty"),
    ("manifest-list", "v1", lambda v="v1": [], None, "must be a JSON object; received a list"),
    ("manifest-not-json", "v1", base_manifest, "not-json", "manifest.json is not valid JSON"),
    ("manifest-not-first", "v1", base_manifest, "last", "does not start with manifest.json"),
    ("manifest-no-profile", "v1", _with(lambda m: m.pop("profile")), None, "has no 'profile' field"),
    ("manifest-profile-string", "v1", _with(lambda m: m.update(profile="x86-cpu")), None,
     "'profile' must be an object; received str"),
    ("files-list", "v1", _with(lambda m: m.update(files=list(m["files"]))), None,
     "'files' must be an object mapping path"),
    ("files-string", "v1", _with(lambda m: m.update(files="model/m.tflite")), None, "'files' must be an object"),
    ("files-empty", "v1", _with(lambda m: m.update(files={})), None, "'files' must be an object"),
    ("file-entry-not-object", "v1", _with(_files(**{"run.sh": "abc"})), None, "'run.sh' needs a sha256"),
    ("file-entry-bad-size", "v1", _with(_files(**{"run.sh": {"sha256": sha(FILES["run.sh"]), "size": "17"}})), None,
     "'run.sh' needs a size in bytes"),
    ("model-path-unlisted", "v1", _with(lambda m: m["model"].update(path="/etc/passwd")), None,
     "model.path '/etc/passwd' is not one of the bundle's files"),
    ("service-host-shell", "v1", _with(lambda m: m["service"].update(host="x';touch /tmp/pwned;'")), None,
     "invalid server host"),
    ("service-port-text", "v1", _with(lambda m: m["service"].update(port="8080; rm")), None, "invalid server port"),
    ("service-name-path", "v1", _with(lambda m: m["service"].update(name="../../etc/cron.d/x")), None,
     "service.name '../../etc/cron.d/x' is not a service name"),
    ("threads-text", "v1", _with(lambda m: m.update(threads="4; rm")), None, "threads must be a positive integer"),
    ("venv-args-string", "v1", _with(lambda m: m["runtime"].update(venv_args="--system-site-packages")), None,
     "runtime.venv_args must be a list"),
]


@pytest.mark.parametrize("case", CORPUS, ids=[c[0] for c in CORPUS])
def test_hostile_bundle_is_refused_and_nothing_is_written_outside(case, device_root, tmp_path):
    name, version, build, members, message = case
    manifest = build(version)
    bundle = tmp_path / "case.tar.gz"
    if members == "not-json":
        make_bundle(bundle, None, raw_manifest=b"{not json")
    elif members == "last":
        make_bundle(bundle, manifest, manifest_first=False)
    else:
        make_bundle(bundle, manifest, members)
    sandbox = device_root.parent.parent
    before = tree(sandbox)
    code, out = unpack(device_root, bundle, version)
    assert code == 1 and out["ok"] is False, out
    assert out["step"] in ("verify", "args") and message in out["error"], out
    assert len(out["error"].splitlines()) == 1
    after = tree(sandbox)
    # Nothing new anywhere in the sandbox: not outside the root, not a release, not an upload or staging left.
    assert after - before <= {"home/edgekit/.lock"}, sorted(after - before)
    assert not [p for p in after if ".upload-" in p or ".staging-" in p]
    assert (sandbox / "outside" / "secret").read_text() == "not yours\n"
    assert not Path("/ABS/planted").exists() and not Path("/tmp/pwned").exists()


def test_the_corpus_base_bundle_unpacks(device_root, tmp_path):
    """The control: the same bytes with nothing hostile are accepted, so each refusal above is its own."""
    bundle = make_bundle(tmp_path / "ok.tar.gz", base_manifest("v1"))
    code, out = unpack(device_root, bundle, "v1")
    assert code == 0 and out["ok"] and out["files"] == len(FILES), out
    rel = device_root / "releases" / "v1"
    assert {p.relative_to(rel).as_posix() for p in rel.rglob("*") if p.is_file()} == set(FILES) | {"manifest.json"}
    assert not list((device_root / "releases").glob(".upload-*"))


def test_a_listed_bomb_is_refused_against_the_free_disk_the_profile_keeps(device_root, tmp_path):
    """A member the manifest lists with its true size (so its header matches) still may not eat the disk
    the profile keeps free: 96 MiB of zeros (96 KB gzipped) with a profile keeping all but 48 MB."""
    free = agent.free_disk_mb(str(device_root))
    big = 96 << 20
    m = base_manifest("v1")
    zeros = hashlib.sha256()
    for _ in range(96):
        zeros.update(bytes(1 << 20))
    m["files"]["model/m.tflite"] = {"sha256": zeros.hexdigest(), "size": big}
    m["profile"]["min_free_disk_mb"] = max(0, free - 48)
    members = [(k, v) for k, v in FILES.items() if k != "model/m.tflite"] + [("model/m.tflite", big)]
    bundle = make_bundle(tmp_path / "bomb.tar.gz", m, members)
    assert bundle.stat().st_size < 1 << 20  # a small upload ...
    code, out = unpack(device_root, bundle, "v1")
    assert code == 1 and "the bundle unpacks to 96.0 MB" in out["error"], out  # ... refused before extracting
    assert not list((device_root / "releases").iterdir())
    # With room to spare the same bundle unpacks, and every byte is checked.
    m["profile"]["min_free_disk_mb"] = 1
    make_bundle(bundle, m, members)
    code, out = unpack(device_root, bundle, "v1")
    assert code == 0 and out["ok"], out
    assert (device_root / "releases" / "v1" / "model" / "m.tflite").stat().st_size == big


def test_too_many_members_are_refused(device_root, tmp_path):
    m = base_manifest("v1")
    many = {f"f/{i}": b"" for i in range(agent.MAX_MEMBERS + 1)}
    m["files"].update({k: {"sha256": sha(v), "size": 0} for k, v in many.items()})
    bundle = make_bundle(tmp_path / "many.tar.gz", m, list(FILES.items()) + [("f", None)] + list(many.items()))
    code, out = unpack(device_root, bundle, "v1")
    assert code == 1 and f"more than {agent.MAX_MEMBERS} members" in out["error"], out
    assert not list((device_root / "releases").iterdir())


@pytest.mark.parametrize("raw, message", [
    (b"", "cannot be unpacked"),
    (b"this is not a tarball at all" * 40, "cannot be unpacked"),
])
def test_an_archive_that_is_not_a_bundle_is_refused(raw, message, device_root, tmp_path):
    bundle = tmp_path / "junk.tar.gz"
    bundle.write_bytes(raw)
    code, out = unpack(device_root, bundle, "v1")
    assert code == 1 and message in out["error"] and len(out["error"].splitlines()) == 1, out
    assert not list((device_root / "releases").iterdir())


# -- verify on a release already on the device (install and activate verify again) -----------------------

def _release(root: Path, version: str = "v1", manifest: dict | None = None) -> Path:
    folder = root / "releases" / version
    for rel, data in FILES.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    (folder / "manifest.json").write_text(json.dumps(manifest or base_manifest(version)))
    return folder


@pytest.mark.parametrize("tamper, message", [
    # A file swapped for a link to an identical file outside: the hash matches, the place does not.
    ("symlink-same-bytes", "run.sh: not a file inside the release"),
    ("folder-symlink", "model/m.tflite: not a file inside the release"),
    ("entry-outside", "'/etc/hostname' escapes the release folder"),
    ("entry-dotdot", "escapes the release folder"),
    ("size-lie", "run.sh: 18 bytes, manifest says 17"),
    ("unlisted", "unlisted file(s): planted.sh"),
])
@pytest.mark.parametrize("command", ["install", "activate"])
def test_verify_refuses_a_tampered_release_before_using_it(tamper, message, command, device_root):
    folder = _release(device_root)
    outside = device_root.parent.parent / "outside"
    if tamper == "symlink-same-bytes":
        (outside / "run.sh").write_bytes(FILES["run.sh"])
        (folder / "run.sh").unlink()
        (folder / "run.sh").symlink_to(outside / "run.sh")
    elif tamper == "folder-symlink":
        (outside / "model").mkdir()
        (outside / "model" / "m.tflite").write_bytes(MODEL)
        for p in (folder / "model").iterdir():
            p.unlink()
        (folder / "model").rmdir()
        (folder / "model").symlink_to(outside / "model")
    elif tamper in ("entry-outside", "entry-dotdot"):
        m = base_manifest()
        key = "/etc/hostname" if tamper == "entry-outside" else "../../../outside/secret"
        m["files"][key] = OUTSIDE
        (folder / "manifest.json").write_text(json.dumps(m))
    elif tamper == "size-lie":
        (folder / "run.sh").write_bytes(FILES["run.sh"] + b"\n")
    else:
        (folder / "planted.sh").write_text("#!/bin/sh\n")
    code, out = run_agent(command, "--root", str(device_root), "--version", "v1", "--health-timeout", "1")
    assert code == 1 and out["step"] == "verify" and message in out["error"], out
    assert not (device_root / "venvs").exists() and not (device_root / "current").exists()


@pytest.mark.parametrize("command", ["install", "smoke", "activate", "discard", "rollback"])
def test_every_command_refuses_a_version_that_is_a_path(command, device_root):
    flag = "--to" if command == "rollback" else "--version"
    code, out = run_agent(command, "--root", str(device_root), flag, "../../outside")
    assert code == 1 and out["step"] == "args" and "invalid release version '../../outside'" in out["error"], out
    assert (device_root.parent.parent / "outside" / "secret").exists()


def test_unpack_refuses_a_tarball_outside_the_root_and_removes_its_upload(device_root, tmp_path):
    bundle = make_bundle(tmp_path / "ok.tar.gz", base_manifest("v1"))
    code, out = run_agent("unpack", "--root", str(device_root), "--tarball", str(bundle), "--version", "v1")
    assert code == 1 and out["step"] == "args" and "not inside the deploy root" in out["error"]
    assert bundle.exists()  # not ours to delete
    # A bad version still removes the upload it was given.
    upload = device_root / "releases" / ".upload-x.tar.gz"
    upload.write_bytes(bundle.read_bytes())
    code, out = run_agent("unpack", "--root", str(device_root), "--tarball", str(upload), "--version", "a/../../b")
    assert code == 1 and out["step"] == "args" and not upload.exists()


# -- the host refuses the same bundles before connecting ------------------------------------------------

# The manifest cases; not those about the --version argument or the device's free disk (only the device
# knows them) nor about tar members (the host reads the manifest only).
HOST_CORPUS = [c for c in CORPUS if c[3] is None and not c[0].startswith("version-") and "bomb" not in c[0]
               and c[0] != "manifest-version-other"]


@pytest.mark.parametrize("case", HOST_CORPUS, ids=[c[0] for c in HOST_CORPUS])
def test_the_host_refuses_a_hostile_manifest_before_any_connection(case, tmp_path):
    name, version, build, _, message = case
    bundle = make_bundle(tmp_path / "case.tar.gz", build(version))
    with pytest.raises(ConfigError) as e:
        read_manifest(bundle)
    assert "is not a deployable bundle" in str(e.value) and message in str(e.value)
    assert len(str(e.value).splitlines()) == 1


def test_agent_manifest_checks_accept_what_build_bundle_writes(tflite_model, tmp_path):
    from edgekit.deploy.bundle import build_bundle

    m = build_bundle(tflite_model, "x86-cpu", tmp_path / "b.tar.gz", version="r1")
    assert agent.check_manifest(copy.deepcopy(m), "r1")["version"] == "r1"
    root = tmp_path / "dev" / "edgekit"
    (root / "releases").mkdir(parents=True)
    code, out = unpack(root, tmp_path / "b.tar.gz", "r1")
    assert code == 0 and out["ok"] and out["files"] == len(m["files"]), out


# -- issue 25: memory bombs in the headers, read before any check ------------------------------------

def _pax_bomb(path: Path, size: int) -> Path:
    """A small gzip whose first header is a PAX extended header of ``size`` zero bytes (tarfile reads one
    whole), then an ordinary bundle."""
    m = base_manifest("v1")
    data = json.dumps(m).encode()
    with tarfile.open(path, "w:gz", compresslevel=1, format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(_info("././@PaxHeader", size, tarfile.XHDTYPE), io.BufferedReader(_Zeros(size), 1 << 20))
        tar.addfile(_info("manifest.json", len(data)), io.BytesIO(data))
        for k, v in FILES.items():
            tar.addfile(_info(k, len(v)), io.BytesIO(v))
    return path


def _limited(mb: int):
    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))
    return limit


def test_a_pax_header_bomb_is_refused_from_its_size(device_root, tmp_path):
    bundle = _pax_bomb(tmp_path / "pax.tar.gz", 300 << 20)
    assert bundle.stat().st_size < 2 << 20
    upload = device_root / "releases" / ".upload-case.tar.gz"
    upload.write_bytes(bundle.read_bytes())
    # The agent in 200 MB of address space: reading the header whole would fail with MemoryError.
    r = subprocess.run([sys.executable, str(AGENT), "unpack", "--root", str(device_root), "--tarball", str(upload),
                        "--version", "v1"], capture_output=True, text=True, timeout=120, preexec_fn=_limited(200))
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 1 and out["step"] == "verify", out
    assert f"a PAX header of {300 << 20} bytes; at most {agent.MAX_META_HEADER_BYTES}" in out["error"], out
    assert not list((device_root / "releases").iterdir())
    with pytest.raises(ConfigError, match="PAX header of 314572800 bytes"):
        read_manifest(bundle)


def test_the_host_refuses_an_oversized_or_deeply_nested_manifest_without_reading_it(tmp_path, device_root):
    import time

    big = tmp_path / "big.tar.gz"
    make_bundle(big, None, members=[], raw_manifest=b" " * (agent.MAX_MANIFEST_BYTES + 1))
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=f"manifest.json is {agent.MAX_MANIFEST_BYTES + 1} bytes; a manifest is at "
                                          f"most {agent.MAX_MANIFEST_BYTES}"):
        read_manifest(big)
    assert time.perf_counter() - t0 < 1.0  # from the header: the 16 MB are never decompressed
    nested = make_bundle(tmp_path / "nested.tar.gz", None, raw_manifest=b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        read_manifest(nested)
    code, out = unpack(device_root, nested, "v1")
    assert code == 1 and "nested too deeply" in out["error"] and len(out["error"].splitlines()) == 1, out
