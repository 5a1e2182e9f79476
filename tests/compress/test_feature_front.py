"""A model that normalizes its input features in-graph (ds_cnn's time_mean_norm) keeps the normalization and
the first weighted layer float in every format's int8, from the first rung: one per-tensor int8 scale for
MFCC-like features, whose first coefficient spans ten times the range of the others, leaves the first layer
a few dozen levels for most of them. Everything after stays int8."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def mfcc_like(tmp_path_factory):
    """ds_cnn_s (16 filters) briefly trained on features shaped like MFCCs: c0 around -200 +- 60, c1..c9
    +- 10; the class is in c1..c3 (which a per-tensor scale set by c0 blurs)."""
    import keras

    from edgekit.compress import ExportConfig, GateConfig, QuantizeConfig, compress
    from edgekit.data.base import from_arrays
    from edgekit.zoo import build_model

    rng = np.random.default_rng(0)
    n, k = 1200, 4
    y = rng.integers(0, k, n)
    x = rng.normal(0, 10, (n, 49, 10)).astype(np.float32)
    x[:, :, 0] = rng.normal(-200, 60, (n, 1))
    for c in range(k):  # a class-specific offset pattern on c1..c3 over the middle frames
        x[y == c, 15:35, 1 + (c % 3)] += 20.0 * (1 if c < 3 else -1)
    ds = from_arrays("mfcc-like", "audio-classification", [f"c{i}" for i in range(k)], x, y,
                     preprocessing={"type": "features"})
    keras.utils.set_random_seed(0)
    model = build_model("ds_cnn_s", (49, 10), k, filters=16, bn_momentum=0.9)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(*ds.split("train"), batch_size=32, epochs=6, verbose=0)
    out = tmp_path_factory.mktemp("front")
    res = compress(model, ds, out, quantize=QuantizeConfig(calibration_samples=100),
                   export=ExportConfig(bench_runs=0, gate=GateConfig(max_drop=100.0)))
    assert next(r for r in res.rows if r["precision"] == "float32")["top1"] > 0.9  # it learned the task
    return res, out


def _artifact(res, fmt):
    return next(r["artifact"] for r in res.rows if r["format"] == fmt and r["precision"] == "int8")


def test_tflite_runs_the_normalization_and_first_conv_in_float_and_the_rest_in_int8(mfcc_like):
    from ai_edge_litert.interpreter import Interpreter

    res, out = mfcc_like
    it = Interpreter(model_path=str(out / _artifact(res, "tflite")))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    convs = [o for o in it._get_ops_details() if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    first_in = tensors[convs[0]["inputs"][0]]["dtype"]
    later = [tensors[o["inputs"][0]]["dtype"] for o in convs[1:]]
    assert first_in == np.float32, first_in
    assert later and all(d == np.int8 for d in later), later


def test_onnx_and_openvino_leave_the_first_conv_input_unquantized(mfcc_like):
    import onnx
    import openvino as ov

    res, out = mfcc_like
    g = onnx.load(str(out / _artifact(res, "onnx"))).graph
    producer = {o: n for n in g.node for o in n.output}
    convs = [n for n in g.node if n.op_type == "Conv"]
    feeds = [producer.get(c.input[0]).op_type if c.input[0] in producer else "input" for c in convs]
    assert feeds[0] != "DequantizeLinear" and all(f == "DequantizeLinear" for f in feeds[1:]), feeds

    m = ov.Core().read_model(str(out / _artifact(res, "openvino")))
    convs = [op for op in m.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]
    feeds = [c.input_value(0).get_node().get_type_name() for c in convs]
    assert feeds[0] != "FakeQuantize" and sum(f == "FakeQuantize" for f in feeds[1:]) >= len(feeds) - 2, feeds


def test_what_stayed_float_is_recorded(mfcc_like):
    from edgekit.artifact import read_meta

    res, out = mfcc_like
    for fmt in ("tflite", "onnx", "openvino"):
        q = read_meta(out / _artifact(res, fmt)).quantization
        assert q["precision"] == "int8"
        kept = q.get("kept_float") or q.get("details", {}).get("kept_float")
        assert kept, (fmt, q)
