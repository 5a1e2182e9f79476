"""A detector given to a classification path and the reverse: one-line errors, exit code 2."""

from __future__ import annotations

import pytest

from edgekit.errors import ConfigError, DataError


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



def _class_folder(root):
    """A two-class image folder (classification data)."""
    from PIL import Image

    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / c / f"{i}.png")
    return root


def test_detector_given_classification_data_is_clear(invoke_cli, tmp_path):
    """The reverse pairing: a detector with a classification set (a built-in name or an image-class folder) in
    train, through the CLI, and in eval's data lookup; a path that does not exist keeps its own error."""
    from edgekit.evaluate_detect import detection_data_for

    for data in ("digits", str(_class_folder(tmp_path / "classes"))):
        out = tmp_path / f"run-{len(data)}"
        code, _, err = invoke_cli(["train", "-m", "centernet_mnv2", "-d", data, "--out", str(out)])
        assert code == 2 and "is a detector" in err and "is not detection data" in err and "Traceback" not in err
        assert not out.exists() and not any(p.name.startswith(f".{out.name}") for p in tmp_path.iterdir())
        with pytest.raises(ConfigError, match=r"The model is a detector; .* is not detection data"):
            detection_data_for(None, data)
    with pytest.raises(DataError, match="does not exist"):
        detection_data_for(None, str(tmp_path / "nowhere" / "data.yaml"))


@pytest.mark.slow
def test_eval_of_a_detector_on_classification_data_exits_2(tiny_detector, invoke_cli, tmp_path):
    r, _ = tiny_detector
    for data in ("digits", str(_class_folder(tmp_path / "classes"))):
        code, _, err = invoke_cli(["eval", str(r.model_path), "-d", data])
        assert code == 2 and "The model is a detector" in err and "is not detection data" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
