"""``edgekit bundle``: everything a device needs to run a model, in one verified tarball.

Contents (paths inside the tarball)::

    manifest.json          checksums of every other file, versions, backend, device, I/O spec, metadata
    model/<files>          the model (+ .bin for OpenVINO IR) and its sidecar metadata
    smoke/input.npz        a fixed sample input ...
    smoke/expected.npz     ... and the outputs the host computed for it
    smoke_test.py          loads, infers, compares, benches on the device (edgekit.runtime)
    requirements.txt       the runtime for this device and backend (edgekit pinned to this version)
    wheels/                the edgekit wheel itself, plus every dependency with --with-wheels
    run.sh supervise.sh edgekit.service   the server start script, fallback supervisor, systemd unit
    agent.py               the stdlib-only device helper deploy runs over SSH
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from .. import __version__
from ..artifact import model_files, model_format, read_meta, sidecar_path
from ..devices import DeviceProfile, load_profile
from ..errors import ConfigError, DeployError, MissingDependencyError, ModelError
from ..fsutil import atomic_path
from .agent import SIG_NAME, SIG_NAMESPACE, VERSION_RE

MANIFEST_SCHEMA = 1
RESOURCES = Path(__file__).resolve().parent.parent / "_resources" / "deploy"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- the edgekit wheel ------------------------------------------------------------------------------

def edgekit_wheel(dest: str | os.PathLike) -> Path:
    """Pack the installed edgekit (editable or not) into a py3-none-any wheel, so a device needs no index for it.

    Built from the package files and the installed distribution's METADATA (its Requires-Dist carries the
    extras), with fixed timestamps so the same code gives the same wheel hash (and devices reuse venvs).
    """
    from importlib import metadata

    import edgekit

    # A checkout's stale edgekit.egg-info (on sys.path via the cwd) can shadow the installed
    # dist-info; prefer the one with a real METADATA file.
    dists = sorted(metadata.distributions(name="edgekit"), key=lambda d: d.read_text("METADATA") is None)
    if not dists:
        raise DeployError("edgekit is imported from a folder but not installed; run `pip install -e .` "
                          "so bundles can carry the edgekit wheel")
    dist = dists[0]
    meta_text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    if "Name: edgekit" not in meta_text:
        raise DeployError(f"the installed edgekit's metadata is unreadable ({dist!r}); reinstall with `pip install -e .`")
    version = dist.version
    pkg = Path(edgekit.__file__).resolve().parent
    dist_info = f"edgekit-{version}.dist-info"
    entries: list[tuple[str, bytes]] = []
    for p in sorted(pkg.rglob("*")):
        rel = p.relative_to(pkg)
        if p.is_dir() or "__pycache__" in rel.parts or p.suffix in (".pyc", ".partial") \
                or any(part.startswith(".") for part in rel.parts):
            continue
        entries.append((f"edgekit/{rel.as_posix()}", p.read_bytes()))  # read_bytes follows symlinks
    entries.append((f"{dist_info}/METADATA", meta_text.encode()))
    eps = dist.read_text("entry_points.txt")
    if eps:
        entries.append((f"{dist_info}/entry_points.txt", eps.encode()))
    entries.append((f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: edgekit-bundle\n"
                                          b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    record = []
    for name, data in entries:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    out = Path(dest) / f"edgekit-{version}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return out


def pin_edgekit(lines: list[str], version: str) -> list[str]:
    """``edgekit[litert,serve]`` -> ``edgekit[litert,serve]==<this version>``: the device gets the carried wheel."""
    out = []
    for line in lines:
        m = re.fullmatch(r"\s*edgekit(\[[^\]]*\])?\s*", line)
        out.append(f"edgekit{m.group(1) or ''}=={version}" if m else line)
    return out


def download_wheels(requirements: Path, wheels: Path, profile: DeviceProfile, python_version: str) -> list[str]:
    """Every dependency as binary wheels for the device's platform (for devices without internet)."""
    rt = profile.runtime
    if not rt.wheel_platforms:
        raise ConfigError(f"Profile {profile.name!r} lists no runtime.wheel_platforms, so wheels for it "
                          "can't be chosen; add them or bundle without --with-wheels")
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
           "--only-binary=:all:", "--implementation", "cp", "--python-version", python_version,
           "--find-links", str(wheels), "-d", str(wheels), "-r", str(requirements)]
    for plat in rt.wheel_platforms:
        cmd += ["--platform", plat]
    cmd += [a for a in rt.pip_args]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise DeployError(f"pip download for {profile.name} ({', '.join(rt.wheel_platforms[:2])}..., Python "
                          f"{python_version}) failed: {r.stdout.strip()[-1200:]}")
    return sorted(p.name for p in wheels.glob("*.whl"))


