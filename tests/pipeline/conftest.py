import textwrap
from pathlib import Path

import pytest

# Flat (one line per section) so validation tests can swap sections; nothing here is trained.
BASE = """
name: tiny
description: smallest real pipeline for the tests
data: {name: digits, limit: 600}
model: {name: ds_cnn_s, options: {bn_momentum: 0.9}}
train: {epochs: 4, batch_size: 32, learning_rate: 0.005, augment: false}
export: {formats: [tflite, onnx, openvino]}
target: raspberry-pi-5
gates: {max_drop: 2.0, max_size_kb: 5000}
bench: {threads: 1, runs: 15, warmup: 2}
"""
TINY = BASE + """steps:
  - {type: prune, mode: magnitude, sparsity: 0.5, epochs: 3}
  - {type: quantize, precision: int8, calibration_samples: 100}
"""


def write_recipe(tmp: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp / name
    p.write_text(textwrap.dedent(text))
    return p


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One real run of a tiny recipe (train → export → evaluate → bench → report), shared by tests."""
    from edgekit.pipeline import run_recipe

    d = tmp_path_factory.mktemp("pipeline")
    recipe = write_recipe(d, TINY)
    report = run_recipe(recipe, out=d / "run", quiet=True)
    return {"dir": d, "recipe": recipe, "out": d / "run", "report": report}


@pytest.fixture(scope="session")
def cli(cli_in_process):
    """The tests here read only exit codes and output: ``edgekit`` runs in process (a fresh Python + TensorFlow
    per call cost 5-10 s each)."""
    return cli_in_process
