"""The hard line: the device side never imports TensorFlow or Keras."""

import subprocess
import sys
import time

import pytest

CHECK = ("import sys, {mods}; bad = [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules]; "
         "print(','.join(bad)); sys.exit(1 if bad else 0)")


@pytest.mark.parametrize("mods", ["edgekit.runtime, edgekit.cli", "edgekit.runtime.litert, edgekit.runtime.onnxruntime, "
                                  "edgekit.runtime.openvino, edgekit.runtime.bench, edgekit.artifact, edgekit.tables"])
def test_runtime_imports_no_tensorflow(mods):
    proc = subprocess.run([sys.executable, "-c", CHECK.format(mods=mods)], capture_output=True, text=True)
    assert proc.returncode == 0, f"{mods} pulled in: {proc.stdout.strip()} {proc.stderr[-500:]}"


def test_loading_and_running_every_format_imports_no_tensorflow(exported_models):
    code = (
        "import sys, numpy as np\n"
        "from edgekit import runtime\n"
        f"for p in {[str(p) for p in exported_models.values()]!r}:\n"
        "    s = runtime.load(p); s.predict(np.zeros((1, 32, 32, 3), np.float32))\n"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-800:]


def test_help_lists_commands_without_tensorflow():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom edgekit.cli import cli\n"
            "r = CliRunner().invoke(cli, ['--help'])\nprint(r.output)\n"
            "sys.exit(3 if 'tensorflow' in sys.modules or 'keras' in sys.modules else r.exit_code)\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for cmd in ("export", "info", "devices", "bench"):
        assert cmd in proc.stdout
    assert time.perf_counter() - t0 < 30  # sanity only; the 0.5 s goal is measured in benchmarks/cold_start.py
