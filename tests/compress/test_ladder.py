"""The remedy ladder with a fake quantizer and a fake judge: rung order, first pass wins, misses deleted,
errors climb on, and every source (Keras via the engine, foreign models) builds its plan for the same loop.
The real climbs (QAT trained, every converter) run under -m heavy (test_compress.py)."""

from pathlib import Path

import numpy as np
import pytest

from edgekit.compress.judge import AccuracyJudge, Judge, Score
from edgekit.compress.ladder import Attempt, Rung, climb
from edgekit.compress.quantizers import AccuracyControl, ModelSource, QuantizeJob, quantize
from edgekit.errors import ModelError
from edgekit.passes import REMEDIES, GateConfig, QuantizeConfig


class ScriptedJudge(Judge):
    """Scores each artifact by the number written in it (the fake quantizer writes its rung's score)."""

    unit, key = "points of top-1", "top1"

    def reference(self, float_artifact):
        return Score(0.9, "top-1")

    def score(self, artifact):
        v = Path(artifact).read_text()
        if v == "crash":
            raise RuntimeError("no kernel for INT16 SQUARED_DIFFERENCE")
        return Score(float(v), "top-1")


def _maker(tmp_path, scores: dict, made: list):
    def make(i, rung):
        made.append(rung.remedy)
        if scores.get(rung.remedy) == "error":
            raise ModelError("converter refused it")
        p = tmp_path / f"try{i}" / "m.tflite"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(str(scores.get(rung.remedy, 0.1)))
        return p

    return make


def test_climb_stops_at_the_first_pass_and_deletes_the_misses(tmp_path):
    cfg = QuantizeConfig().validate()
    plan = [Rung(r, cfg, "int8") for r in ("none", "per-channel", "float-sensitive", "qat")]
    made: list = []
    scores = {"none": 0.5, "per-channel": "error", "float-sensitive": 0.895, "qat": 0.9}
    judge = ScriptedJudge()
    path, attempts = climb(plan, _maker(tmp_path, scores, made), judge, judge.reference(None), 1.0,
                           lambda s: None, "tflite")
    assert made == ["none", "per-channel", "float-sensitive"]  # qat never built: float-sensitive passed
    assert path == tmp_path / "try2" / "m.tflite" and path.exists()
    assert not (tmp_path / "try0" / "m.tflite").exists()  # a miss is deleted
    assert [type(a) for a in attempts] == [Attempt] * 3
    a0, a1, a2 = attempts
    assert (a0.passed, a0.drop) == (False, pytest.approx(40.0)) and a0.unit == "points of top-1"
    assert a1.error == "converter refused it" and a1.value is None
    assert a2.passed and a2.drop == pytest.approx(0.5)
    d = a2.to_dict()
    assert d["top1"] == pytest.approx(0.895) and d["remedy"] == "float-sensitive" and d["passed"] is True
    assert d["calibration_samples"] == cfg.calibration_samples and "error" not in d


def test_climb_reports_every_miss_and_an_artifact_that_does_not_run(tmp_path):
    cfg = QuantizeConfig().validate()
    plan = [Rung("none", cfg, "int8"), Rung("int16x8", cfg, "int16x8")]
    made: list = []
    path, attempts = climb(plan, _maker(tmp_path, {"none": 0.2, "int16x8": "crash"}, made), ScriptedJudge(),
                           Score(0.9, "top-1"), 1.0, lambda s: None, "tflite")
    assert path is None and made == ["none", "int16x8"]
    assert [a.precision for a in attempts] == ["int8", "int16x8"]
    assert attempts[1].error.startswith("converted, but does not run in the runtime: no kernel")
    assert not any(tmp_path.rglob("*.tflite"))


