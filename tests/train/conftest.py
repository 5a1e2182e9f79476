"""One small trained run (ds_cnn_s on digits), exported once to every format, shared by the tests."""

import pytest


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    from edgekit.train import train

    out = tmp_path_factory.mktemp("runs") / "digits"
    # BatchNorm momentum 0.9: with a few epochs 0.99 leaves moving statistics unsettled
    return train("ds_cnn_s", "digits", epochs=4, out_dir=out, batch_size=32, quiet=True,
                 model_options={"bn_momentum": 0.9})


@pytest.fixture(scope="session")
def digits_exports(digits_run, tmp_path_factory):
    from edgekit.export import export_model

    res = export_model(digits_run.model_path, ("tflite", "onnx", "openvino"), tmp_path_factory.mktemp("export"))
    return res.artifacts
