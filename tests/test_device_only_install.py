"""The device line on a real device install: a fresh virtual environment with only ``edgekit[litert]``.

pip resolves the extra exactly as a Raspberry Pi would (no TensorFlow, Keras or scipy can come in as
a dependency), then every device-side package is imported, a committed .tflite model is run, and a
44.1 kHz stereo WAV is read at 16 kHz mono. 45-85 s here (venv 13 s, pip 30-70 s with a warm cache), so
it carries the slow marker and .ci/run runs it by name after the default suite. It needs the package index
(or a pip cache) like any install.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).parents[1]
ASSETS = REPO / "tests" / "_assets"

DEVICE_CHECK = textwrap.dedent("""
    import importlib, importlib.util, json, sys
    import numpy as np
    mods = ["edgekit.runtime", "edgekit.runtime.litert", "edgekit.runtime.bench", "edgekit.features",
            "edgekit.features.wav", "edgekit.serve", "edgekit.serve.app", "edgekit.serve.server",
            "edgekit.apps", "edgekit.apps.kws", "edgekit.apps.camera", "edgekit.apps.remote",
            "edgekit.deploy.agent", "edgekit.formats", "edgekit.artifact", "edgekit.devices", "edgekit.cli"]
    for m in mods:
        importlib.import_module(m)
    from edgekit import runtime
    from edgekit.features.wav import read_wav, write_wav
    s = runtime.load(sys.argv[1])
    probs = s.run({s.inputs[0].name: np.linspace(-1, 1, 8, dtype=np.float32)[None]})
    t = np.arange(44100) / 44100
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    write_wav(sys.argv[2], np.stack([x, x], axis=1).reshape(-1), 44100, channels=2)
    y = read_wav(sys.argv[2], 16000)
    print(json.dumps({
        "edgekit": importlib.import_module("edgekit").__file__,
        "importable": [m for m in ("tensorflow", "keras", "scipy") if importlib.util.find_spec(m) is not None],
        "imported": [m for m in ("tensorflow", "keras", "scipy", "tf_keras") if m in sys.modules],
        "backend": s.backend if hasattr(s, "backend") else None,
        "probs": np.asarray(list(probs.values())[0] if isinstance(probs, dict) else probs).ravel().tolist(),
        "wav": [int(y.shape[0]), float(np.max(np.abs(y)))]}))
""")


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory):
    d = tmp_path_factory.mktemp("device-venv")
    venv = d / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           f"{REPO}[litert]"], capture_output=True, text=True, timeout=900, env=env, cwd=d)
    assert proc.returncode == 0, "pip install edgekit[litert] failed:\n" + proc.stderr[-3000:]
    return {"python": py, "dir": d, "env": env, "bin": venv / "bin"}


def test_device_extra_brings_no_build_side_package(device_venv):
    proc = subprocess.run([str(device_venv["python"]), "-m", "pip", "list", "--format=json"], capture_output=True,
                          text=True, env=device_venv["env"], cwd=device_venv["dir"], timeout=120)
    names = {p["name"].lower() for p in json.loads(proc.stdout)}
    assert "ai-edge-litert" in names and "edgekit" in names
    assert not names & {"tensorflow", "tensorflow-cpu", "keras", "scipy", "tf-keras"}, sorted(names)


def test_device_side_imports_and_runs_without_tensorflow_keras_scipy(device_venv):
    d = device_venv["dir"]
    proc = subprocess.run([str(device_venv["python"]), "-c", DEVICE_CHECK, str(ASSETS / "tiny.tflite"),
                           str(d / "rec.wav")], capture_output=True, text=True, env=device_venv["env"], cwd=d,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert str(device_venv["dir"]) in out["edgekit"], "the venv must use its own installed copy"
    assert out["importable"] == [] and out["imported"] == []
    # What Keras predicted for this input when tests/_assets/tiny.tflite was made.
    assert out["probs"] == pytest.approx([0.24711958, 0.2390776, 0.51380277], abs=1e-5)
    assert out["wav"][0] == 16000 and out["wav"][1] == pytest.approx(0.5, abs=0.01)


def test_device_cli_help_answers_on_the_device_install(device_venv):
    proc = subprocess.run([str(device_venv["bin"] / "edgekit"), "--help"], capture_output=True, text=True,
                          env=device_venv["env"], cwd=device_venv["dir"], timeout=120)
    assert proc.returncode == 0 and "bench" in proc.stdout and "serve" in proc.stdout, proc.stderr[-1000:]