def test_a_judge_veto_fails_a_small_drop_and_a_check_can_too(tmp_path):
    from edgekit.compress.judge import FidelityJudge

    fid = {"agreement": 0.95, "top5": 0.9, "mean_abs_err": 0.01, "max_abs_err": 0.1, "samples": 20}

    class Fid(FidelityJudge):
        def score(self, artifact):
            return Score(fid["agreement"], "agreement", fid)

    j = Fid(None, min_agreement=0.9, min_top5=0.99)
    cfg = QuantizeConfig().validate()
    path, attempts = climb([Rung("none", cfg, "int8")], _maker(tmp_path, {}, []), j, Score(1.0, "agreement"),
                           j.max_drop, lambda s: None, "onnx")
    assert path is None and attempts[0].drop == pytest.approx(5.0) and "0.900" in attempts[0].why
    assert attempts[0].to_dict()["fidelity"] == fid

    def check(rung, p, a):
        a.passed, a.why = False, "not an int8 model"

    j2 = Fid(None, min_agreement=0.9, min_top5=0.5)
    path, attempts = climb([Rung("none", cfg, "int8")], _maker(tmp_path, {}, []), j2, Score(1.0, "agreement"),
                           j2.max_drop, lambda s: None, "onnx", check=check)
    assert path is None and attempts[0].why == "not an int8 model"


def test_engine_climbs_the_whole_ladder_in_order_with_qat_trained_once(tmp_path, monkeypatch):
    """What the heavy gate-failure test checks with real converters and QAT, on a fake quantizer: user
    calibration of 50 examples (more-calibration has nothing to add), a miss on every rung, in this order."""
    from edgekit.compress import qat, stages

    built, qat_trained = [], []

    def fake_quantize_format(fmt, source, job):
        cfg = job.config
        built.append((job.precision, source.model, cfg.per_channel, cfg.float_sensitive, cfg.mixed_precision,
                      len(job.calibration), job.engine, cfg.bias_correction))
        job.stage.mkdir(parents=True, exist_ok=True)
        p = job.out(".tflite")
        p.write_text("0.1")
        return p

    monkeypatch.setattr(stages, "quantize_format", fake_quantize_format)
    monkeypatch.setattr(stages, "keras_source", lambda model, float_artifact=None: ModelSource(model, float_artifact))
    monkeypatch.setattr(qat, "qat_model", lambda model, ds, say=None: qat_trained.append(1) or "qat-model")
    monkeypatch.setattr(AccuracyJudge, "on_dataset", classmethod(lambda cls, ds, split: ScriptedJudge()))
    cfg = QuantizeConfig(calibration_samples=200).validate()
    calib = np.zeros((50, 8, 8, 1), np.float32)
    cache: dict = {}
    outs = [stages.quantize_gated(fmt, "keras-model", None, tmp_path / fmt, "model", None, cfg, calib, None, "test",
                                  0.9, GateConfig(max_drop=0.0).validate(), lambda s: None, cache)
            for fmt in ("tflite", "onnx")]
    tried = [a["remedy"] for a in outs[0]["attempts"]]
    assert tried == ["none", "per-channel", "bias-correction", "float-sensitive", "qat", "mixed-precision", "int16x8"]
    assert [a["precision"] for a in outs[0]["attempts"]][-2:] == ["int8", "int16x8"]
    assert outs[0]["path"] is None and not any((tmp_path / "tflite").rglob("*.tflite"))
    assert qat_trained == [1]  # trained once, shared by the second format
    # Cumulative: per-channel and bias correction stay on from their rungs; int16x8 drops the float-kept layers
    # again; QAT's converter takes its trained ranges, so its rung has no bias correction.
    assert [b[2] for b in built[:7]] == [False, True, True, True, True, True, True]
    assert [b[7] for b in built[:7]] == [False, False, True, True, False, True, True]
    assert built[4][1] == "qat-model" and built[6][3:5] == (False, False)
    assert all(b[5] == 50 for b in built)  # the user's 50 calibration examples, every rung
    # ONNX has NNCF's quantizer in place of ONNX Runtime's from its rung after per-channel on, cumulative as every
    # remedy is, but for QAT (its trained ranges) and int16x8 (NNCF has no int16 activations); and no TFLite bias
    # correction (NNCF's quantizer has its own).
    onnx_tried = [a["remedy"] for a in outs[1]["attempts"]]
    assert onnx_tried == ["none", "per-channel", "nncf", "float-sensitive", "qat", "mixed-precision", "int16x8"]
    assert [b[6] for b in built[7:]] == ["default", "default", "nncf", "nncf", "default", "nncf", "default"]
    assert [b[2] for b in built[7:10]] == [False, True, True]
    assert not any(b[7] for b in built[7:])
    assert set(REMEDIES) - {"more-calibration", "nncf"} == set(tried) - {"none"}
    assert set(REMEDIES) - {"more-calibration", "bias-correction"} == set(onnx_tried) - {"none"}


