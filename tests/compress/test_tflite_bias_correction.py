"""TFLite's bias-correction rung (quantizers.tflite.bias_correct): the mean output shift int8 rounding puts in each
layer comes off its int32 bias, measured against the float op on the calibration data. Per-tensor weight scales
on a depthwise conv whose channels differ 100x in weight size (the next conv scales them back up, as a folded
BatchNorm does) round the small channels coarsely: their outputs shift, and the correction must take most of the shift out of the model's output on inputs it never saw, without
touching anything but biases."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    import keras

    from edgekit.compress.quantizers.tflite import tflite_configure
    from edgekit.export import export_model
    from edgekit.passes import QuantizeConfig

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    dw = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")
    h = dw(h)
    dw.kernel.assign(dw.kernel.numpy() * np.geomspace(1, 0.01, 16).reshape(1, 1, 16, 1)
                               + 0.002)
    pw = keras.layers.Conv2D(16, 1, padding="same", name="pw")
    h = pw(h)  # reads the small channels as a folded BatchNorm would: scaled back up
    pw.kernel.assign(pw.kernel.numpy() / np.geomspace(1, 0.01, 16).reshape(1, 1, 16, 1) / 10)
    h = keras.layers.GlobalAveragePooling2D()(h)
    m = keras.Model(inp, keras.layers.Dense(10, name="fc")(h))
    rng = np.random.default_rng(0)
    calib = rng.uniform(0, 1, (64, 16, 16, 3)).astype(np.float32)
    test = rng.uniform(0, 1, (64, 16, 16, 3)).astype(np.float32)
    out = tmp_path_factory.mktemp("bc")
    paths = {}
    for bc in (False, True):
        cfg = QuantizeConfig(bias_correction=bc).validate()
        res = export_model(m, ["tflite"], out / str(bc), name="m", verify=False,
                           options={"tflite": {"configure": tflite_configure(cfg, calib)}})
        paths[bc] = res.artifacts["tflite"]
    return np.asarray(m(test)), paths, test


def _tensors(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return [(d["name"], d["dtype"], tuple(d["shape"]), d["quantization"]) for d in it.get_tensor_details()]


def test_bias_correction_takes_the_rounding_shift_out_of_the_output(pair):
    from edgekit.compress.judge import predict

    ref, paths, test = pair
    plain, corrected = predict(paths[False], test), predict(paths[True], test)
    # The systematic error per logit, and the squared error, relative to the logits' spread.
    shift = lambda y: np.abs((y - ref).mean(0)).mean() / ref.std()  # noqa: E731
    mse = lambda y: ((y - ref) ** 2).mean() / ref.var()  # noqa: E731
    assert shift(plain) > 0.02  # per-tensor rounding of the small channels shifts the logits (measured 0.046)
    assert shift(corrected) < shift(plain) / 3  # measured 10x smaller
    assert mse(corrected) < mse(plain) / 2  # measured 15x smaller


def test_bias_correction_changes_only_int32_biases(pair):
    _, paths, _ = pair
    a, b = _tensors(paths[False]), _tensors(paths[True])
    assert [(n, d, s) for n, d, s, _ in a] == [(n, d, s) for n, d, s, _ in b]  # same graph, same tensors
    from ai_edge_litert.interpreter import Interpreter

    ia, ib = Interpreter(model_path=str(paths[False])), Interpreter(model_path=str(paths[True]))
    changed, compared = set(), []
    for d in ia.get_tensor_details():
        if d["dtype"] not in (np.int8, np.int32) or not d["quantization"][0]:
            continue
        try:
            x, y = ia.get_tensor(d["index"]), ib.get_tensor(d["index"])
        except ValueError:  # not a constant
            continue
        compared.append(np.dtype(d["dtype"]))
        if not np.array_equal(x, y):
            changed.add(np.dtype(d["dtype"]))
    assert compared.count(np.dtype(np.int8)) >= 4  # the four weight tensors, compared and equal
    assert changed == {np.dtype(np.int32)}


def test_the_rung_records_bias_correction_in_the_artifact_metadata(tmp_path):
    import keras

    from edgekit.artifact import ArtifactMeta, read_meta
    from edgekit.compress.quantizers import ModelSource, QuantizeJob, quantize
    from edgekit.passes import QuantizeConfig

    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 2))
    m = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(inp))))
    calib = np.random.default_rng(1).uniform(0, 1, (20, 8, 8, 2)).astype(np.float32)
    job = QuantizeJob(tmp_path, "m_int8", ArtifactMeta(task="classification", labels=["a", "b", "c"]),
                      QuantizeConfig(bias_correction=True).validate(), calib)
    p = quantize("tflite", ModelSource(m), job)
    q = read_meta(p).quantization
    assert "20 calibration samples" in q["bias_correction"] and q["precision"] == "int8"
    assert "kept_float_nodes" not in q  # nothing kept float on this rung

    job.config = QuantizeConfig(bias_correction=True, float_sensitive=True).validate()
    job.stage = tmp_path / "fs"
    q = read_meta(quantize("tflite", ModelSource(m), job)).quantization
    assert len(q["kept_float_nodes"]) == 2  # the conv (first) and the dense (head): recorded by name

    # int8 input and output tensors: the correction feeds the debug model quantized inputs.
    from ai_edge_litert.interpreter import Interpreter

    job.config = QuantizeConfig(bias_correction=True, int8_io=True).validate()
    job.stage = tmp_path / "io"
    it = Interpreter(model_path=str(quantize("tflite", ModelSource(m), job)))
    assert it.get_input_details()[0]["dtype"] == np.int8 and it.get_output_details()[0]["dtype"] == np.int8
