"""OpenVINO backend for IR (.xml + .bin): devices CPU, GPU, NPU, AUTO (and any name Core accepts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, MissingDependencyError, ModelError, UnsupportedError, first_line
from .base import Backend, Session, TensorInfo, io_quantization

GENERIC = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU", "auto": "AUTO"}


def _ov():
    try:
        import openvino as ov
    except ImportError:
        raise MissingDependencyError("openvino", "openvino", what="Running OpenVINO IR models") from None
    return ov


_CORE = None


def core():
    """One Core per process: creating it scans plugins, which costs ~100 ms."""
    global _CORE
    if _CORE is None:
        _CORE = _ov().Core()
    return _CORE


def _tensor_info(port) -> TensorInfo:
    ps = port.get_partial_shape()
    shape = tuple(d.get_length() if d.is_static else None for d in ps)
    dtype = np.dtype(port.get_element_type().to_dtype())
    names = port.get_names()
    name = port.get_any_name() if names else f"port{port.get_index()}"
    return TensorInfo(name, shape, dtype)


class OpenVINOSession(Session):
    backend = "openvino"

    def __init__(self, path, compiled, device, threads, meta, detail, qparams):
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        ins = [_tensor_info(p) for p in compiled.inputs]
        outs = [_tensor_info(p) for p in compiled.outputs]
        ins = [t.with_quant(qparams.get(t.name)) for t in ins]
        outs = [t.with_quant(qparams.get(t.name)) for t in outs]
        self._in_ports = {t.name: i for i, t in enumerate(ins)}
        super().__init__(path, device, ins, outs, meta=meta, threads=threads, detail=detail)

    def _run(self, feed):
        ports = self._in_ports
        # infer() copies the outputs out of the request (share_outputs=False), in output order; to_tuple() reads
        # them without the ~2 us per output that indexing the result by port costs.
        return list(self._request.infer({ports[k]: v for k, v in feed.items()}).to_tuple())

    @property
    def compiled_model(self):
        return self._compiled



class OpenVINOBackend(Backend):
    name = "openvino"
    suffixes = (".xml",)
    package = "openvino"
    extra = "openvino"

    @classmethod
    def version(cls) -> str:
        return f"openvino {_ov().get_version()}"

    @classmethod
    def devices(cls) -> list[dict]:
        c = core()
        rows = []
        for d in c.available_devices:
            try:
                full = c.get_property(d, "FULL_DEVICE_NAME")
            except Exception:
                full = ""
            kind = d.split(".")[0].lower()
            rows.append({"device": d, "kind": kind, "detail": str(full)})
        return rows

    @classmethod
    def device_names(cls) -> list[str]:
        return ["cpu", "gpu", "npu", "auto", "CPU", "GPU", "GPU.0", "NPU", "AUTO", "AUTO:NPU,CPU", "HETERO:GPU,CPU"]

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads=None, meta=None, *, hint: str = "LATENCY",
             cache_dir: str | None = None, precision: str | None = "f32", **options) -> Session:
        """precision: inference precision on CPU/GPU. OpenVINO 2026 defaults to bf16 on CPUs that
        report BF16 (even AVX2-only ones) and f16 on GPUs, which moves a float model's outputs by
        ~1e-3; edgekit runs float artifacts as exported unless asked (``precision=None`` = device default).
        """
        if options:
            raise ConfigError(f"Unknown option(s) for openvino: {', '.join(options)}. "
                              "Allowed: hint, cache_dir, precision")
        if precision not in (None, "f32", "f16", "bf16"):
            raise ConfigError(f"Unknown precision {precision!r}. Allowed: f32, f16, bf16, or None (device default)")
        if hint not in ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"):
            raise ConfigError(f"Unknown performance hint {hint!r}. Allowed: LATENCY, THROUGHPUT, CUMULATIVE_THROUGHPUT")
        d = device.strip()
        ov_dev = GENERIC.get(d.lower())
        if ov_dev is None:
            head = d.split(":")[0].split(".")[0]
            if head not in ("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI") or not d:
                raise ConfigError(f"Unknown device {device!r} for backend openvino. Allowed: "
                                  + ", ".join(cls.device_names()))
            ov_dev = d
        c = core()
        avail = c.available_devices
        base = ov_dev.split(":")[0].split(".")[0]
        if base in ("CPU", "GPU", "NPU") and not any(a.split(".")[0] == base for a in avail):
            raise UnsupportedError(f"OpenVINO sees no {base} here (available: {', '.join(avail)}). "
                                   "Install the device driver, or use device='cpu'")
        bin_path = Path(path).with_suffix(".bin")
        if not bin_path.exists():
            raise ModelError(f"{path} needs its weights file {bin_path.name} next to it (OpenVINO IR is .xml + .bin)")
        try:
            model = c.read_model(str(path))
        except Exception as e:
            msg = first_line(e)
            raise ModelError(f"{path} is not a valid OpenVINO IR model ({msg[:200]})") from None
        config = {"PERFORMANCE_HINT": hint}
        if cache_dir:
            config["CACHE_DIR"] = cache_dir
        if threads and base == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if precision and base in ("CPU", "GPU"):
            config["INFERENCE_PRECISION_HINT"] = precision
        try:
            compiled = c.compile_model(model, ov_dev, config)
        except Exception as e:
            msg = first_line(e)
            raise UnsupportedError(f"OpenVINO could not compile {path} for {ov_dev}: {msg[:300]}") from None
        qparams = io_quantization(meta)
        try:
            exec_devs = list(compiled.get_property("EXECUTION_DEVICES"))
        except Exception:
            exec_devs = [ov_dev]
        return OpenVINOSession(path, compiled, d.lower() if d.lower() in GENERIC else d, threads, meta,
                               {"execution_devices": exec_devs, "hint": hint,
                                                       "precision": precision or "device default"}, qparams)
