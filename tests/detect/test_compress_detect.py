"""A detector through ``edgekit compress``: int8 gated by MapJudge (points of mAP@[.5:.95]), and the wrong pairings
refused with one line and exit code 2, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_detector_pairings_are_one_line_errors(tiny_detector, keras_classifier, tiny_yolo, invoke_cli, tmp_path):
    r, root = tiny_detector
    cases = [([str(r.model_path), "-d", "digits", "--quantize", "int8"], "The model is a detector; --data must be"),
             ([str(keras_classifier), "-d", str(tiny_yolo), "--quantize", "int8"], "is a detection dataset, but"),
             ([str(r.model_path), "-d", str(root), "--prune", "0.5"], "Pruning of a detector is not supported")]
    for i, (args, msg) in enumerate(cases):
        out = tmp_path / f"c{i}"
        code, _, err = invoke_cli(["compress", *args, "--out", str(out)])
        assert code == 2, err
        assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def _climb(report_dir):
    return json.loads((report_dir / "report.json").read_text())


@pytest.fixture(scope="module")
def gated(tiny_detector, tmp_path_factory):
    """One int8 TFLite climb with the training split as calibration (plain rung passes at --max-drop 1) and one
    with calibration images 255x too bright (the activation ranges then clip real images: the detector collapses,
    every rung fails), on the same detector and held-out images."""
    from edgekit.compress import ExportConfig, compress
    from edgekit.errors import GateError
    from edgekit.passes import GateConfig, QuantizeConfig

    r, root = tiny_detector
    good = tmp_path_factory.mktemp("good")
    res = compress(str(r.model_path), str(root), good, quantize=QuantizeConfig(),
                   export=ExportConfig(formats=("tflite",), bench_runs=0, gate=GateConfig(max_drop=1.0)))
    bad = tmp_path_factory.mktemp("bad")
    x = np.random.default_rng(0).uniform(0, 255, (16, 96, 96, 3)).astype(np.float32)
    with pytest.raises(GateError) as e:
        compress(str(r.model_path), str(root), bad, calibration=x, quantize=QuantizeConfig(),
                 export=ExportConfig(formats=("tflite",), bench_runs=0,
                                     gate=GateConfig(max_drop=1.0, remedies=["per-channel", "float-sensitive"])))
    return res, good, bad, str(e.value)


def test_detector_int8_climb_is_gated_by_map(gated):
    res, good, bad, err = gated
    rep = _climb(good)
    ref = rep["steps"]["reference"]
    assert ref["metric"] == "mAP@[.5:.95]" and ref["unit"] == "points of mAP@[.5:.95]"
    assert ref["map"] > 0.005, "the tiny detector must find boxes for the gate to mean anything"
    tries = rep["steps"]["quantize"]["tflite/int8"]
    for a in tries:  # each rung judged by MapJudge: mAP, its drop in points against the float TFLite, the gate
        assert "map" in a and "top1" not in a and a["detection"]["images"] > 0
        assert a["passed"] == (a["drop"] <= 1.0 + 1e-9)
    assert tries[-1]["passed"] and (good / "model_int8.tflite").exists()
    row = next(r for r in rep["rows"] if r["artifact"] == "model_int8.tflite")
    assert row["units"]["drop"] == "points of mAP@[.5:.95]" and row["drop"] == pytest.approx(100 * (ref["map"] - row["map"]))
    assert row["size_x"] < 0.35  # int8 weights against the float TFLite

    # Miscalibrated: every rung tried, each failing in mAP points, nothing written, the error says so.
    rep = _climb(bad)
    tries = rep["steps"]["quantize"]["tflite/int8"]
    assert [a["remedy"] for a in tries] == ["none", "per-channel", "float-sensitive"]
    assert all(not a["passed"] and a["drop"] > 1.0 for a in tries), tries
    assert not (bad / "model_int8.tflite").exists()
    assert "model_int8.tflite: map" in err and "points of mAP@[.5:.95]" in err
