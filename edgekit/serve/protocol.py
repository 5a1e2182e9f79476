"""KServe v2 / Open Inference Protocol: request parsing and response encoding (JSON and binary).

The binary tensor data extension (as Triton defines it): the body is a JSON header of
``Inference-Header-Content-Length`` bytes followed by the raw tensors, in the order of the
inputs that carry ``parameters.binary_data_size``. Responses use the same layout when any
output asks for ``binary_data`` (or the request sets ``binary_data_output``).
Every check raises RequestError naming the tensor and what was wrong, before anything is queued,
so one bad request can never fail a batch it would have shared.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field

import numpy as np

from .errors import NotRepresentable, RequestError

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_BY_DTYPE = {v: k for k, v in DATATYPES.items()}
ALL_DATATYPES = list(DATATYPES) + ["BYTES"]

HEADER_LENGTH = "inference-header-content-length"


def datatype_of(dtype) -> str:
    dt = np.dtype(dtype)
    if dt.kind in "SUO":
        return "BYTES"
    try:
        return _BY_DTYPE[dt.newbyteorder("=")]
    except KeyError:
        raise RequestError(f"dtype {dt.name} has no KServe v2 datatype") from None


def tensor_datatype(t) -> str:
    """What a client sends for a Session tensor: floats for int8-quantized ones (the Session hides the int8)."""
    return "FP32" if t.quantized else datatype_of(t.dtype)


def wire_shape(shape) -> list[int]:
    return [-1 if d is None else int(d) for d in shape]


@dataclass
class OutputRequest:
    name: str
    binary: bool
    classification: int = 0  # top-k as "score:index:label" strings (the classification extension)


@dataclass
class InferRequest:
    id: str | None
    feed: dict  # input name -> ndarray (validated against the model)
    batch: int
    key: tuple  # requests with equal keys can share a batch
    outputs: list[OutputRequest] | None  # None: all outputs
    binary_default: bool
    timeout_s: float | None
    parameters: dict = field(default_factory=dict)


def _fail(msg: str):
    raise RequestError(msg)


def split_body(body: bytes, header_length: str | None) -> tuple[bytes | memoryview, memoryview | None]:
    """The JSON part and the binary part (None without the extension header)."""
    if header_length is None:
        return body, None
    try:
        n = int(header_length.strip())
    except ValueError:
        _fail(f"Inference-Header-Content-Length must be an integer; received {header_length!r}")
    if n < 0 or n > len(body):
        _fail(f"Inference-Header-Content-Length is {n} but the body has {len(body)} bytes")
    mv = memoryview(body)
    return mv[:n], mv[n:]


# Non-finite numbers. The v2 protocol's JSON tensor data are JSON numbers, and JSON (RFC 8259) has no NaN or
# Infinity. Python's json module and Triton (rapidjson with its NaN/Inf flags) read and write the bare
# JavaScript literals anyway, but strict parsers (browsers' JSON.parse, Go's encoding/json, serde_json) reject
# such a body. So edgekit refuses them both ways rather than invent an encoding: a request holding NaN or
# Infinity literals is 400, and an output that would need them in JSON is 422 naming the output. The binary
# tensor data extension carries IEEE values exactly, so that is how to send or receive them.
def _no_constant(name: str):
    _fail(f"The request body holds {name}, which is not JSON (RFC 8259 has no NaN or Infinity); "
          "send non-finite values as binary tensor data (Inference-Header-Content-Length)")


# Above this size the server parses off the event loop, and the parse is made to let go of the GIL: the C
# scanner never does by itself, so a thread alone would still stall every other request for the whole
# parse (~2 s for 8 MB here). Calling a Python function per number gives the interpreter its switch points.
YIELDING_PARSE_BYTES = 64 * 1024
# Lists of more numbers than this become arrays a slice at a time, for the same reason.
_CHUNK_VALUES = 65536


def _float(s: str) -> float:
    return float(s)


def _int(s: str) -> int:
    return int(s)


def parse_json(raw) -> dict:
    hooks = {"parse_float": _float, "parse_int": _int} if len(raw) > YIELDING_PARSE_BYTES else {}
    try:
        doc = json.loads(bytes(raw) if isinstance(raw, memoryview) else raw, parse_constant=_no_constant, **hooks)
    except RecursionError:  # the C scanner stops at the interpreter's recursion limit (~1000 levels)
        _fail("The JSON in the request body is nested too deeply (tensor data needs one level per dimension)")
    except UnicodeDecodeError:
        _fail("The request body is not UTF-8 JSON. (Sending binary tensors? Set the "
              "Inference-Header-Content-Length header to the length of the JSON part.)")
    except ValueError as e:
        _fail(f"Malformed JSON in the request body: {e}")
    if not isinstance(doc, dict):
        _fail(f"The request body must be a JSON object; received {type(doc).__name__}")
    return doc


# Plans: a client sending binary tensors repeats the same small JSON header with every request (same inputs,
# shapes and outputs; only the bytes after it change). Everything parse_infer checks in such a request follows
# from the header and the binary part's length, so the checked result is kept per model, keyed by the exact
# header bytes, and a repeat only slices the new binary part. Headers holding JSON tensor data are never kept.
PLAN_MAX_JSON = 4096
PLAN_MAX_ENTRIES = 64


class _Plan:
    __slots__ = ("req", "inputs", "nbin")

    def __init__(self, req: "InferRequest", inputs: list, nbin: int):
        self.req, self.inputs, self.nbin = req, inputs, nbin

    def build(self, binary: memoryview) -> "InferRequest":
        r = self.req
        feed = {name: np.frombuffer(binary[a:b], dtype=dt).reshape(shape) for name, dt, shape, a, b in self.inputs}
        return InferRequest(r.id, feed, r.batch, r.key, r.outputs, r.binary_default, r.timeout_s, r.parameters)


def _plan_of(doc: dict, req: "InferRequest", nbin: int) -> "_Plan | None":
    inputs, offset = [], 0
    for item in doc["inputs"]:
        if "data" in item:
            return None
        size = item["parameters"]["binary_data_size"]
        a = req.feed[item["name"]]
        inputs.append((item["name"], a.dtype, a.shape, offset, offset + size))
        offset += size
    return _Plan(req, inputs, nbin)


def parse_request(raw, binary: memoryview | None, model) -> "InferRequest":
    """The JSON part and binary part of an infer body → a validated request (CPU-bound: big ones run off the loop)."""
    text = bytes(raw) if isinstance(raw, memoryview) else raw
    plans = getattr(model, "plans", None) if binary is not None and len(text) <= PLAN_MAX_JSON else None
    if plans is not None:
        plan = plans.get(text)
        if plan is not None and plan.nbin == len(binary):
            return plan.build(binary)
    doc = parse_json(text)
    # Only a body with a true/false in it needs its number lists searched for booleans (see _tensor_from_json).
    req = parse_infer(doc, binary, model, has_bools=b"true" in text or b"false" in text)
    if plans is not None:
        plan = _plan_of(doc, req, len(binary))
        if plan is not None:
            if len(plans) >= PLAN_MAX_ENTRIES:
                plans.clear()
            plans[text] = plan
    return req


def _shape_ok(got: list[int], want: tuple, batch_flexible: bool) -> bool:
    if len(got) != len(want):
        return False
    for i, (g, w) in enumerate(zip(got, want)):
        if w is None:
            continue
        if g != w and not (i == 0 and batch_flexible and w >= 1 and g > w and g % w == 0):
            return False
    return True


def _fmt(shape) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def _as_array(data, count: int) -> np.ndarray:
    """np.asarray(data), a slice of the outer list at a time when it is big (see _CHUNK_VALUES)."""
    if count <= 4 * _CHUNK_VALUES or not isinstance(data, list) or len(data) < 2:
        return np.asarray(data)
    step = max(1, _CHUNK_VALUES * len(data) // count)
    parts = [np.asarray(data[i:i + step]) for i in range(0, len(data), step)]
    if len({p.shape[1:] for p in parts}) != 1:
        raise ValueError("ragged")
    return np.concatenate(parts)


def _holds_bool(data) -> bool:
    """Whether a nested list holds a JSON true/false anywhere (a C-speed pass per innermost list)."""
    stack = [data]
    while stack:
        x = stack.pop()
        if type(x) is bool:
            return True
        if type(x) is list:
            kinds = set(map(type, x))
            if bool in kinds:
                return True
            if list in kinds:
                stack.extend(v for v in x if type(v) is list)
    return False


def _tensor_from_json(name: str, data, shape: list[int], dt: np.dtype, datatype: str,
                      has_bools: bool = True) -> np.ndarray:
    count = math.prod(shape)
    try:
        probe = _as_array(data, count)
    except (ValueError, TypeError):
        _fail(f"Input {name!r}: 'data' is not a regular (non-ragged) array of numbers")
    if probe.dtype.kind not in "biuf":
        _fail(f"Input {name!r}: 'data' must hold {datatype} numbers; received {probe.dtype.kind!r}-kind values"
              + (" (strings)" if probe.dtype.kind in "SU" else ""))
    if probe.size != count:
        _fail(f"Input {name!r}: shape {shape} needs {count} values; 'data' has {probe.size}")
    if dt.kind in "iub" and probe.dtype.kind == "f":
        _fail(f"Input {name!r} is {datatype}; 'data' holds non-integer numbers")
    if dt.kind == "b" and probe.dtype.kind != "b":
        _fail(f"Input {name!r} is BOOL; 'data' must hold true/false")
    # JSON true/false are not numbers: numpy would read them as 1/0 (all of them, or mixed with numbers)
    if dt.kind != "b" and (probe.dtype.kind == "b" or (has_bools and _holds_bool(data))):
        _fail(f"Input {name!r} is {datatype}; 'data' holds true/false, which are not numbers")
    if dt.kind in "iu" and probe.size:
        info = np.iinfo(dt)
        if probe.min() < info.min or probe.max() > info.max:
            _fail(f"Input {name!r}: values outside the {datatype} range [{info.min}, {info.max}]")
    return probe.astype(dt, copy=False).reshape(shape)


def parse_infer(doc: dict, binary: memoryview | None, model, has_bools: bool = True) -> InferRequest:
    """Validate an inference request against ``model`` (a ServedModel) and build its feed."""
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        _fail(f"'id' must be a string; received {type(rid).__name__}")
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        _fail("'parameters' must be a JSON object")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        _fail("The request needs a non-empty 'inputs' list")
    by_name = model.input_info
    feed: dict[str, np.ndarray] = {}
    offset = 0
    nbin = len(binary) if binary is not None else 0
    for i, item in enumerate(inputs):
        if not isinstance(item, dict):
            _fail(f"inputs[{i}] must be a JSON object")
        name = item.get("name")
        if not isinstance(name, str):
            _fail(f"inputs[{i}] needs a string 'name'")
        t = by_name.get(name)
        if t is None:
            _fail(f"Unknown input {name!r} for model {model.name!r}. The model takes: "
                  + ", ".join(f"{n} {tensor_datatype(x)} {_fmt(x.shape)}" for n, x in by_name.items()))
        if name in feed:
            _fail(f"Input {name!r} is given twice")
        shape = item.get("shape")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                   for d in shape)):
            _fail(f"Input {name!r} needs 'shape': a list of non-negative integers; received {shape!r}")
        datatype = item.get("datatype")
        want_dt = tensor_datatype(t)
        if datatype not in ALL_DATATYPES:
            _fail(f"Input {name!r}: unknown datatype {datatype!r}. Allowed: {', '.join(ALL_DATATYPES)}")
        if datatype != want_dt:
            _fail(f"Input {name!r} has datatype {datatype}; the model expects {want_dt}")
        if not _shape_ok(shape, t.shape, model.batch_flexible):
            _fail(f"Input {name!r} has shape {shape}; the model expects {_fmt(t.shape)}")
        dt = DATATYPES[datatype]
        ip = item.get("parameters") or {}
        if not isinstance(ip, dict):
            _fail(f"Input {name!r}: 'parameters' must be a JSON object")
        size = ip.get("binary_data_size")
        if size is not None:
            if binary is None:
                _fail(f"Input {name!r} has binary_data_size but the request has no Inference-Header-Content-Length header")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                _fail(f"Input {name!r}: binary_data_size must be a non-negative integer; received {size!r}")
            want = math.prod(shape) * dt.itemsize
            if size != want:
                _fail(f"Input {name!r}: binary_data_size is {size} bytes but shape {shape} {datatype} needs {want}")
            if offset + size > nbin:
                _fail(f"Input {name!r}: binary_data_size {size} runs past the end of the body "
                      f"({nbin - offset} binary bytes left)")
            arr = np.frombuffer(binary[offset:offset + size], dtype=dt.newbyteorder("<")).reshape(shape)
            offset += size
            if "data" in item:
                _fail(f"Input {name!r} has both 'data' and binary_data_size")
        else:
            if "data" not in item:
                _fail(f"Input {name!r} has no 'data' (and no binary_data_size)")
            arr = _tensor_from_json(name, item["data"], shape, dt, datatype, has_bools)
        feed[name] = arr
    if binary is not None and offset != nbin:
        _fail(f"{nbin - offset} bytes follow the JSON header that no input claims "
              f"(binary_data_size totals {offset}, binary part is {nbin})")
    missing = [n for n in by_name if n not in feed]
    if missing:
        _fail(f"Missing input(s) {', '.join(missing)} for model {model.name!r}")
    batch = _common_batch(feed, model)
    outputs = _parse_outputs(doc.get("outputs"), model, bool(params.get("binary_data_output", False)))
    timeout_s = None
    if "timeout" in params:  # Triton's request parameter, in microseconds
        tmo = params["timeout"]
        if not isinstance(tmo, (int, float)) or isinstance(tmo, bool) or tmo <= 0:
            _fail(f"parameters.timeout must be a positive number of microseconds; received {tmo!r}")
        timeout_s = tmo / 1e6
    key = tuple((n, a.shape[1:], a.dtype.str) for n, a in feed.items())
    return InferRequest(rid, feed, batch, key, outputs, bool(params.get("binary_data_output", False)),
                        timeout_s, params)


def _common_batch(feed: dict, model) -> int:
    if not model.batch_flexible:
        return 1
    sizes = {a.shape[0] for a in feed.values()}
    if len(sizes) != 1:
        _fail("All inputs must share one batch size (first dimension); received "
              + ", ".join(f"{n}: {a.shape[0]}" for n, a in feed.items()))
    n = sizes.pop()
    if n < 1:
        _fail("The batch dimension must be at least 1")
    return n


def _parse_outputs(spec, model, binary_default: bool) -> list[OutputRequest] | None:
    if spec is None:
        return None
    if not isinstance(spec, list):
        _fail("'outputs' must be a list")
    out = []
    for i, o in enumerate(spec):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            _fail(f"outputs[{i}] must be an object with a string 'name'")
        if o["name"] not in model.output_names:
            _fail(f"Unknown output {o['name']!r} for model {model.name!r}. Available: {', '.join(model.output_names)}")
        p = o.get("parameters") or {}
        if not isinstance(p, dict):
            _fail(f"Output {o['name']!r}: 'parameters' must be a JSON object")
        k = p.get("classification", 0)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            _fail(f"Output {o['name']!r}: classification must be a non-negative integer; received {k!r}")
        out.append(OutputRequest(o["name"], bool(p.get("binary_data", binary_default)), k))
    return out


# -- responses --------------------------------------------------------------------------------------
def classify_strings(arr: np.ndarray, k: int, labels: list[str]) -> np.ndarray:
    """Top-k per batch row as Triton's classification extension writes them: "score:index[:label]"."""
    a = np.asarray(arr, np.float32)
    rows = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
    k = min(k, rows.shape[1])
    idx = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    out = np.empty((rows.shape[0], k), dtype=object)
    for r in range(rows.shape[0]):
        for j, c in enumerate(idx[r]):
            s = f"{rows[r, c]:f}:{c}"
            if c < len(labels):
                s += f":{labels[c]}"
            out[r, j] = s.encode()
    return out


