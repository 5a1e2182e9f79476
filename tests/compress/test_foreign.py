"""Bring your own model: an NCHW ONNX classifier edgekit did not train, compressed to int8 ONNX and OpenVINO
IR with the fidelity gate (no labels), its metadata (labels, preprocessing) carried into eval and info."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_onnx_becomes_int8_onnx_and_openvino_inside_the_fidelity_gate(byom):
    r = byom["result"]
    assert r["mode"] == "fidelity"
    rows = {(x["format"], x["precision"]): x for x in r["rows"]}
    assert set(rows) == {("onnx", "float32"), ("openvino", "float32"), ("onnx", "int8"), ("openvino", "int8")}
    for fmt in ("onnx", "openvino"):
        q = rows[(fmt, "int8")]
        assert q["gate"] == "pass" and q["agreement"] >= 0.9 and q["top5"] >= 0.99, q
        assert (byom["out"] / q["artifact"]).exists()
        # The float references agree with the source (the OpenVINO one is a conversion of it).
        assert rows[(fmt, "float32")]["agreement"] == 1.0 and rows[(fmt, "float32")]["mean_abs_err"] < 1e-5
    assert rows[("onnx", "int8")]["size_x"] < 0.5
    assert r["steps"]["held_out"] == 60 and r["steps"]["calibration"] == 60
    assert any("tflite" not in n for n in r["notes"])  # tflite was not asked for: no note about it
    assert "agreement" in (byom["out"] / "report.md").read_text()


def test_artifacts_record_labels_and_nchw_preprocessing(byom):
    from edgekit.artifact import read_embedded, read_meta

    for f in ("photo_cnn_int8.onnx", "photo_cnn_int8.xml"):
        m = read_meta(byom["out"] / f)
        assert m.labels == byom["classes"]
        pre = m.preprocessing
        assert (pre["layout"], pre["size"], pre["color"]) == ("NCHW", [32, 32], "RGB")
        assert pre["mean"] == [123.675, 116.28, 103.53]
        assert np.allclose(pre["scale"], 1 / np.array([58.395, 57.12, 57.375]))
        assert m.quantization["precision"] == "int8"
        assert m.provenance["foreign"]["kind"] == "onnx"
        assert m.provenance["foreign"]["inferred"] == {"layout": "NCHW", "channels": 3, "size": [32, 32]}
        # Embedded too: the file alone carries it to a device.
        assert read_embedded(byom["out"] / f)["preprocessing"]["layout"] == "NCHW"


def test_eval_reads_the_folder_with_the_models_preprocessing(byom):
    from edgekit.errors import DataError
    from edgekit.evaluate import evaluate

    f = evaluate(byom["out"] / "reference" / "photo_cnn.onnx", byom["labelled"])
    q = evaluate(byom["out"] / "photo_cnn_int8.onnx", byom["labelled"])
    assert f["samples"] == q["samples"] == 120
    assert f["top1"] > 0.6  # 4 classes: chance is 0.25; the NCHW transpose and mean/std are right
    assert abs(f["top1"] - q["top1"]) <= 0.05
    with pytest.raises(DataError, match="not labelled for this model"):
        evaluate(byom["out"] / "photo_cnn_int8.onnx", byom["flat"])


def test_info_says_what_was_inferred_and_what_is_needed(byom):
    from edgekit.inspect import describe_model

    d = describe_model(byom["onnx"])
    assert d["byom"]["inferred"] == {"layout": "NCHW", "channels": 3, "size": [32, 32]}
    needs = " ".join(d["byom"]["needs"])
    assert "--labels" in needs and "mean/std" in needs
    done = describe_model(byom["out"] / "photo_cnn_int8.onnx")["byom"]
    assert done["needs"] == [] and done["recorded"]["layout"] == "NCHW"


def test_fidelity_numbers():
    from edgekit.compress.foreign import fidelity
    from edgekit.compress.judge import FidelityJudge, Score

    ref = np.array([[5.0, 1, 0, 0, 0, 0], [0, 6.0, 0, 0, 0, 0], [0, 0, 7.0, 0, 0, 0], [0, 0, 0, 8.0, 0, 0]])
    got = ref.copy()
    got[3] = [9, 0, 0, 0, 0, 0]  # a different top-1, the float top-1 still in its top-5
    got[2] = [0, 0, 0, 1, 1, 1]  # float top-1 (2) at rank... tied zeros: outside the top-5 by argsort order
    got[2] = [1, 1, -5, 1, 1, 1]
    f = fidelity(ref, got)
    assert f["agreement"] == 0.5 and f["top5"] == 0.75 and f["samples"] == 4
    s, bar = Score(f["agreement"], "agreement", f), Score(1.0, "agreement")
    j = FidelityJudge(None, min_agreement=0.5, min_top5=0.75)
    assert j.drop(bar, s) == pytest.approx(50.0) and j.passes(j.drop(bar, s), j.max_drop) and j.veto(s) is None
    j = FidelityJudge(None, min_agreement=0.5, min_top5=0.8)
    assert "0.750" in j.veto(s)  # the top-5 floor fails it though the agreement passes
    assert not FidelityJudge(None, 0.51, 0.75).passes(50.0, FidelityJudge(None, 0.51, 0.75).max_drop)
    assert fidelity(ref, ref)["mean_abs_err"] == 0.0


def test_preprocess_parsing_and_inference():
    from edgekit.errors import ConfigError
    from edgekit.preprocess import parse_preprocess, resolve, to_input

    p = parse_preprocess("size=224x200,layout=nchw,mean=1/2/3,std=2,color=bgr")
    assert p == {"size": [224, 200], "layout": "NCHW", "mean": [1.0, 2.0, 3.0], "std": [2.0], "color": "BGR"}
    pre, how = resolve(parse_preprocess("imagenet"), [None, 3, 32, 32])
    assert pre["layout"] == "NCHW" and pre["size"] == [32, 32] and how["defaulted"] == ["color"]
    pixels = np.zeros((1, 32, 32, 3), np.uint8)
    pixels[..., 0] = 255
    x = to_input(pixels, pre)
    assert x.shape == (1, 3, 32, 32)
    assert np.allclose(x[0, 0], (255 - 123.675) / 58.395, atol=1e-4) and np.allclose(x[0, 2], -103.53 / 57.375)
    bgr = to_input(pixels, {**pre, "color": "BGR"})
    assert np.allclose(bgr[0, 2], (255 - 103.53) / 57.375, atol=1e-4)
    for bad, msg in (("size=0", "size"), ("layout=CHW", "layout"), ("mean=a", "mean"), ("std=0", "std"),
                     ("std=1,scale=1", "not both"), ("foo=1", "key"), ("mean=1/2", "one per channel")):
        with pytest.raises(ConfigError, match=msg):
            parse_preprocess(bad)
    with pytest.raises(ConfigError, match="dynamic spatial"):
        resolve({}, [1, 3, None, None])
    with pytest.raises(ConfigError, match="layout=NHWC but"):
        resolve({"layout": "NHWC"}, [1, 3, 32, 32])


def test_float_tflite_becomes_openvino_int8_and_says_what_it_cannot_become(byom, byom_tf, invoke_cli, tmp_path):
    code, out, err = invoke_cli(["compress", byom_tf["tflite"], "-d", byom["flat"], "--quantize", "int8",
                                 "--preprocess", "imagenet", "--labels", byom["labels"], "--out", tmp_path / "o",
                                 "--bench-runs", "0", "--json", tmp_path / "r.json", "-q"])
    assert code == 0, err + out
    r = json.loads((tmp_path / "r.json").read_text())
    q = next(x for x in r["rows"] if x["precision"] == "int8")
    assert q["format"] == "openvino" and q["agreement"] >= 0.9 and q["top5"] >= 0.99
    assert (tmp_path / "o" / "photo_cnn_int8.xml").exists() and not list((tmp_path / "o").glob("*_int8.tflite"))
    # The formats it can't become, said plainly rather than skipped in silence.
    notes = " ".join(r["notes"])
    assert "tflite: not available from a TFLite model; int8 TFLite needs the source graph" in notes
    assert "onnx: not available from a TFLite model" in notes


@pytest.mark.slow
def test_savedmodel_becomes_all_three_int8_and_refuses_pruning(byom, byom_tf, invoke_cli, tmp_path):
    code, out, err = invoke_cli(["compress", byom_tf["savedmodel"], "-d", byom["labelled"], "--quantize", "int8",
                                 "--preprocess", "imagenet", "--labels", byom["labels"], "--out", tmp_path / "o",
                                 "--bench-runs", "0", "--json", tmp_path / "r.json", "-q"])
    assert code == 0, err + out
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["mode"] == "accuracy"  # class subfolders named after the labels: the accuracy gate
    int8 = {x["format"]: x for x in r["rows"] if x["precision"] == "int8"}
    assert set(int8) == {"tflite", "onnx", "openvino"}
    assert all(x["gate"] == "pass" for x in int8.values())
    assert r["steps"]["reference"]["top1"] > 0.6
    code, out, err = invoke_cli(["compress", byom_tf["savedmodel"], "-d", byom["labelled"], "--prune", "0.5",
                                 "--out", tmp_path / "p"])
    assert code == 2 and "--prune needs a trainable Keras model" in err and not (tmp_path / "p").exists()


def test_accuracy_control_is_the_last_remedy_and_puts_costly_layers_back_in_float(byom, tmp_path):
    """A gate the plain int8 misses by far (1-image calibration: 0.52 agreement here): NNCF's accuracy control, in
    QAT's place, quantizes on every calibration image and reverts layers until they agree with the float model,
    and the held-out gate then judges it. The gate is 0.97, not 1.0: NNCF holds the drop on the calibration
    images only, and on unseen ones the same remedy gave 1.000 here and 0.983 (59/60) on CI's CPU, whose int8
    kernels differ; a 1.0 gate left no margin for one image."""
    from edgekit.artifact import read_meta
    from edgekit.compress.foreign import compress_foreign
    from edgekit.passes import GateConfig, QuantizeConfig

    r = compress_foreign(byom["onnx"], byom["flat"], tmp_path / "o", quantize=QuantizeConfig(calibration_samples=1),
                         gate=GateConfig(min_agreement=0.97, remedies=["qat"]), formats_=("openvino",),
                         explicit_formats=True, preprocess="imagenet", bench_runs=0)
    tries = r.steps["quantize"]["openvino"]
    remedies = [a["remedy"] for a in tries]
    # Where NNCF reverted layers to float, the weight-only step may follow (their weights int8, judged by the same
    # gate): kept when it passes (last), listed before the kept rung when it misses. NNCF's reverts vary from run
    # to run here, so both orders occur.
    assert remedies[0] == "none" and "accuracy-control" in remedies, remedies
    assert set(remedies[1:]) <= {"accuracy-control", "accuracy-control+int8-weights"}, remedies
    ac = next(a for a in tries if a["remedy"] == "accuracy-control")
    assert tries[0]["passed"] is False and tries[0]["fidelity"]["agreement"] < 0.8
    assert ac["passed"] is True and ac["fidelity"]["agreement"] >= 0.97
    assert ac["fidelity"]["agreement"] - tries[0]["fidelity"]["agreement"] > 0.15
    assert tries[-1]["passed"] is True and tries[-1]["fidelity"]["agreement"] >= 0.97
    q = read_meta(tmp_path / "o" / "photo_cnn_int8.xml").quantization
    assert q["scheme"] == "NNCF accuracy control" and q["quantizers"] > 0
    # What NNCF put back in float is recorded ("none" when the whole model already met it).
    assert q["reverted"] == "none" or "reverted back to the floating-point precision" in q["reverted"]


def test_camera_demo_on_the_foreign_nchw_model(byom, invoke_cli):
    """The camera demo reads frames (here a folder of one class) with the recorded preprocessing and labels."""
    code, out, err = invoke_cli(["demo", "camera", "-m", byom["out"] / "photo_cnn_int8.onnx", "-s",
                                 byom["labelled"] / "flower-left", "--headless", "--max-frames", "10"])
    assert code == 0, err
    frames = [json.loads(ln) for ln in out.splitlines() if ln.startswith('{"frame"')]
    assert len(frames) == 10
    # BGR frames -> RGB, NCHW, ImageNet mean/std: the model sees what it was trained on.
    assert sum(f["top"][0]["label"] == "flower-left" for f in frames) >= 8


def test_reverted_fraction_reads_what_nncf_put_back_in_float(tmp_path):
    from edgekit.artifact import ArtifactMeta, write_meta
    from edgekit.compress.foreign import MAX_REVERTED, reverted_fraction

    p = tmp_path / "m.onnx"
    p.write_bytes(b"")
    write_meta(p, ArtifactMeta(quantization={"reverted": "48 out of 59 were reverted back to the floating-point "
                                                         "precision: /6/body/Conv ..."}))
    assert abs(reverted_fraction(p) - 48 / 59) < 1e-12 and reverted_fraction(p) > MAX_REVERTED
    write_meta(p, ArtifactMeta(quantization={"reverted": "none"}))
    assert reverted_fraction(p) == 0.0
