"""GPU paths: ONNX Runtime CUDA/TensorRT providers and OpenVINO GPU, for float32 and for the fp16 artifacts
that Jetson-class GPUs run. Run with `-m gpu` on a machine that has them (e.g. with onnxruntime-gpu
installed); each test skips with the reason otherwise. Never required for CI."""

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


# --- fp16 artifacts (issue 15): what Jetson-class GPUs run, against float32 on the CPU -----------------------
def _fp16(fmt: str, float_path, tmp_path):
    """The fp16 artifact of a float one, by the same quantizer as `edgekit compress --quantize fp16`."""
    from edgekit.artifact import read_meta
    from edgekit.compress.quantizers import ModelSource, QuantizeJob, quantize
    from edgekit.passes import QuantizeConfig

    cfg = QuantizeConfig(precision=["fp16"]).validate()
    return quantize(fmt, ModelSource(None, float_path),
                    QuantizeJob(tmp_path / fmt, "model_fp16", read_meta(float_path), cfg, None, "fp16"))


def _agree_within_gate(gpu, cpu, x):
    a, b = gpu.predict(x), cpu.predict(x)
    # The gate allows one top-1 point; random inputs must agree at least that well, and the scores closely.
    assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.99
    assert np.abs(a - b).max() < 1e-2


@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_fp16_onnx_on_gpu_providers_agrees_with_cpu_float(provider, request, tmp_path):
    if provider not in _ort_providers():
        pytest.skip(f"{provider} not available here (install onnxruntime-gpu on a CUDA machine)")
    models = request.getfixturevalue("exported_models")
    path = _fp16("onnx", models["onnx"], tmp_path)
    x = np.random.default_rng(1).random((64, 32, 32, 3), dtype=np.float32)
    gpu = runtime.load(path, device=provider)
    assert gpu.detail["providers"][0] == provider and gpu.inputs[0].dtype == np.float32
    _agree_within_gate(gpu, runtime.load(models["onnx"]), x)


def test_fp16_openvino_ir_on_gpu_agrees_with_cpu_float(request, tmp_path):
    from edgekit.runtime.openvino import core

    if not any(d.startswith("GPU") for d in core().available_devices):
        pytest.skip(f"OpenVINO sees no GPU here (devices: {', '.join(core().available_devices)})")
    models = request.getfixturevalue("exported_models")
    path = _fp16("openvino", models["openvino"], tmp_path)
    x = np.random.default_rng(1).random((64, 32, 32, 3), dtype=np.float32)
    _agree_within_gate(runtime.load(path, device="gpu"), runtime.load(models["openvino"]), x)
