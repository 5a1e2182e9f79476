"""A detector given to a classification path and the reverse: one-line errors, exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgekit.errors import ConfigError


def test_wrong_pairings_are_one_line_errors(tiny_yolo):
    from edgekit.train_detect import train_cli

    with pytest.raises(ConfigError, match="is a classifier"):
        train_cli("mobilenet_v2", str(tiny_yolo), 1, "/nonexistent/x")
    with pytest.raises(ConfigError, match="is not detection data"):
        train_cli("centernet_mnv2", "digits", 1, "/nonexistent/x")
    p = subprocess.run([sys.executable, "-m", "edgekit.cli", "train", "-m", "mobilenet_v2", "-d", str(tiny_yolo),
                        "--out", "/nonexistent/x"], capture_output=True, text=True)
    assert p.returncode == 2 and "is a classifier" in p.stderr and "Traceback" not in p.stderr


def test_classifier_given_to_detection_eval_is_clear(keras_classifier, tiny_yolo):
    p = subprocess.run([sys.executable, "-m", "edgekit.cli", "eval", str(keras_classifier), "-d", str(tiny_yolo)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "is not a detector" in p.stderr and "Traceback" not in p.stderr