def test_foreign_plan_puts_accuracy_control_in_qats_place():
    from edgekit.compress.foreign import foreign_plan

    cfg, gate = QuantizeConfig(calibration_samples=10).validate(), GateConfig().validate()
    # ONNX's own remedy (NNCF's quantizer) in ONNX's ladder only, and its quantizer from there on but for
    # accuracy control (NNCF's already)
    from edgekit.compress.ladder import engine_of

    for fmt, own in (("onnx", ["nncf"]), ("openvino", [])):
        plan = foreign_plan(cfg, gate, 100, fmt)
        assert [r.remedy for r in plan] == ["none", "more-calibration", "per-channel", *own, "float-sensitive",
                                            "accuracy-control"]
        assert {r.precision for r in plan} == {"int8"}
        assert [engine_of(plan, i) for i in range(len(plan))] == ["default"] * 3 + ["nncf"] * len(own) + [
            "nncf" if own else "default", "default"]
    # TFLite's own remedy, in TFLite's ladder only (a SavedModel source).
    plan = foreign_plan(cfg, gate, 100, "tflite")
    assert [r.remedy for r in plan] == ["none", "more-calibration", "per-channel", "bias-correction",
                                        "float-sensitive", "accuracy-control"]
    assert [r.config.bias_correction for r in plan] == [False, False, False, True, True, True]


def test_the_command_gates_size_and_latency_like_a_recipe(tmp_path):
    """One gate schema: GateConfig's max_size_kb / max_p50_ms / min_top1 (a recipe's gates: section) also gate
    edgekit compress's artifacts; a miss is deleted and reported."""
    from edgekit.compress.stages import measured_gates as _measured_gates
    from edgekit.recipe import Gates

    assert set(Gates.model_fields) == {"max_drop", "min_top1", "max_size_kb", "max_p50_ms"}
    for name in ("model_int8.tflite", "model_fp16.tflite"):
        (tmp_path / name).write_bytes(b"x")
    from edgekit.compress.report import ArtifactRow

    rows = [ArtifactRow("reference/model.tflite", "tflite", "float32", "reference", {"top1": 0.9}, size_bytes=90_000,
                        p50_ms=1.0),
            ArtifactRow("model_int8.tflite", "tflite", "int8", "pass", {"top1": 0.9}, size_bytes=30_000, p50_ms=0.5),
            ArtifactRow("model_fp16.tflite", "tflite", "fp16", "pass", {"top1": 0.9}, size_bytes=50_000, p50_ms=2.0)]
    gate = GateConfig(max_size_kb=40, max_p50_ms=1.5).validate()
    failures = _measured_gates(rows, gate, 0.9, tmp_path)
    assert [f["artifact"] for f in failures] == ["model_fp16.tflite"]
    assert rows[2].gate == "FAIL max_size_kb,max_p50_ms" and rows[1].gate == "pass" and not rows[2].passed
    assert not (tmp_path / "model_fp16.tflite").exists() and (tmp_path / "model_int8.tflite").exists()
    assert _measured_gates(rows[:2], GateConfig().validate(), 0.9, tmp_path) == []


