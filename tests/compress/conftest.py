"""One small trained conv net (DS-CNN, 32 channels, on digits) and one int8 compression of it in every
format, shared by the compress tests."""

import pytest


@pytest.fixture(scope="session")
def digits_cnn(tmp_path_factory):
    """A zoo DS-CNN (32 channels) trained a few epochs on digits, saved as .keras with its sidecar."""
    import keras

    from edgekit.artifact import ArtifactMeta, write_meta
    from edgekit.data import load_dataset
    from edgekit.zoo import build_model

    ds = load_dataset("digits")
    keras.utils.set_random_seed(0)
    # BatchNorm momentum 0.9: a few epochs at 0.99 leave the moving statistics unsettled.
    model = build_model("ds_cnn_s", ds.input_shape, ds.num_classes, filters=32, bn_momentum=0.9)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = ds.split("train")
    model.fit(x, y, batch_size=32, epochs=8, verbose=0)
    path = tmp_path_factory.mktemp("compress-model") / "model.keras"
    model.save(path)
    write_meta(path, ArtifactMeta(format="keras", task=ds.task, labels=list(ds.labels),
                                  preprocessing=dict(ds.preprocessing), provenance={"data": "digits"}))
    return path


@pytest.fixture(scope="session")
def int8_all(digits_cnn, tmp_path_factory):
    from edgekit.compress import ExportConfig, QuantizeConfig, compress

    out = tmp_path_factory.mktemp("compress-int8")
    return compress(digits_cnn, "digits", out, quantize=QuantizeConfig(calibration_samples=100),
                    export=ExportConfig(bench_runs=5))


@pytest.fixture(scope="session")
def cli(cli_in_process):
    """The tests here read only exit codes and output: ``edgekit`` runs in process (a fresh Python + TensorFlow
    per call cost 5-10 s each)."""
    return cli_in_process