def _bytes_tensor(arr: np.ndarray) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in arr.reshape(-1))


def encode_response(model, req: InferRequest, results: dict[str, np.ndarray],
                    parameters: dict | None = None) -> tuple[bytes, dict[str, str]]:
    """Response body and extra headers. ``results``: every requested output by name."""
    wanted = req.outputs if req.outputs is not None else [
        OutputRequest(n, req.binary_default) for n in model.output_names]
    outs, chunks = [], []
    for o in wanted:
        arr = results[o.name]
        if o.classification:
            arr = classify_strings(arr, o.classification, model.labels)
        entry = {"name": o.name, "datatype": datatype_of(arr.dtype), "shape": list(arr.shape)}
        if o.binary:
            if arr.dtype == object:
                blob = _bytes_tensor(arr)
            else:
                blob = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            chunks.append(blob)
        else:
            flat = arr.reshape(-1)
            if flat.dtype.kind in "fc" and not np.isfinite(flat).all():  # see _no_constant for why
                bad = int(flat.size - np.isfinite(flat).sum())
                raise NotRepresentable(
                    f"Output {o.name!r} has {bad} non-finite value(s) (NaN or Infinity), which JSON can't carry; "
                    "ask for it as binary data (outputs[].parameters.binary_data: true) to get the IEEE values")
            entry["data"] = [b.decode() for b in flat] if arr.dtype == object else flat.tolist()
        outs.append(entry)
    doc = {"model_name": model.name, "model_version": model.version, "outputs": outs}
    if req.id is not None:
        doc["id"] = req.id
    if parameters:
        doc["parameters"] = parameters
    head = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    if chunks:
        return head + b"".join(chunks), {"content-type": "application/octet-stream",
                                         HEADER_LENGTH: str(len(head))}
    return head, {"content-type": "application/json"}
