"""A detector given to a classification path and the reverse: one-line errors, exit code 2."""

from __future__ import annotations

import pytest

from edgekit.errors import ConfigError


def test_wrong_pairings_are_one_line_errors(tiny_yolo, invoke_cli):
    from edgekit.train_detect import train_cli

    with pytest.raises(ConfigError, match="is a classifier"):
        train_cli("mobilenet_v2", str(tiny_yolo), 1, "/nonexistent/x")
    with pytest.raises(ConfigError, match="is not detection data"):
        train_cli("centernet_mnv2", "digits", 1, "/nonexistent/x")
    code, _, err = invoke_cli(["train", "-m", "mobilenet_v2", "-d", tiny_yolo, "--out", "/nonexistent/x"])
    assert code == 2 and "is a classifier" in err and "Traceback" not in err


def test_classifier_given_to_detection_eval_is_clear(keras_classifier, tiny_yolo, invoke_cli):
    code, _, err = invoke_cli(["eval", keras_classifier, "-d", tiny_yolo])
    assert code == 2 and "is not a detector" in err and "Traceback" not in err
