"""LiteRT (TFLite) backend: ai_edge_litert, else tflite_runtime; tensorflow.lite only when asked for
(``EDGEKIT_ALLOW_TF_LITE=1``): the device side never imports TensorFlow on its own.

XNNPACK is on by default (it is ~3x faster on CPU here). GPU and NPU go through external
delegates: the TFLite GPU delegate, or an Edge TPU (``libedgetpu.so.1``), or any
``delegate:/path/to/lib.so``.
"""

from __future__ import annotations

import ctypes.util
import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError, MissingDependencyError, ModelError, UnsupportedError, first_line
from .base import Backend, Session, TensorInfo

# Delegate libraries to look for per generic device, in order of preference.
DELEGATE_LIBS = {
    "npu": ["libedgetpu.so.1", "libedgetpu.so", "libvx_delegate.so", "libethosu_delegate.so"],
    "gpu": ["libtensorflowlite_gpu_delegate.so", "libtensorflowlite_gpu_gl.so"],
}


def _interpreter_module():
    """The first interpreter module that imports, and its name."""
    try:
        from ai_edge_litert import interpreter as mod

        return mod, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod  # legacy; breaks under NumPy 2

        return mod, "tflite_runtime"
    except ImportError:
        pass
    if os.environ.get("EDGEKIT_ALLOW_TF_LITE", "0") == "1":  # opt-in: a build machine without ai-edge-litert
        try:
            import tensorflow.lite as mod  # last resort: heavy, build machines only

            return mod, "tensorflow.lite"
        except ImportError:
            pass
    raise MissingDependencyError("ai-edge-litert", "litert", what="Running .tflite models")


def _find_delegate(device: str) -> str | None:
    for lib in DELEGATE_LIBS.get(device, []):
        if os.path.isabs(lib) and os.path.exists(lib):
            return lib
        try:
            ctypes.CDLL(lib)
            return lib
        except OSError:
            found = ctypes.util.find_library(lib.removeprefix("lib").split(".so")[0])
            if found:
                return found
    return None


def _tensor_info(d: dict) -> TensorInfo:
    sig = d.get("shape_signature")
    shape_src = sig if sig is not None and len(sig) == len(d["shape"]) else d["shape"]
    shape = tuple(None if int(s) < 0 else int(s) for s in shape_src)
    scale, zp = d.get("quantization", (0.0, 0))
    qp = d.get("quantization_parameters") or {}
    scales = qp.get("scales")
    if scales is not None and len(scales) > 1:  # per-axis on an I/O tensor: leave it raw
        scale, zp = 0.0, 0
    dtype = np.dtype(d["dtype"])
    return TensorInfo(d["name"], shape, dtype, float(scale) if scale else None, int(zp) if scale else None)


class LiteRTSession(Session):
    backend = "litert"

    def __init__(self, path, interp, device, threads, meta, detail):
        self._interp = interp
        in_d = interp.get_input_details()
        out_d = interp.get_output_details()
        self._in_idx = {d["name"]: d["index"] for d in in_d}
        self._out_idx = [d["index"] for d in out_d]
        self._cur_shape = {d["name"]: tuple(int(s) for s in d["shape"]) for d in in_d}
        # _tensor_info reads shape_signature, so dynamic dims are None and the base class
        # leaves batch chunking off for them.
        super().__init__(path, device, [_tensor_info(d) for d in in_d], [_tensor_info(d) for d in out_d],
                         meta=meta, threads=threads, detail=detail)

    def _run(self, feed):
        interp = self._interp
        self._reshape({name: arr.shape for name, arr in feed.items()})
        for name, arr in feed.items():
            interp.set_tensor(self._in_idx[name], arr)
        interp.invoke()
        return [interp.get_tensor(i) for i in self._out_idx]

    def _reshape(self, shapes: dict):
        """Resize the inputs whose shape changed (a new batch size), then reallocate once."""
        resized = False
        for name, shape in shapes.items():
            if shape != self._cur_shape[name]:
                self._interp.resize_tensor_input(self._in_idx[name], shape, strict=False)
                self._cur_shape[name] = shape
                resized = True
        if resized:
            self._interp.allocate_tensors()

    def _run_rows(self, parts, outputs):
        # Float inputs with a dynamic batch: the rows go straight into the interpreter's input buffer, one copy
        # (np.concatenate into a new array and then set_tensor was two, ~0.5 ms for eight 224x224 images).
        counts = [len(p[self.inputs[0].name]) if self.inputs[0].name in p else -1 for p in parts]
        shapes = {}
        for t in self.inputs:
            if t.quantized or not t.shape or t.shape[0] is not None:
                return None
            tail = None
            for p, n in zip(parts, counts):
                a = p.get(t.name)
                if (len(p) != len(self.inputs) or type(a) is not np.ndarray or a.dtype != t.dtype
                        or a.ndim != len(t.shape) or len(a) != n or (tail is not None and a.shape[1:] != tail)):
                    return None  # run() says what is wrong, or converts
                tail = a.shape[1:]
            if any(w is not None and g != w for g, w in zip(tail, t.shape[1:])):
                return None
            shapes[t.name] = (sum(counts), *tail)
        interp = self._interp
        self._reshape(shapes)
        for name in shapes:
            view = interp.tensor(self._in_idx[name])()
            np.concatenate([p[name] for p in parts], out=view)
            del view  # the interpreter refuses to run while a view of its buffers is alive
        interp.invoke()
        return self._pick([interp.get_tensor(i) for i in self._out_idx], outputs)

    @property
    def interpreter(self):
        """The raw interpreter, for benchmarks against the backend's own API."""
        return self._interp


