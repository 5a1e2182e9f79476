"""What an artifact really contains, read back from the file: weight tensors, sparsity, gzip size."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..artifact import model_files, model_format


def constant_tensors(path: str | Path) -> list[np.ndarray]:
    """The constant (weight) tensors stored in a .tflite, .onnx or OpenVINO .xml/.bin."""
    path = Path(path)
    fmt = model_format(path)
    if fmt == "tflite":
        return _tflite_constants(path)
    if fmt == "onnx":
        import onnx
        from onnx import numpy_helper

        m = onnx.load(str(path))
        return [numpy_helper.to_array(t) for t in m.graph.initializer]
    if fmt == "openvino":
        import openvino as ov

        m = ov.Core().read_model(str(path))
        return [np.asarray(op.get_data()) for op in m.get_ops() if op.get_type_name() == "Constant"]
    raise ValueError(f"no weights reader for {fmt}")


def _tflite_constants(path: Path) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    # Without XNNPACK the interpreter leaves weight buffers where get_tensor can read them.
    interp = Interpreter(model_path=str(path), experimental_op_resolver_type=_no_delegate_resolver())
    interp.allocate_tensors()
    out = []
    ops = interp._get_ops_details()
    produced = {i for o in ops for i in o["outputs"]}
    consumed = {i for o in ops for i in o["inputs"]}
    variables = {d["index"] for d in interp.get_input_details()} | {d["index"] for d in interp.get_output_details()}
    for d in interp.get_tensor_details():
        i = d["index"]
        # A weight is read by an op and written by none; inputs, outputs and scratch tensors are not weights.
        if i not in consumed or i in produced or i in variables or d["name"].startswith("serving_default_"):
            continue
        try:
            a = interp.get_tensor(i)
        except ValueError:
            continue
        if a is not None and a.size:
            out.append(np.array(a))
    return out


def _no_delegate_resolver():
    from ai_edge_litert.interpreter import OpResolverType

    return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def weight_sparsity(path: str | Path, min_size: int = 64) -> float:
    """Fraction of exact zeros over the kernel tensors (>= 2 dims, >= ``min_size`` values) of an artifact."""
    total = zeros = 0
    for a in constant_tensors(path):
        if a.ndim >= 2 and a.size >= min_size and a.dtype.kind in "fiu" and a.dtype != np.int64:
            total += a.size
            zeros += int(np.count_nonzero(a == 0))
    return zeros / total if total else 0.0


def gzip_size(path: str | Path) -> int:
    """Bytes of all the model's files gzip-compressed (level 9): what sparsity buys on the wire/flash."""
    return sum(len(gzip.compress(f.read_bytes(), compresslevel=9, mtime=0)) for f in model_files(path))


def weight_bytes(path: str | Path) -> int:
    """Bytes of the stored weight tensors (the payload fp16 halves), without graph, names and metadata."""
    return int(sum(a.nbytes for a in constant_tensors(path) if a.size >= 16))


# --- integer weights, measured -----------------------------------------------------------------------
def weight_dtypes(path: Path) -> dict:
    """Counts of weight tensors by dtype in an artifact (what 'int8 weights' means, measured)."""
    out: dict[str, int] = {}
    for a in constant_tensors(path):
        # Kernels only: per-channel scales and ranges (OpenVINO's FakeQuantize limits) stay float.
        if a.ndim >= 2 and a.size >= 256:
            out[str(a.dtype)] = out.get(str(a.dtype), 0) + 1
    return out


# --- latency ------------------------------------------------------------------------------------------
def latency(path: Path, threads: int = 1, runs: int = 100, warmup: int = 10) -> dict:
    """The latency stage of ``edgekit compress``, recipes and foreign models alike: the model in a fresh
    process (clean load time and peak memory, no TensorFlow threads beside it), as ``edgekit bench`` does."""
    from ..runtime.bench import BenchConfig, run_isolated

    res = run_isolated(BenchConfig(model=str(path), threads=threads, runs=runs, warmup=warmup))
    return {"p50_ms": res.p50_ms, "p99_ms": res.p99_ms, "load_ms": res.load_ms, "peak_rss_mb": res.peak_rss_mb,
            "backend": res.backend, "threads": res.threads, "runs": res.runs}

