"""TFLite's layers kept float by a rung: the denylist names the float model's nodes (quantizing renames a model
output's tensor, and unmapped the classifier head silently stayed int8), and their weights can then be stored
int8 for the op's hybrid kernel (quantizers.tflite.tflite_float_weights_int8), run in LiteRT against Keras."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """conv 3x3 (8 -> 16) -> global pool -> dense 300, the dense's output the model's: float-sensitive keeps the
    conv and the dense float."""
    import keras

    from edgekit.compress.quantizers.tflite import tflite_configure
    from edgekit.export import export_model
    from edgekit.passes import QuantizeConfig

    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 8))
    h = keras.layers.Conv2D(16, 3, activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    m = keras.Model(inp, keras.layers.Dense(300, name="fc")(h))
    rng = np.random.default_rng(0)
    calib = rng.normal(0, 1, (32, 12, 12, 8)).astype(np.float32)
    out = tmp_path_factory.mktemp("tfl")
    res = export_model(m, ["tflite"], out, name="m", verify=False, options={"tflite": {"configure": tflite_configure(
        QuantizeConfig(float_sensitive=True).validate(), calib)}})
    return m, res.artifacts["tflite"], rng.normal(0, 1, (20, 12, 12, 8)).astype(np.float32)


def _ops(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    t = {d["index"]: d for d in it.get_tensor_details()}
    return [(o["op_name"], t[o["inputs"][0]]["dtype"], t[o["inputs"][1]]["dtype"] if len(o["inputs"]) > 1 else None)
            for o in it._get_ops_details()]


def _run(path, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for k in range(len(x)):
        it.set_tensor(i["index"], x[k:k + 1])
        it.invoke()
        out.append(it.get_tensor(o["index"])[0].copy())
    return np.stack(out)


def test_float_sensitive_keeps_the_output_head_float(classifier):
    _, path, _ = classifier
    fc = [o for o in _ops(path) if o[0] == "FULLY_CONNECTED"]
    assert fc == [("FULLY_CONNECTED", np.float32, np.float32)]  # int8 before the name fix
    assert [o for o in _ops(path) if o[0] == "CONV_2D"][0][1] == np.float32  # the first weighted op too


def test_their_weights_stored_int8_run_as_hybrid_ops_close_to_keras(classifier, tmp_path):
    from edgekit.compress.quantizers.tflite import tflite_float_weighted, tflite_float_weights_int8

    model, path, x = classifier
    listed = tflite_float_weighted(path)
    assert [n for _, n in listed] == [4800, 1152]  # the dense's 16x300, the conv's 16x3x3x8
    out = tmp_path / "w8.tflite"
    assert tflite_float_weights_int8(path, out, [listed[0][0], "bogus"]) == [listed[0][0]]
    assert tflite_float_weighted(out) == listed[1:]
    assert ("FULLY_CONNECTED", np.float32, np.int8) in _ops(out)
    assert out.stat().st_size < path.stat().st_size - 2 * 4800  # 3 bytes a weight saved; a scale and an int64 zero point a channel added
    ref = model.predict(x, verbose=0)
    before, after = _run(path, x), _run(out, x)
    err = np.abs(after - ref).max()
    # Symmetric int8 per output channel (and the hybrid kernel's int8 inputs): within 2 % of the output range,
    # and no more than 3x the error the float head had (the int8 conv before it dominates both).
    assert 0 < err <= 0.02 * np.abs(ref).max() and err <= 3 * np.abs(before - ref).max()


def test_a_float_conv_runs_as_a_hybrid_conv_too(classifier, tmp_path):
    from edgekit.compress.quantizers.tflite import tflite_float_weighted, tflite_float_weights_int8

    model, path, x = classifier
    names = [n for n, _ in tflite_float_weighted(path)]
    out = tmp_path / "all8.tflite"
    assert sorted(tflite_float_weights_int8(path, out, names)) == sorted(names)
    assert tflite_float_weighted(out) == [] and ("CONV_2D", np.float32, np.int8) in _ops(out)
    ref = model.predict(x, verbose=0)
    assert np.abs(_run(out, x) - ref).max() <= 0.03 * np.abs(ref).max()


def test_float_sensitive_also_keeps_a_layer_whose_int8_error_stands_out(tmp_path, cancel_net):
    """A 1x1 conv whose weights nearly cancel on equal input channels (+1, -1, ... plus 1 % each): its outputs are
    small, its weights' int8 rounding is not, and it errs by many of its output steps; the rung keeps it float
    beside the first conv and the head, and leaves the ordinary conv after it int8."""
    from edgekit.compress.quantizers.tflite import tflite_configure
    from edgekit.export import export_model
    from edgekit.passes import QuantizeConfig

    m, calib = cancel_net
    record: dict = {}
    res = export_model(m, ["tflite"], tmp_path, name="m", verify=False, options={"tflite": {"configure": tflite_configure(
        QuantizeConfig(float_sensitive=True, per_channel=True).validate(), calib, record=record)}})
    kept = record["kept_float_nodes"]
    assert any("cancel" in n for n in kept) and not any("mid" in n for n in kept), kept
    convs = [o for o in _ops(res.artifacts["tflite"]) if o[0] in ("CONV_2D", "FULLY_CONNECTED")]
    assert [(o[1], o[2]) for o in convs] == [(np.float32, np.float32)] * 2 + [(np.int8, np.int8)] + [
        (np.float32, np.float32)], convs  # first, cancel: float; mid: int8; fc: float
