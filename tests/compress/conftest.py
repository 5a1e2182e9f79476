"""One small trained conv net (DS-CNN, 32 channels, on digits) and one int8 compression of it in every
format, shared by the compress tests."""

import pytest


@pytest.fixture(scope="session")
def digits_cnn(digits_ds_cnn):
    """The session's one trained ds_cnn_s on digits (tests/conftest.py; 32 channels), as its .keras path with
    the sidecar edgekit.train wrote."""
    return digits_ds_cnn.model_path


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
