"""The Conv → Mul → Add folding pass on hand-built graphs, checked with ONNX Runtime."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekit.export.onnx_fold import fold_conv_affine  # noqa: E402

RNG = np.random.default_rng(0)


def _graph(scale_shape=(1, 4, 1, 1), shift_shape=(1, 4, 1, 1), group=1, bias=False, extra_consumer=False):
    cin = 4 if group == 4 else 3
    W = RNG.standard_normal((4, cin // group, 3, 3)).astype(np.float32)
    W[:, :, 0, 0] = 0.0  # zeros must stay zeros (sparsity survives folding)
    inits = [numpy_helper.from_array(W, "W"),
             numpy_helper.from_array(RNG.uniform(0.5, 2, scale_shape).astype(np.float32), "s"),
             numpy_helper.from_array(RNG.standard_normal(shift_shape).astype(np.float32), "b")]
    conv_in = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(RNG.standard_normal(4).astype(np.float32), "B"))
        conv_in.append("B")
    nodes = [helper.make_node("Conv", conv_in, ["c"], group=group, pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Mul", ["s", "c"], ["m"]),  # constant first: either operand order folds
             helper.make_node("Add", ["m", "b"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 4, 4])]
    if extra_consumer:
        nodes.append(helper.make_node("Relu", ["c"], ["r"]))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 4, 4, 4]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, cin, 4, 4])],
                          outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model, x):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # compare the graphs as written
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})


@pytest.mark.parametrize("group,bias", [(1, False), (1, True), (4, False)])
def test_folds_and_matches(group, bias):
    m = _graph(group=group, bias=bias)
    x = RNG.standard_normal((2, 4 if group == 4 else 3, 4, 4)).astype(np.float32)
    before = _run(m, x)[0]
    assert fold_conv_affine(m) == 1
    onnx.checker.check_model(m)
    assert [n.op_type for n in m.graph.node] == ["Conv"]
    assert {i.name for i in m.graph.initializer} == {"conv/W_folded", "conv/B_folded"}  # old constants dropped
    after = _run(m, x)[0]
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
    W = numpy_helper.to_array(m.graph.initializer[0])
    assert np.all(W[:, :, 0, 0] == 0)


def test_scalar_scale_folds():
    m = _graph(scale_shape=(), shift_shape=(4, 1, 1))
    x = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    before = _run(m, x)[0]
    assert fold_conv_affine(m) == 1
    np.testing.assert_allclose(_run(m, x)[0], before, rtol=1e-5, atol=1e-5)


def test_last_axis_constant_is_not_folded():
    # A (4,) constant broadcasts along the width axis of an NCHW tensor, not along the channels.
    m = _graph(scale_shape=(4,), shift_shape=(4,))
    assert fold_conv_affine(m) == 0
    assert [n.op_type for n in m.graph.node] == ["Conv", "Mul", "Add"]


def test_conv_output_used_twice_is_not_folded():
    m = _graph(extra_consumer=True)
    x = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    before = _run(m, x)
    assert fold_conv_affine(m) == 0
    for a, b in zip(_run(m, x), before):
        np.testing.assert_array_equal(a, b)
