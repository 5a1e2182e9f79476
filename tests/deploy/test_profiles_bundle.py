"""Device profiles and bundles: no SSH needed."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from edgekit.deploy.bundle import build_bundle, edgekit_wheel, pin_edgekit, read_manifest, sha256_file
from edgekit.devices import list_profiles, load_profile, profile_from_dict
from edgekit.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
REQUIRED = {"raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano", "jetson-nano", "intel-npu", "x86-cpu"}


def test_profiles_cover_the_targets_with_their_fast_paths():
    rows = {r["name"]: r for r in list_profiles()}
    assert REQUIRED <= set(rows)
    for r in rows.values():
        for key in ("arch", "os", "python", "backends", "accelerators", "format", "precision", "threads", "memory_mb"):
            assert key in r
    pi = load_profile("raspberry-pi-5")
    assert pi.arch == ["aarch64"] and pi.preferred["backend"] == "litert" and "xnnpack" in pi.accelerators
    orin = load_profile("jetson-orin-nano")
    assert orin.preferred == {"format": "onnx", "precision": ["fp16", "float32"], "backend": "onnxruntime",
                             "device": "tensorrt"}
    # The CUDA/TensorRT build replaces the CPU onnxruntime the [onnx] extra would bring.
    assert "onnxruntime-gpu>=1.18" in orin.runtime.requirements_for("onnxruntime")
    assert not any("[onnx" in r for r in orin.runtime.requirements_for("onnxruntime"))
    npu = load_profile("intel-npu")
    assert npu.preferred["device"] == "npu" and "openvino" in npu.backends
    for name in REQUIRED:
        p = load_profile(name)
        assert p.service.manager == "systemd" and p.service.fallback == "supervisor"
        assert p.runtime.wheel_platforms and p.ssh.root == "~/edgekit"


def test_packaged_profiles_are_the_checkout_profiles():
    # Installed wheels read edgekit/_resources/devices; it must never drift from devices/.
    for f in sorted((REPO / "devices").glob("*.yaml")):
        packaged = REPO / "edgekit" / "_resources" / "devices" / f.name
        assert packaged.read_bytes() == f.read_bytes(), f.name


@pytest.mark.parametrize("change, message", [
    ({"backends": ["tflitee"]}, "Unknown backend 'tflitee'. Available: litert, onnxruntime, openvino"),
    ({"colour": "red"}, "unknown key(s) colour"),
    ({"preferred": {"format": "pt"}}, "Unknown format 'pt'"),
    ({"service": {"manager": "runit"}}, "Unknown service manager 'runit'"),
    ({"python": {"version": "3.10"}}, "python.version must look like '>=3.10'"),
    ({"threads": 0}, "threads must be a positive integer"),
    ({"arch": None}, "missing required key 'arch'"),
])
def test_profile_validation_names_what_is_allowed(change, message):
    d = yaml.safe_load((REPO / "devices" / "raspberry-pi-5.yaml").read_text())
    d.update(change)
    with pytest.raises(ConfigError) as e:
        profile_from_dict(d, "test.yaml")
    assert message in str(e.value) and "test.yaml" in str(e.value)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError, match="Unknown device profile 'rpi5'. Available: .*raspberry-pi-5"):
        load_profile("rpi5")


def test_edgekit_wheel_is_installable_and_deterministic(tmp_path):
    a = edgekit_wheel(tmp_path)
    (tmp_path / "b").mkdir()
    b = edgekit_wheel(tmp_path / "b")
    assert sha256_file(a) == sha256_file(b)  # same code -> same wheel -> devices reuse their venv
    with zipfile.ZipFile(a) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "edgekit/runtime/__init__.py" in names and "edgekit/_resources/devices/raspberry-pi-5.yaml" in names
    assert "edgekit/deploy/agent.py" in names and not any("__pycache__" in n for n in names)
    assert "Provides-Extra: litert" in meta
    assert pin_edgekit(["edgekit[litert,serve]", "onnx>=1.16"], "9.9") == ["edgekit[litert,serve]==9.9", "onnx>=1.16"]


def test_bundle_manifest_checksums_and_smoke_test(tflite_model, tmp_path):
    out = tmp_path / "b.tar.gz"
    m = build_bundle(tflite_model, "raspberry-pi-5", out, version="r1")
    assert read_manifest(out)["version"] == "r1"
    assert m["backend"] == "litert" and m["profile_name"] == "raspberry-pi-5" and m["arch"] == ["aarch64"]
    assert m["runtime"]["requirements"] == ["edgekit[litert,serve]==0.1.0"] or \
        m["runtime"]["requirements"][0].startswith("edgekit[litert,serve]==")
    assert m["threads"] == 4 and m["service"]["port"] == 8080 and m["inputs"] and m["outputs"]
    folder = tmp_path / "x"
    with tarfile.open(out) as tar:
        tar.extractall(folder, filter="data")
    listed = set(m["files"])
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk
    for rel, want in m["files"].items():
        assert sha256_file(folder / rel) == want["sha256"]
    for name in ("run.sh", "supervise.sh", "edgekit.service", "smoke_test.py", "agent.py", "requirements.txt"):
        assert name in listed
    assert "@" not in (folder / "run.sh").read_text().replace('"$@"', "")  # every placeholder filled
    # The smoke test reproduces the host's expected output ...
    r = subprocess.run([sys.executable, str(folder / "smoke_test.py")], capture_output=True, text=True)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0 and result["passed"] and result["bench"]["p50_ms"] > 0
    assert all(o["max_abs_diff"] <= 1e-5 for o in result["outputs"].values())
    # ... and fails, with the reason, on a corrupt model.
    model = folder / m["model"]["path"]
    model.write_bytes(b"\0" * 64 + model.read_bytes()[64:])
    r = subprocess.run([sys.executable, str(folder / "smoke_test.py")], capture_output=True, text=True)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 1 and not result["passed"] and "cannot load the model" in result["error"]


def test_int8_bundle_allows_a_quantization_step_of_difference(request, tmp_path):
    try:
        model = request.getfixturevalue("int8_tflite")
    except pytest.FixtureLookupError:
        pytest.skip("the shared int8_tflite fixture (tests/conftest.py) is not available")
    m = build_bundle(model, "raspberry-pi-4", tmp_path / "q.tar.gz", version="q1")
    out = m["outputs"][0]
    assert out["dtype"] == "int8" and "scale" in out
    tol = m["smoke"]["tolerance"][out["name"]]
    assert tol["atol"] == pytest.approx(max(1e-3, 2 * out["scale"]))
    folder = tmp_path / "q"
    with tarfile.open(tmp_path / "q.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    r = subprocess.run([sys.executable, str(folder / "smoke_test.py")], capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["passed"]


def test_bundle_refuses_a_backend_the_profile_lacks(tflite_model, tmp_path):
    d = yaml.safe_load((REPO / "devices" / "intel-npu.yaml").read_text())
    d.update(name="npu-only", backends=["openvino"], preferred={"backend": "openvino"},
             runtime={"requirements": {"openvino": ["edgekit[openvino,serve]"]}})
    prof = tmp_path / "npu-only.yaml"
    prof.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match="Profile 'npu-only' has no 'litert' backend.*This profile runs: openvino"):
        build_bundle(tflite_model, str(prof), tmp_path / "b.tar.gz")
    with pytest.raises(ConfigError, match="must end in .tar.gz"):
        build_bundle(tflite_model, "x86-cpu", tmp_path / "b.zip")
    with pytest.raises(ConfigError, match="--version must be"):
        build_bundle(tflite_model, "x86-cpu", tmp_path / "b.tar.gz", version="../evil")
    assert not list(tmp_path.glob("*.tar.gz")) and not list(tmp_path.glob("*.partial"))


def test_cli_doctor_says_what_is_missing():
    from click.testing import CliRunner

    from edgekit.cli import cli

    runner = CliRunner()
    r = runner.invoke(cli, ["doctor", "--profile", "raspberry-pi-5", "--json", "-"])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        from edgekit.errors import DeployError

        assert isinstance(r.exception, DeployError)
        assert "missing what raspberry-pi-5 needs: architecture" in str(r.exception)
    rows = json.loads(r.stdout)
    arch = next(x for x in rows if x["check"] == "architecture")
    assert arch["ok"] is False and arch["wanted"] == "aarch64" and "pick another profile" in arch["fix"]
    assert any(x["check"] == "backend litert" and x["ok"] for x in rows)


def test_cli_errors_are_one_line_exit_2(tflite_model, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "edgekit.cli", *args], capture_output=True, text=True)

    r = run("bundle", str(tflite_model), "--profile", "rpi9", "--out", str(tmp_path / "b.tar.gz"))
    assert r.returncode == 2 and r.stderr.startswith("Error: Unknown device profile 'rpi9'") and "Traceback" not in r.stderr
    r = run("deploy", str(tmp_path / "nope.tar.gz"), "--host", "pi@127.0.0.1")
    assert r.returncode == 2 and "No such bundle" in r.stderr
    r = run("deploy", "--rollback", "--host", "a", "--hosts", "b.yaml")
    assert r.returncode == 2 and "exactly one of --host" in r.stderr


@pytest.mark.slow
def test_pi_bundle_carries_aarch64_wheels_for_offline_devices(tflite_model, tmp_path):
    # Needs the package index (or pip's cache): pip download --platform manylinux_*_aarch64.
    m = build_bundle(tflite_model, "raspberry-pi-5", tmp_path / "pi.tar.gz", version="pi-offline", with_wheels=True)
    wheels = m["runtime"]["wheels"]
    assert m["runtime"]["offline"] and m["runtime"]["carried"] and m["runtime"]["python_version"] == "3.11"
    assert any(w.startswith("ai_edge_litert-") and "aarch64" in w and "cp311" in w for w in wheels)
    assert any(w.startswith("numpy-") and "aarch64" in w for w in wheels)
    assert not any("x86_64" in w for w in wheels)
    assert all(f"wheels/{w}" in m["files"] for w in wheels)  # checksummed like everything else


def test_device_agent_is_stdlib_only_and_old_python_safe():
    # It runs on the device's own python3 before any runtime exists (JetPack, Debian oldstable ...).
    import ast

    src = (REPO / "edgekit" / "deploy" / "agent.py").read_text()
    tree = ast.parse(src, feature_version=(3, 8))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots <= set(sys.stdlib_module_names), roots - set(sys.stdlib_module_names)


def test_targets_and_inventories_are_validated(tmp_path):
    from edgekit.deploy.fleet import load_inventory
    from edgekit.deploy.ssh import Target

    t = Target.parse("pi@raspberrypi.local:2222")
    assert (t.user, t.host, t.port, t.label) == ("pi", "raspberrypi.local", 2222, "pi@raspberrypi.local:2222")
    assert Target.parse("10.0.0.5", port=22, user="pi").label == "pi@10.0.0.5"
    assert (Target.parse("pi@[fd00::5]:2200").host, Target.parse("pi@[fd00::5]:2200").port) == ("fd00::5", 2200)
    assert (Target.parse("pi@fd00::5").host, Target.parse("pi@fd00::5").port) == ("fd00::5", 22)
    with pytest.raises(ConfigError, match="must be a number"):
        Target.parse("pi@host:ssh")
    with pytest.raises(ConfigError, match="Two ports"):
        Target.parse("pi@host:2222", port=22)
    with pytest.raises(ConfigError, match="Unknown host key check 'yolo'"):
        Target.parse("pi@host", host_key_check="yolo")

    inv = tmp_path / "inv.yaml"
    inv.write_text("defaults: {user: pi, serve_port: 9000}\nhosts:\n  - 10.0.0.1\n  - {host: 10.0.0.2, name: b, serve_port: 9001}\n")
    items, conc = load_inventory(inv, {"key": "/k"})
    assert conc is None and [t.label for t, _ in items] == ["pi@10.0.0.1", "b"]
    assert [o.serve_port for _, o in items] == [9000, 9001] and items[0][0].key == "/k"
    inv.write_text("hosts:\n  - {host: 10.0.0.1, colour: red}\n")
    with pytest.raises(ConfigError, match="unknown key.*colour.*Allowed: host, name"):
        load_inventory(inv)
    inv.write_text("hosts: [pi@10.0.0.1, pi@10.0.0.1]\n")
    with pytest.raises(ConfigError, match="listed twice"):
        load_inventory(inv)
    inv.write_text("servers: []\n")
    with pytest.raises(ConfigError, match="needs a 'hosts' list"):
        load_inventory(inv)


def test_deploy_code_never_imports_tensorflow():
    # It ships in the device wheel and runs there; the host side must stay quick to start too.
    code = ("import sys, edgekit.deploy.deploy, edgekit.deploy.fleet, edgekit.deploy.doctor, edgekit.deploy.bundle, "
            "edgekit.deploy.smoke, edgekit.commands.deploy, edgekit.devices; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_accelerator_bundles_allow_reduced_precision(tflite_model, tmp_path):
    gpu = build_bundle(tflite_model, "x86-cpu", tmp_path / "g.tar.gz", version="g", device="gpu")
    cpu = build_bundle(tflite_model, "x86-cpu", tmp_path / "c.tar.gz", version="c")
    assert gpu["device"] == "gpu" and cpu["device"] == "cpu"  # litert is not x86-cpu's preferred backend
    assert all(t["atol"] >= 2e-2 for t in gpu["smoke"]["tolerance"].values())
    assert all(t["atol"] == 1e-3 for t in cpu["smoke"]["tolerance"].values())
    with tarfile.open(tmp_path / "g.tar.gz") as tar:
        run_sh = tar.extractfile("run.sh").read().decode()
    assert "EDGEKIT_DEVICE=gpu" in run_sh and '--device "$EDGEKIT_DEVICE"' in run_sh


def _tar_with_manifest(path: Path, manifest) -> Path:
    import io

    data = json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def _model_with_sidecar(tflite_model, tmp_path, sidecar) -> Path:
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    model = d / "tiny.tflite"
    model.write_bytes(Path(tflite_model).read_bytes())
    (d / "tiny.tflite.json").write_text(sidecar if isinstance(sidecar, str) else json.dumps(sidecar))
    return model


BAD_BUNDLE_INPUT = [
    # (id, command builder (model, tmp) -> argv, what the one error line says)
    ("device-unknown", lambda m, t: ["bundle", m, "--profile", "x86-cpu", "--device", "warp"],
     "Unknown --device 'warp' for a litert model. Allowed: cpu, gpu, npu, auto"),
    ("device-lists-profiles", lambda m, t: ["bundle", m, "--profile", "x86-cpu", "--device", "raspberry-pi-5"],
     "profiles: intel-npu, jetson-nano"),
    ("sidecar-not-json", lambda m, t: ["bundle", _model_with_sidecar(m, t, "{labels: oops"), "--profile", "x86-cpu"],
     "tiny.tflite.json is not valid edgekit metadata"),
    ("sidecar-labels-not-list", lambda m, t: ["bundle", _model_with_sidecar(m, t, {"labels": "a,b,c"}), "--profile",
                                              "x86-cpu"], "labels"),
    ("sidecar-labels-count", lambda m, t: ["bundle", _model_with_sidecar(m, t, {"labels": ["only"]}), "--profile",
                                           "x86-cpu"], "has 1 label, but the model's output has"),
    ("profile-bad-yaml", lambda m, t: ["bundle", m, "--profile", _write(t / "p.yaml", "name: x\narch: [x86_64\n")],
     "is not valid YAML: line 3, column 1"),
    ("profile-service-host", lambda m, t: ["bundle", m, "--profile", _profile_yaml(t, service={"host": "0.0.0.0; id"})],
     "service.host must be a host name or IP address"),
    ("serve-host-shell", lambda m, t: ["bundle", m, "--profile", "x86-cpu", "--serve-host", "$(reboot)"],
     "invalid server host '$(reboot)'"),
    ("deploy-empty-manifest", lambda m, t: ["deploy", _tar_with_manifest(t / "e.tar.gz", {}), "--host", "pi@127.0.0.1"],
     "is not a deployable bundle: manifest.json is empty"),
    ("deploy-files-not-object", lambda m, t: ["deploy", _tar_with_manifest(t / "f.tar.gz", {
        "version": "v1", "files": ["run.sh"], "profile": {}, "model": {}, "smoke": {}, "service": {}, "runtime": {}}),
        "--host", "pi@127.0.0.1"], "'files' must be an object mapping path"),
    ("deploy-inventory-bad-yaml", lambda m, t: ["deploy", "--rollback", "--hosts",
                                                _write(t / "i.yaml", "hosts:\n  - a: b: c\n")],
     "is not valid YAML: line 2, column 9: mapping values are not allowed here"),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _profile_yaml(tmp_path: Path, **change) -> Path:
    d = yaml.safe_load((REPO / "devices" / "x86-cpu.yaml").read_text())
    for k, v in change.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return _write(tmp_path / "prof.yaml", yaml.safe_dump(d))


@pytest.mark.parametrize("case", BAD_BUNDLE_INPUT, ids=[c[0] for c in BAD_BUNDLE_INPUT])
def test_bundle_and_deploy_refuse_bad_input_in_one_line(case, tflite_model, tmp_path):
    _, argv, message = case
    args = [str(a) for a in argv(tflite_model, tmp_path)]
    if args[0] == "bundle":
        args += ["--out", str(tmp_path / "out.tar.gz")]
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", *args], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("INFO: Created TensorFlow Lite")]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert message in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out.tar.gz").exists()