def test_a_task_registers_its_judge_and_others_get_top1(monkeypatch):
    from types import SimpleNamespace

    from edgekit.compress import judge as judges

    monkeypatch.setitem(judges.JUDGES, "object-detection", lambda ds, split: ScriptedJudge())
    assert isinstance(judges.judge_for(SimpleNamespace(task="object-detection"), "test"), ScriptedJudge)
    assert isinstance(judges.judge_for(SimpleNamespace(task="image-classification"), "test"), AccuracyJudge)
    assert AccuracyJudge.unit == "points of top-1" and judges.FidelityJudge.key == "agreement"


def test_every_rung_goes_through_the_registry_nncf_accuracy_control_included(tmp_path, monkeypatch):
    """The quantizer contract: (source, job). A job with ``control`` reaches NNCF's accuracy control through the
    ONNX and OpenVINO quantizers of the registry, with the job's stage, name and data; TFLite refuses it as a
    failed rung (a ModelError), as it refuses a source with no graph to convert."""
    from edgekit.compress.quantizers import accuracy_control as ac

    seen = []

    def fake_control(fmt, float_path, out, job, sensitive):
        assert callable(sensitive)  # the format's float-sensitive layers, for an earlier rung's remedy
        seen.append((fmt, float_path, out, job.control.max_drop, len(job.control.targets)))
        return out

    monkeypatch.setattr(ac, "accuracy_control", fake_control)
    cfg = QuantizeConfig().validate()
    x = np.zeros((4, 3), np.float32)
    for fmt, suffix in (("onnx", ".onnx"), ("openvino", ".xml")):
        job = QuantizeJob(tmp_path / fmt, "m_int8", None, cfg, x, control=AccuracyControl(x, np.zeros(4), 1.5))
        out = quantize(fmt, ModelSource(None, tmp_path / f"float{suffix}"), job)
        assert out == tmp_path / fmt / f"m_int8{suffix}" and (tmp_path / fmt).is_dir()
    assert [s[0] for s in seen] == ["onnx", "openvino"] and seen[0][1:] == (tmp_path / "float.onnx",
                                                                            tmp_path / "onnx" / "m_int8.onnx", 1.5, 4)
    job = QuantizeJob(tmp_path / "t", "m_int8", None, cfg, x, control=AccuracyControl(x, np.zeros(4), 1.5))
    with pytest.raises(ModelError, match="TFLite has no accuracy-aware rung"):
        quantize("tflite", ModelSource("saved_model_dir"), job)
    with pytest.raises(ModelError, match="needs the source graph"):
        quantize("tflite", ModelSource(None, tmp_path / "float.tflite"), QuantizeJob(tmp_path / "t", "m", None, cfg, x))
    from edgekit.errors import ConfigError

    with pytest.raises(ConfigError, match="int16x8"):  # the format table's precisions, checked before any work
        quantize("openvino", ModelSource(None, tmp_path / "float.xml"),
                 QuantizeJob(tmp_path / "o", "m", None, cfg, x, precision="int16x8"))


def test_the_map_judge_fixes_its_unit_from_the_float_model_before_the_first_attempt(tmp_path):
    """A FOMO (centroid) detector is judged in points of centroid F1 from its first attempt on: the float model's
    kind decides the unit in reference(), scoring never changes it, and a candidate of another kind is refused."""
    from edgekit.compress.task_judges import MapJudge

    class Fake(MapJudge):
        kinds = {"float": "fomo", "other": "centernet"}

        def _evaluate(self, model):
            kind = self.kinds.get(Path(str(model)).stem, "fomo")
            return kind, {"f1": 0.8, "precision": 0.8, "recall": 0.8, "map": 0.3, "map50": 0.5}, 12

    j = Fake(None)
    with pytest.raises(RuntimeError, match="before reference"):
        j.score(tmp_path / "x.tflite")
    ref = j.reference(tmp_path / "float.tflite")
    assert (j.unit, ref.unit, ref.value) == ("points of centroid F1", "centroid F1", 0.8)
    cfg = QuantizeConfig().validate()
    path, attempts = climb([Rung("none", cfg, "int8")], _maker(tmp_path, {}, []), j, ref, 1.0, lambda s: None,
                           "tflite")
    assert attempts[0].unit == "points of centroid F1" and attempts[0].passed and attempts[0].drop == 0.0
    assert attempts[0].to_dict()["detection"]["images"] == 12
    with pytest.raises(ModelError, match="centernet detector but the float reference is a fomo one"):
        j.score(tmp_path / "other.tflite")
    box = Fake(None)
    box.kinds = {"float": "centernet"}
    assert box.reference(tmp_path / "float.tflite").value == 0.3 and box.unit == "points of mAP@[.5:.95]"


