"""ONNX Runtime backend. Execution providers follow the device:

gpu → TensorRT, then CUDA (``onnxruntime-gpu``; the Jetson build has both);
npu → OpenVINO EP (device NPU), QNN (Snapdragon), VitisAI;
cpu → CPU. A provider name or short alias (``cuda``, ``tensorrt``, ``openvino``, ``qnn``) picks one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, MissingDependencyError, ModelError, UnsupportedError, first_line
from .base import Backend, Session, TensorInfo, io_quantization

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16, "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}

ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "vitisai": "VitisAIExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
}
PREFERENCE = {
    "gpu": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "DmlExecutionProvider"],
    "npu": ["OpenVINOExecutionProvider", "QNNExecutionProvider", "VitisAIExecutionProvider"],
}
_GPU_INSTALL = "pip install onnxruntime-gpu (on a Jetson: the JetPack build of onnxruntime-gpu)"
_NPU_INSTALL = "pip install onnxruntime-openvino (Intel NPU) or onnxruntime-qnn (Snapdragon)"


def _ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx", what="Running .onnx models") from None
    return ort


def _provider_options(provider: str, generic: str) -> dict:
    if provider == "OpenVINOExecutionProvider":
        return {"device_type": "NPU" if generic == "npu" else ("GPU" if generic == "gpu" else "CPU")}
    if provider == "QNNExecutionProvider":
        return {"backend_path": "libQnnHtp.so"}
    if provider == "TensorrtExecutionProvider":
        return {"trt_fp16_enable": "False"}
    return {}


def _tensor_info(arg) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    dtype = np.dtype(_ORT_TYPES.get(arg.type, np.float32))
    return TensorInfo(arg.name, shape, dtype)


class ORTSession(Session):
    backend = "onnxruntime"

    def __init__(self, path, sess, device, threads, meta, detail, qparams):
        self._sess = sess
        ins = [_tensor_info(a) for a in sess.get_inputs()]
        outs = [_tensor_info(a) for a in sess.get_outputs()]
        # QDQ models keep float I/O; a model with integer I/O carries its scale/zero point in metadata.
        ins = [t.with_quant(qparams.get(t.name)) for t in ins]
        outs = [t.with_quant(qparams.get(t.name)) for t in outs]
        self._out_names = [t.name for t in outs]
        super().__init__(path, device, ins, outs, meta=meta, threads=threads, detail=detail)

    def _run(self, feed):
        return self._sess.run(self._out_names, feed)

    @property
    def raw_session(self):
        return self._sess



class ORTBackend(Backend):
    name = "onnxruntime"
    suffixes = (".onnx",)
    package = "onnxruntime"
    extra = "onnx"

    @classmethod
    def version(cls) -> str:
        return f"onnxruntime {_ort().__version__}"

    @classmethod
    def devices(cls) -> list[dict]:
        ort = _ort()
        rows = []
        for p in ort.get_available_providers():
            kind = next((k for k, v in PREFERENCE.items() if p in v), "cpu" if p == "CPUExecutionProvider" else "other")
            rows.append({"device": p, "kind": kind, "detail": ort.get_device()})
        return rows

    @classmethod
    def device_names(cls) -> list[str]:
        return ["cpu", "gpu", "npu", "auto"] + sorted(k for k in ALIASES if k != "cpu") + ["<Name>ExecutionProvider"]

    @classmethod
    def resolve_providers(cls, device: str) -> tuple[list, str]:
        ort = _ort()
        available = ort.get_available_providers()
        d = device.strip()
        low = d.lower()
        if low in ("gpu", "npu"):
            chosen = [p for p in PREFERENCE[low] if p in available]
            if not chosen:
                hint = _GPU_INSTALL if low == "gpu" else _NPU_INSTALL
                raise UnsupportedError(f"ONNX Runtime here has no {low.upper()} provider (available: "
                                       f"{', '.join(available)}). For {low}: {hint}; or use device='cpu'")
            provs = [(p, _provider_options(p, low)) for p in chosen] + ["CPUExecutionProvider"]
            return provs, low
        if low == "auto":
            chosen = [p for p in PREFERENCE["npu"] + PREFERENCE["gpu"] if p in available]
            generic = "npu" if chosen and chosen[0] in PREFERENCE["npu"] else ("gpu" if chosen else "cpu")
            return [(p, _provider_options(p, generic)) for p in chosen] + ["CPUExecutionProvider"], generic
        if low == "cpu":
            return ["CPUExecutionProvider"], "cpu"
        name = ALIASES.get(low, d)
        if not name.endswith("ExecutionProvider"):
            raise ConfigError(f"Unknown device {device!r} for backend onnxruntime. Allowed: "
                              + ", ".join(cls.device_names()))
        if name not in available:
            raise UnsupportedError(f"ONNX Runtime provider {name} is not available here (available: "
                                   f"{', '.join(available)})")
        return [(name, _provider_options(name, "gpu"))] + (["CPUExecutionProvider"] if name != "CPUExecutionProvider" else []), name

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads=None, meta=None, *, graph_optimization: str = "all",
             inter_op_threads: int | None = None, **options) -> Session:
        if options:
            raise ConfigError(f"Unknown option(s) for onnxruntime: {', '.join(options)}. "
                              "Allowed: graph_optimization, inter_op_threads")
        ort = _ort()
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if graph_optimization not in levels:
            raise ConfigError(f"Unknown graph_optimization {graph_optimization!r}. Allowed: {', '.join(levels)}")
        providers, resolved = cls.resolve_providers(device)
        so = ort.SessionOptions()
        so.graph_optimization_level = levels[graph_optimization]
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        so.inter_op_num_threads = inter_op_threads or 1
        try:
            sess = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as e:  # ORT raises its own exception types for parse failures
            msg = first_line(e)
            if "NO_SUCHFILE" in msg or "INVALID_PROTOBUF" in msg or "INVALID_GRAPH" in msg or "Protobuf" in msg:
                raise ModelError(f"{path} is not a valid ONNX model ({msg[:200]})") from None
            raise ModelError(f"ONNX Runtime could not load {path}: {msg[:300]}") from None
        qparams = io_quantization(meta)
        detail = {"providers": sess.get_providers()}
        return ORTSession(path, sess, resolved if resolved in ("cpu", "gpu", "npu") else resolved, threads, meta,
                          detail, qparams)
