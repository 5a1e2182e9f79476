"""Weight-only int8 for the layers an int8 rung kept in float (quantizers.weight_only_variants): the real ONNX
graph edit and NNCF's weight compression on a small model with one float classifier, run in ONNX Runtime and
OpenVINO against the float model."""

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def float_onnx(tmp_path_factory) -> Path:
    """conv 3x3 (8 -> 16) -> relu -> global pool -> flatten -> matmul 16x300 + bias: two float weighted layers."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (16, 8, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.2, (16, 300)).astype(np.float32)
    w2[:, 7] *= 40  # one output column far larger than the rest: per-tensor scales would drown the others
    b2 = rng.normal(0, 0.1, (300,)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
         helper.make_node("Flatten", ["p"], ["f"], name="flat"),
         helper.make_node("MatMul", ["f", "w2"], ["mm"], name="classifier"),
         helper.make_node("Add", ["mm", "b2"], ["y"], name="bias")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 300])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    p = tmp_path_factory.mktemp("wo") / "m.onnx"
    onnx.save(m, str(p))
    return p


def _ort(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])


def test_onnx_lists_float_weighted_layers_and_stores_the_named_ones_int8(float_onnx, tmp_path):
    from edgekit.compress.quantizers.onnx import onnx_float_weighted, onnx_float_weights_int8

    assert onnx_float_weighted(float_onnx) == [("classifier", 4800), ("conv", 1152)]
    out = tmp_path / "w8.onnx"
    assert onnx_float_weights_int8(float_onnx, out, ["classifier", "bogus"]) == ["classifier"]
    onnx.checker.check_model(onnx.load(str(out)))
    assert onnx_float_weighted(out) == [("conv", 1152)]  # the conv was not asked for: still float
    m = onnx.load(str(out))
    w8 = {t.name: t for t in m.graph.initializer}["w2_w8"]
    assert w8.data_type == onnx.TensorProto.INT8 and list(w8.dims) == [16, 300]
    assert out.stat().st_size < float_onnx.stat().st_size - 2.5 * 4800  # 4 bytes -> 1 a weight; 300 scales beside
    x = np.random.default_rng(1).normal(0, 1, (20, 8, 12, 12)).astype(np.float32)
    ref, got = _ort(float_onnx, x), _ort(out, x)
    # One scale per output column: every column is within half its own step, the 40x column beside the rest
    # (one scale for the tensor would be the large column's: 12-24 % of the small columns' largest weight).
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    w = onnx.numpy_helper.to_array(onnx.load(str(float_onnx)).graph.initializer[1])
    deq = inits["w2_w8"].astype(np.float32) * inits["w2_w8_scale"]
    assert np.all(np.abs(deq - w).max(axis=0) <= np.abs(w).max(axis=0) / 254 * 1.001)
    assert np.abs(ref - got).max() <= 0.05 * np.abs(ref).max()
    assert (ref.argmax(1) == got.argmax(1)).all()
    # An opset without per-axis DequantizeLinear is left alone.
    old = onnx.load(str(float_onnx))
    old.opset_import[0].version = 11
    onnx.save(old, str(tmp_path / "old.onnx"))
    assert onnx_float_weights_int8(tmp_path / "old.onnx", tmp_path / "old8.onnx", ["classifier"]) == []
    assert not (tmp_path / "old8.onnx").exists()


def test_openvino_compresses_only_the_named_float_layers(float_onnx, tmp_path):
    ov = pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from edgekit.compress.quantizers.openvino import openvino_float_weighted, openvino_float_weights_int8

    xml = tmp_path / "m.xml"
    ov.save_model(ov.Core().read_model(str(float_onnx)), str(xml), compress_to_fp16=False)
    names = [n for n, _ in openvino_float_weighted(xml)]
    assert len(names) == 2 and openvino_float_weighted(xml)[0][1] == 4800
    out = tmp_path / "w8.xml"
    assert openvino_float_weights_int8(xml, out, [names[0]]) == [names[0]]
    assert [n for n, _ in openvino_float_weighted(out)] == [names[1]]
    assert out.with_suffix(".bin").stat().st_size < xml.with_suffix(".bin").stat().st_size - 2.5 * 4800
    x = np.random.default_rng(1).normal(0, 1, (20, 8, 12, 12)).astype(np.float32)
    core = ov.Core()
    ref = np.concatenate([core.compile_model(str(xml), "CPU")(x[i:i + 1])[0] for i in range(20)])
    got = np.concatenate([core.compile_model(str(out), "CPU")(x[i:i + 1])[0] for i in range(20)])
    assert 0 < np.abs(ref - got).max() <= 0.05 * np.abs(ref).max()


def test_variants_all_float_layers_first_then_the_largest_and_none_for_user_kept_layers(float_onnx, tmp_path):
    import shutil

    from edgekit.artifact import ArtifactMeta, read_meta, write_meta
    from edgekit.compress.ladder import Rung
    from edgekit.compress.quantizers import weight_only_variants
    from edgekit.compress.quantizers.onnx import onnx_float_weighted
    from edgekit.passes import QuantizeConfig

    p = tmp_path / "try0" / "m.onnx"
    p.parent.mkdir()
    shutil.copy(float_onnx, p)
    write_meta(p, ArtifactMeta(quantization={"scheme": "QDQ static"}))
    got = list(weight_only_variants("onnx", Rung("float-sensitive", QuantizeConfig().validate(), "int8"), p))
    assert [t for t, _ in got] == ["int8-weights", "int8-weights"]
    assert onnx_float_weighted(got[0][1]) == [] and onnx_float_weighted(got[1][1]) == [("conv", 1152)]
    assert read_meta(got[1][1]).quantization["weights_int8"] == ["classifier"]
    assert read_meta(got[1][1]).quantization["scheme"] == "QDQ static"
    kept = QuantizeConfig(keep_float=["classifier"]).validate()
    assert list(weight_only_variants("onnx", Rung("none", kept, "int8"), p)) == []