# -- reference outputs ------------------------------------------------------------------------------

def reference(model: Path, seed: int) -> tuple[dict, dict, dict, list, list]:
    """Sample input, expected outputs and per-output tolerances, computed on the host with edgekit.runtime."""
    import numpy as np

    from ..runtime import load

    with load(model, device="cpu") as session:
        feed = session.sample_input(batch=1, seed=seed)
        outputs = session.run(feed)
        tol = {}
        for t in session.outputs:
            # Other CPUs (NEON vs AVX kernels) round differently; an int8 output may move a step or two.
            atol = max(1e-3, 2.0 * float(t.scale)) if t.quantized else 1e-3
            tol[t.name] = {"atol": atol, "rtol": 1e-3}
        inputs = [t.to_dict() for t in session.inputs]
        outs = [t.to_dict() for t in session.outputs]
    return ({k: np.asarray(v) for k, v in feed.items()}, {k: np.asarray(v) for k, v in outputs.items()},
            tol, inputs, outs)


def detection_reference(model: Path, meta, feed: dict, expected: dict) -> tuple[dict, dict, dict | None]:
    """A detector's smoke test runs a detection: the first held-out image of its training data on which the host
    draws boxes becomes the sample input, and those boxes (through the artifact's own post-processing) are what
    the device must draw again (same class, IoU >= 0.9). Random pixels draw no boxes, which would make the check
    vacuous; without the data on this host the raw-tensor check stays, and the manifest says so."""
    import numpy as np

    from ..evaluate_detect import verification_images
    from ..runtime import load
    from ..runtime.boxes import Postprocess

    params = dict((getattr(meta, "extra", None) or {}).get("postprocess") or {})
    x = verification_images(meta, 32)
    if x is None:
        return feed, expected, {"postprocess": params, "skipped": "the training data is not on the host that built "
                                                                   "the bundle: outputs compared as raw tensors"}
    post = Postprocess.from_meta(meta)
    with load(model, device="cpu") as session:
        name, out_name = session.inputs[0].name, session.outputs[0].name
        for img in x:
            trial = {name: img[None].astype(np.float32)}
            outs = session.run(trial)
            dets = post(outs[out_name])[0]
            if len(dets):
                return ({k: np.asarray(v) for k, v in trial.items()}, {k: np.asarray(v) for k, v in outs.items()},
                        {"postprocess": params, "output": out_name, "boxes": dets.boxes.tolist(),
                         "classes": dets.classes.tolist(), "scores": dets.scores.tolist(), "iou": 0.9})
    return feed, expected, {"postprocess": params, "skipped": f"the detector draws no box on {len(x)} held-out images"}


def _render(name: str, **values) -> str:
    text = (RESOURCES / name).read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    return text