def test_float_sensitive_keeps_the_first_weighted_node_and_every_output_head():
    """A chain's head is its last weighted node; a detector's parallel head convs are all heads; a weighted node
    with a weighted node downstream (through any path) is not."""
    from edgekit.compress.quantize import first_and_heads

    chain = ["in", "conv1", "relu", "conv2", "dense", "softmax"]
    succ = {a: [b] for a, b in zip(chain, chain[1:])}
    assert first_and_heads(chain, {"conv1", "conv2", "dense"}, succ) == ["conv1", "dense"]
    # backbone -> neck -> three heads -> concat; a skip from the backbone to the concat does not make it a head
    order = ["stem", "neck", "heat", "off", "size", "cat"]
    succ = {"stem": ["neck", "cat"], "neck": ["heat", "off", "size"], "heat": ["cat"], "off": ["cat"], "size": ["cat"]}
    assert first_and_heads(order, {"stem", "neck", "heat", "off", "size"}, succ) == ["stem", "heat", "off", "size"]
    assert first_and_heads(order, set(), succ) == []


def test_a_passing_rung_that_kept_layers_float_is_replaced_by_its_first_smaller_variant_that_passes(tmp_path):
    """Keep float only what must be: the variants shrink yields (their float layers' weights int8) are judged in
    turn; a miss is recorded and deleted, the first pass replaces the rung's artifact, whose attempt stays,
    and the kept artifact's attempt is last."""
    cfg = QuantizeConfig().validate()
    plan = [Rung(r, cfg, "int8") for r in ("none", "float-sensitive")]
    variants = []

    def shrink(rung, path):
        for k, v in enumerate(("0.5", "0.899")):  # every float layer int8 loses it; the largest alone does not
            p = path.parent / f"smaller{k}" / path.name
            p.parent.mkdir()
            p.write_text(v)
            variants.append(p)
            yield "int8-weights", p

    judge = ScriptedJudge()
    path, attempts = climb(plan, _maker(tmp_path, {"none": 0.5, "float-sensitive": 0.895}, []), judge,
                           judge.reference(None), 1.0, lambda s: None, "onnx", shrink=shrink)
    assert path == variants[1] and path.exists()
    assert not variants[0].exists() and not (tmp_path / "try1" / "m.tflite").exists()
    assert [(a.remedy, a.passed) for a in attempts] == [
        ("none", False), ("float-sensitive+int8-weights", False), ("float-sensitive", True),
        ("float-sensitive+int8-weights", True)]
    assert attempts[-1].value == pytest.approx(0.899)


def test_no_variant_passes_and_the_rung_keeps_its_float_weights(tmp_path):
    cfg = QuantizeConfig().validate()

    def shrink(rung, path):
        p = path.parent / "smaller0" / path.name
        p.parent.mkdir()
        p.write_text("crash")  # a variant that does not run is a miss too
        yield "int8-weights", p

    judge = ScriptedJudge()
    path, attempts = climb([Rung("accuracy-control", cfg, "int8")], _maker(tmp_path, {"accuracy-control": 0.9}, []),
                           judge, judge.reference(None), 1.0, lambda s: None, "onnx", shrink=shrink)
    assert path == tmp_path / "try0" / "m.tflite" and path.exists()
    assert [(a.remedy, a.passed) for a in attempts] == [("accuracy-control+int8-weights", False),
                                                        ("accuracy-control", True)]
    assert attempts[0].error.startswith("converted, but does not run") and not any(tmp_path.rglob("smaller0/*"))
