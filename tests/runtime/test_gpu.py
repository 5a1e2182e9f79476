"""GPU paths: ONNX Runtime CUDA/TensorRT providers and OpenVINO GPU. Run with `-m gpu` on a machine
that has them (e.g. with onnxruntime-gpu installed); each test skips with the reason otherwise."""

import numpy as np
import pytest

from edgekit import runtime

pytestmark = pytest.mark.gpu


def _ort_providers():
    import onnxruntime as ort

    return ort.get_available_providers()


@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_onnxruntime_gpu_provider_matches_cpu(exported_models, provider):
    if provider not in _ort_providers():
        pytest.skip(f"{provider} not available here (install onnxruntime-gpu on a CUDA machine)")
    x = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    gpu = runtime.load(exported_models["onnx"], device=provider)
    assert gpu.detail["providers"][0] == provider
    cpu = runtime.load(exported_models["onnx"])
    assert np.abs(gpu.predict(x) - cpu.predict(x)).max() < 1e-3
    assert runtime.load(exported_models["onnx"], device="gpu").detail["providers"][0] in (
        "TensorrtExecutionProvider", "CUDAExecutionProvider")


def test_openvino_gpu_matches_cpu(exported_models):
    from edgekit.runtime.openvino import core

    if not any(d.startswith("GPU") for d in core().available_devices):
        pytest.skip(f"OpenVINO sees no GPU here (devices: {', '.join(core().available_devices)})")
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    gpu = runtime.load(exported_models["openvino"], device="gpu")
    cpu = runtime.load(exported_models["openvino"])
    assert np.abs(gpu.predict(x) - cpu.predict(x)).max() < 1e-3