def _default_version(model: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(sha256_file(f).encode())
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", model.stem)[:40] or "model"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{h.hexdigest()[:8]}"


def check_runtime_device(device, backend: str, profile: DeviceProfile) -> str:
    """A device string the backend's runtime accepts on the target (checked here: the host may lack it)."""
    from ..runtime import backends
    from ..runtime.base import GENERIC_DEVICES

    d = device.strip() if isinstance(device, str) else ""
    if backend == "litert":
        ok = d == "cpu-ref" or (d.startswith("delegate:") and len(d) > len("delegate:"))
    elif backend == "onnxruntime":
        from ..runtime.onnxruntime import ALIASES

        ok = d.lower() in ALIASES or (d.endswith("ExecutionProvider") and d.isidentifier())
    elif backend == "openvino":
        ok = d.split(":")[0].split(".")[0] in ("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI")
    else:
        ok = False
    if not (d.lower() in GENERIC_DEVICES or ok):
        from ..devices import profile_names

        raise ConfigError(f"Unknown --device {device!r} for a {backend} model. Allowed: "
                          f"{', '.join(backends.get(backend).device_names())}. (--device is the runtime device on "
                          f"the target, now profile {profile.name!r}; profiles: {', '.join(profile_names())})")
    return d


def check_labels(meta, outputs: list, model: Path) -> None:
    """A classifier's labels must be a list with one name per class of its output."""
    if meta is None or not meta.labels:
        return
    side = sidecar_path(model)
    src = side.name if side.exists() else f"{model.name} (embedded metadata)"
    if not isinstance(meta.labels, list):
        raise ModelError(f"{src}: labels must be a list of class names; received {type(meta.labels).__name__}")
    widths = [o["shape"][-1] for o in outputs if o.get("shape") and isinstance(o["shape"][-1], int)]
    if widths and len(meta.labels) not in widths:
        n = len(meta.labels)
        raise ModelError(f"{src} has {n} label{'s' * (n != 1)}, but the model's output has {widths[0]} classes"
                         + (f" (outputs: {', '.join(map(str, widths))})" if len(widths) > 1 else "")
                         + "; fix the sidecar or re-export with matching --labels")


def build_bundle(model: str | os.PathLike, profile: str | DeviceProfile, out: str | os.PathLike, *,
                 version: str | None = None, device: str | None = None, threads: int | None = None,
                 host: str | None = None, port: int | None = None, with_wheels: bool = False,
                 python_version: str | None = None, seed: int = 0, bench_runs: int = 20,
                 sign: str | os.PathLike | None = None) -> dict:
    """Build ``out`` (a .tar.gz) for ``model`` on ``profile``; return the manifest. ``sign``: an OpenSSH
    private key that signs manifest.json (which lists every file's sha256) with ``ssh-keygen -Y sign``."""
    from ..runtime import backend_for
    from .agent import StepError, check_host, check_port

    model = Path(model)
    if not model.is_file():
        raise ModelError(f"No such model file: {model}")
    prof = load_profile(profile)
    backend = backend_for(model)
    prof.check_backend(backend)
    if version is not None and not VERSION_RE.match(version):
        raise ConfigError(f"--version must be 1-100 letters, digits, '.', '_', '+' or '-' (not starting with "
                          f"one of the last four); received {version!r}")
    if device is None:
        device = prof.preferred.get("device", "cpu") if prof.preferred.get("backend") == backend else "cpu"
    device = check_runtime_device(device, backend, prof)
    host = prof.service.host if host is None else host
    port = prof.service.port if port is None else port
    try:
        check_host(host)
        check_port(port)
    except StepError as e:
        raise ConfigError(f"--serve-host/--serve-port: {e}") from None
    threads = prof.threads if threads is None else threads
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be a positive integer; received {threads}")
    files = [f for f in model_files(model)]
    for f in files:
        if not f.is_file():
            raise ModelError(f"{model} needs {f.name} next to it, which is missing")
    out = Path(out)
    if not out.name.endswith((".tar.gz", ".tgz")):
        raise ConfigError(f"--out must end in .tar.gz or .tgz; received {out.name!r}")
    version = version or _default_version(model, files)
    meta = read_meta(model)
    import numpy as np

    feed, expected, tolerance, inputs, outputs = reference(model, seed)
    detections = None
    if meta is not None and meta.task == "detection":
        feed, expected, detections = detection_reference(model, meta, feed, expected)
    else:
        check_labels(meta, outputs, model)
    if device not in ("cpu",):
        # The reference ran on the host CPU; GPUs, NPUs and TensorRT compute in reduced precision (FP16).
        for tol in tolerance.values():
            tol["atol"], tol["rtol"] = max(tol["atol"], 2e-2), max(tol["rtol"], 2e-2)
    py_version = python_version or prof.runtime.python_version

    with tempfile.TemporaryDirectory(prefix="edgekit-bundle-") as tmp:
        root = Path(tmp)
        (root / "model").mkdir()
        for f in files:
            (root / "model" / f.name).write_bytes(f.read_bytes())
        if sidecar_path(model).exists():
            (root / "model" / sidecar_path(model).name).write_bytes(sidecar_path(model).read_bytes())
        (root / "smoke").mkdir()
        np.savez(root / "smoke" / "input.npz", **feed)
        np.savez(root / "smoke" / "expected.npz", **expected)
        wheels = root / "wheels"
        wheels.mkdir()
        edgekit_wheel(wheels)
        reqs = pin_edgekit(prof.runtime.requirements_for(backend), __version__)
        (root / "requirements.txt").write_text(
            f"# Runtime for {prof.name} ({backend}); edgekit itself is in wheels/ of this bundle.\n"
            + "\n".join(reqs) + "\n")
        carried = download_wheels(root / "requirements.txt", wheels, prof, py_version) if with_wheels else []
        model_rel = f"model/{model.name}"
        (root / "run.sh").write_text(_render("run.sh", HOST=host, PORT=port,
                                             THREADS="" if threads is None else threads, MODEL=model_rel,
                                             DEVICE=device))
        (root / "supervise.sh").write_text(_render("supervise.sh"))
        (root / "edgekit.service").write_text(_render("edgekit.service", NAME=f"{model.name} on {prof.name}"))
        (root / "smoke_test.py").write_text((Path(__file__).parent / "smoke.py").read_text())
        (root / "agent.py").write_text((Path(__file__).parent / "agent.py").read_text())
        for sh in ("run.sh", "supervise.sh"):
            os.chmod(root / sh, 0o755)
        checksums = {}
        for p in sorted(root.rglob("*")):
            if p.is_file():
                checksums[p.relative_to(root).as_posix()] = {"sha256": sha256_file(p), "size": p.stat().st_size}
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "name": model.stem,
            "version": version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "edgekit": __version__,
            "profile_name": prof.name,
            "arch": prof.arch,
            "python": prof.python.version,
            "backend": backend,
            "format": model_format(model),
            "device": device,
            "threads": threads,
            "model": {"path": model_rel, "files": [f"model/{f.name}" for f in files],
                      "size": sum(f.stat().st_size for f in files)},
            "inputs": inputs,
            "outputs": outputs,
            "metadata": meta.to_dict() if meta is not None else {},
            "smoke": {"input": "smoke/input.npz", "expected": "smoke/expected.npz", "seed": seed,
                      "tolerance": tolerance, "bench_runs": bench_runs,
                      **({"detections": detections} if detections is not None else {})},
            "runtime": {"requirements": reqs, "python_version": py_version, "offline": with_wheels,
                        "wheels": sorted(p.name for p in wheels.glob("*.whl")), "carried": bool(carried),
                        "venv_args": prof.runtime.venv_args, "pip_args": prof.runtime.pip_args,
                        "apt": prof.runtime.apt},
            "service": {"manager": prof.service.manager, "fallback": prof.service.fallback,
                        "name": prof.service.name, "host": host, "port": port,
                        "health": "/v2/health/ready"},
            "profile": prof.to_dict(),
            "files": checksums,
        }
        (root / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        if sign is not None:
            sign_manifest(root / "manifest.json", sign)
        with atomic_path(out) as tmp_out:
            with tarfile.open(tmp_out, "w:gz", compresslevel=1 if with_wheels else 6) as tar:
                for p in bundle_order(root):
                    info = tar.gettarinfo(p, arcname=p.relative_to(root).as_posix())
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    if info.isfile():
                        with open(p, "rb") as f:
                            tar.addfile(info, f)
                    elif info.isdir():
                        tar.addfile(info)
    return manifest


def rebundle(src: str | os.PathLike, dest: str | os.PathLike, version: str, mutate=None,
             rehash: bool = True, sign: str | os.PathLike | None = None) -> Path:
    """A variant of bundle ``src`` at ``dest``: a new version, its unpacked folder changed by
    ``mutate(folder)``, and checksums recomputed unless ``rehash`` is false (rehearsing failed deploys:
    a tampered file, a garbled model, a server that will not start). ``src``'s signature is carried
    as it was (now stale, as a tampered bundle's would be) unless ``sign`` gives a key to sign anew."""
    dest = Path(dest)
    folder = Path(tempfile.mkdtemp(prefix=".rebundle-", dir=dest.parent))
    try:
        with tarfile.open(src) as tar:
            tar.extractall(folder, filter="data")
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["version"] = version
        if mutate:
            mutate(folder)
        if rehash:
            for rel in manifest["files"]:
                manifest["files"][rel] = {"sha256": sha256_file(folder / rel), "size": (folder / rel).stat().st_size}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        if sign is not None:
            (folder / SIG_NAME).unlink(missing_ok=True)
            sign_manifest(folder / "manifest.json", sign)
        with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
            for p in bundle_order(folder):
                tar.add(p, arcname=p.relative_to(folder).as_posix(), recursive=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return dest


def bundle_order(root: Path) -> list[Path]:
    """manifest.json first and its signature second: the device reads both before extracting anything."""
    head = [root / n for n in ("manifest.json", SIG_NAME) if (root / n).exists()]
    return head + sorted(x for x in root.rglob("*") if x not in head)


def sign_manifest(manifest: Path, key: str | os.PathLike) -> Path:
    """``ssh-keygen -Y sign -n edgekit-bundle -f KEY manifest.json`` -> manifest.json.sig."""
    key = Path(key)
    if not key.is_file():
        raise ConfigError(f"--sign {str(key)!r}: no such key file (an OpenSSH private key, e.g. ~/.ssh/id_ed25519)")
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise MissingDependencyError("ssh-keygen", what="Signing bundles") from None
    r = subprocess.run([keygen, "-q", "-Y", "sign", "-n", SIG_NAMESPACE, "-f", str(key), str(manifest)],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    sig = manifest.with_name(SIG_NAME)
    if r.returncode != 0 or not sig.is_file():
        why = " ".join((r.stderr or r.stdout).split())[-300:] or f"exit {r.returncode}"
        raise ConfigError(f"--sign {str(key)!r}: ssh-keygen could not sign with it ({why}); give an OpenSSH "
                          "private key without a passphrase, or one loaded in ssh-agent")
    return sig


def read_manifest(bundle: str | os.PathLike) -> dict:
    """The manifest of a bundle tarball, without unpacking the rest, checked as the device checks it
    (every name that becomes a path there, every field deploy reads): a bad bundle is refused here,
    before any connection or upload."""
    p = Path(bundle)
    if not p.is_file():
        raise ConfigError(f"No such bundle: {p}")
    from .agent import StepError, open_bundle, read_bundle_manifest

    try:  # the first member only, its header and size checked before it is read (as the device does)
        with open_bundle(p, "r:*") as tar:
            manifest = read_bundle_manifest(tar)[1]
    except StepError as e:
        msg = str(e)
        if "does not start with manifest.json" in msg:
            raise ConfigError(f"{p} is not an edgekit bundle ({msg})") from None
        raise ConfigError(f"{p} is not a deployable bundle: {msg}") from None
    except (tarfile.TarError, ValueError, OSError, EOFError) as e:
        raise ConfigError(f"{p} is not an edgekit bundle (no readable manifest.json: {e or 'missing'}); "
                          "make one with `edgekit bundle MODEL --profile P --out B.tar.gz`") from None
    return manifest


def check_manifest(manifest, source) -> dict:
    """The device agent's own manifest checks, as a ConfigError naming the bundle."""
    from .agent import StepError
    from .agent import check_manifest as agent_check

    try:
        return agent_check(manifest)
    except StepError as e:
        raise ConfigError(f"{source} is not a deployable bundle: {e}") from None


def describe(manifest: dict) -> dict:
    return {"bundle": manifest["version"], "profile": manifest["profile_name"], "backend": manifest["backend"],
            "device": manifest["device"], "model": manifest["model"]["path"],
            "size_kb": round(manifest["model"]["size"] / 1024, 1), "files": len(manifest["files"]),
            "wheels": len(manifest["runtime"]["wheels"]), "offline": manifest["runtime"]["offline"]}