class LiteRTBackend(Backend):
    name = "litert"
    suffixes = (".tflite",)
    package = "ai-edge-litert"
    extra = "litert"

    @classmethod
    def version(cls) -> str:
        mod, which = _interpreter_module()
        if which == "ai_edge_litert":
            import ai_edge_litert

            return f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}"
        if which == "tflite_runtime":
            import tflite_runtime

            return f"tflite-runtime {getattr(tflite_runtime, '__version__', '?')}"
        import tensorflow

        return f"tensorflow.lite {tensorflow.__version__}"

    @classmethod
    def devices(cls) -> list[dict]:
        rows = [{"device": "cpu", "kind": "cpu", "detail": "XNNPACK delegate (default)"}]
        for dev in ("gpu", "npu"):
            lib = _find_delegate(dev)
            if lib:
                rows.append({"device": dev, "kind": dev, "detail": f"external delegate {lib}"})
        return rows

    @classmethod
    def device_names(cls) -> list[str]:
        return ["cpu", "gpu", "npu", "auto", "cpu-ref (no XNNPACK)", "delegate:/path/to/delegate.so"]

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads=None, meta=None, *, xnnpack: bool = True,
             delegate_options: dict | None = None, **options) -> Session:
        if options:
            raise ConfigError(f"Unknown option(s) for litert: {', '.join(options)}. "
                              "Allowed: xnnpack, delegate_options")
        dev = cls.check_device(device, extra_ok=("cpu-ref", "delegate:"))
        mod, which = _interpreter_module()
        delegates, detail = [], {"interpreter": which}
        if dev == "cpu-ref":
            xnnpack, dev = False, "cpu"
        lib = None
        if dev.startswith("delegate:"):
            lib = dev.split(":", 1)[1]
            if not lib:
                raise ConfigError("delegate: needs a library path, e.g. delegate:/usr/lib/libedgetpu.so.1")
        elif dev in ("gpu", "npu"):
            lib = _find_delegate(dev)
            if lib is None:
                raise UnsupportedError(
                    f"No LiteRT {dev.upper()} delegate found on this machine (looked for "
                    f"{', '.join(DELEGATE_LIBS[dev])}). Install one, pass device='delegate:/path/lib.so', "
                    "or use device='cpu'")
        elif dev == "auto":
            lib = _find_delegate("npu") or _find_delegate("gpu")
        if lib:
            try:
                delegates.append(mod.load_delegate(lib, delegate_options or {}))
            except (ValueError, OSError, RuntimeError) as e:
                raise UnsupportedError(f"Could not load LiteRT delegate {lib}: {e}") from None
            detail["delegate"] = lib
        kw = dict(model_path=str(path), num_threads=threads, experimental_delegates=delegates or None)
        if not xnnpack:
            kw["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        detail["xnnpack"] = bool(xnnpack and not delegates)
        try:
            interp = mod.Interpreter(**kw)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            msg = first_line(e)
            raise ModelError(f"{path} is not a valid TFLite model ({msg})") from None
        resolved = "cpu" if not delegates else (dev if dev in ("gpu", "npu") else f"delegate:{lib}")
        return LiteRTSession(path, interp, resolved, threads, meta, detail)
