"""The float-sensitive rung's error outliers in ONNX and OpenVINO: each int8 weighted layer is measured against a
float twin (the same op with float weights on the same int8 input), and the layers that err by more than one of
their output steps stay float beside the first layer and the heads, in ONNX Runtime's QDQ, in NNCF's QDQ and in
NNCF's OpenVINO IR, as the TFLite rung does through its debugger (test_tflite_float_layers.py)."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("nncf")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, cancel_net):
    """conftest's cancel_net exported: (keras model, float ONNX, float IR, calibration, the ONNX weighted nodes and
    the IR's weighted ops in graph order: first, cancel, mid, fc)."""
    import onnx
    import openvino as ov

    from edgekit.export import export_model

    m, calib = cancel_net
    out = tmp_path_factory.mktemp("outliers")
    res = export_model(m, ["onnx", "openvino"], out, name="m", verify=False)
    onnx_nodes = [n.name for n in onnx.load(str(res.artifacts["onnx"])).graph.node
                  if n.op_type in ("Conv", "MatMul", "Gemm")]
    ir = ov.Core().read_model(str(res.artifacts["openvino"]))
    ir_ops = [op.get_friendly_name() for op in ir.get_ordered_ops()
              if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul")]
    assert len(onnx_nodes) == len(ir_ops) == 4, (onnx_nodes, ir_ops)
    return m, res.artifacts["onnx"], res.artifacts["openvino"], calib, onnx_nodes, ir_ops


@pytest.mark.parametrize("engine", ["ort", "nncf"])
def test_onnx_float_sensitive_keeps_the_layer_whose_int8_error_stands_out(exported, tmp_path, engine):
    from edgekit.compress.quantizers.onnx import quantize_onnx, quantize_onnx_nncf
    from edgekit.passes import QuantizeConfig

    _, float_onnx, _, calib, (first, cancel, mid, fc), _ = exported
    quantize = quantize_onnx_nncf if engine == "nncf" else quantize_onnx
    details = quantize(float_onnx, tmp_path / "q.onnx", QuantizeConfig(float_sensitive=True, per_channel=True)
                       .validate(), calib)
    assert details["error_outliers"] == [cancel], details
    assert set(details["kept_float"]) == {first, cancel, fc}, details  # mid stays int8
    # cancel's weights alone err in int8: the weight-only step must leave them float (named as in the artifact,
    # whose names are compacted: known here by the weight's shape), and mid's int8 weights are no such case
    import onnx

    q = onnx.load(str(tmp_path / "q.onnx"))
    shapes = {t.name: tuple(t.dims) for t in q.graph.initializer}
    weight_shape = {n.name: shapes.get(n.input[1]) for n in q.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")}
    assert (8, 8, 1, 1) in {weight_shape.get(n) for n in details["float_weights"]}, (details, weight_shape)
    assert not list(tmp_path.glob("*.probe.onnx"))  # the probe model is gone


def test_onnx_layer_errors_measure_rounding_and_the_outlier(exported, tmp_path):
    """Against its float twin, an ordinary int8 layer errs by a fraction of its output step (its output's
    rounding, 0.29 of a step RMS, and its weights'); the cancelling one by more than the rung's one step."""
    import edgekit.compress.quantizers.onnx as qo
    from edgekit.compress.quantize import MAX_ERROR_STEPS, MAX_WEIGHT_NOISE
    from edgekit.compress.quantizers.onnx import onnx_layer_errors, quantize_onnx_nncf
    from edgekit.passes import QuantizeConfig

    _, float_onnx, _, calib, (first, cancel, mid, fc), _ = exported
    keep = qo.compact_onnx_names
    qo.compact_onnx_names = lambda path: None  # names as in the float model, as the rung's probe has them
    try:
        quantize_onnx_nncf(float_onnx, tmp_path / "q.onnx", QuantizeConfig(per_channel=True).validate(), calib)
    finally:
        qo.compact_onnx_names = keep
    errors = onnx_layer_errors(tmp_path / "q.onnx", float_onnx, calib)
    assert set(errors) == {first, cancel, mid, fc}, errors
    int8, weights = ({n: e[k] for n, e in errors.items()} for k in (0, 1))
    assert int8[cancel] > MAX_ERROR_STEPS > int8[mid] > 0.1, errors
    assert int8[fc] < MAX_ERROR_STEPS, errors
    # its weights alone: cancel's int8 weights put noise into its output beyond the bar, mid's little
    assert weights[cancel] > MAX_WEIGHT_NOISE > 0.1 > weights[mid] > 0, errors


def test_openvino_float_sensitive_keeps_the_layer_whose_int8_error_stands_out(exported):
    import openvino as ov

    from edgekit.compress.quantize import MAX_ERROR_STEPS, MAX_WEIGHT_NOISE
    from edgekit.compress.quantizers.openvino import openvino_layer_errors, openvino_transform
    from edgekit.passes import QuantizeConfig

    _, _, float_ir, calib, _, (first, cancel, mid, fc) = exported
    model = ov.Core().read_model(str(float_ir))
    record: dict = {}
    q = openvino_transform(QuantizeConfig(float_sensitive=True, per_channel=True).validate(), calib,
                           transformer=False, record=record)(model)
    assert record["error_outliers"] == [cancel], record
    assert set(record["kept_float"]) == {first, cancel, fc}, record
    # the probe's measurement, on a model quantized without any layer kept: the outlier stands out, mid rounds
    import nncf

    plain = nncf.quantize(ov.Core().read_model(str(float_ir)), nncf.Dataset([calib[i:i + 1] for i in range(40)]),
                          subset_size=40)
    errors = openvino_layer_errors(plain, model, calib)
    assert errors[cancel][0] > MAX_ERROR_STEPS > errors[mid][0] > 0.1, errors
    assert errors[cancel][1] > MAX_WEIGHT_NOISE > 0.1 > errors[mid][1] > 0, errors
    assert cancel in record["float_weights"] and set(record["float_weights"]) <= set(record["kept_float"]), record
    # the quantized model: the kept layers read their float weights, mid (only mid) a quantized one
    weights_float = {op.get_friendly_name(): op.input_value(1).get_node().get_type_name() == "Constant"
                     and op.input_value(1).get_node().get_element_type() == ov.Type.f32
                     for op in q.get_ops() if op.get_friendly_name() in (first, cancel, mid, fc)}
    assert weights_float == {first: True, cancel: True, mid: False, fc: True}, weights_float
