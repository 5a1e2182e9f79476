"""Backend and Session: the one interface the benchmark, server, demos and deploy use.

A Session takes and returns float arrays; int8/uint8 quantized inputs and outputs are
quantized/dequantized here with the tensor's scale and zero point (``raw=True`` skips that).
Device side: NumPy only, never TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, DataError

GENERIC_DEVICES = ("cpu", "gpu", "npu", "auto")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple  # ints, None where the dimension is dynamic
    dtype: np.dtype
    scale: float | None = None  # per-tensor affine quantization: real = scale * (q - zero_point)
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.scale != 0 and self.dtype.kind in "iu"

    def with_quant(self, q: dict | None) -> "TensorInfo":
        """This tensor with per-tensor scale/zero point (from artifact metadata) if it is an integer one."""
        if not q or self.dtype.kind not in "iu":
            return self
        return TensorInfo(self.name, self.shape, self.dtype, float(q["scale"]), int(q["zero_point"]))

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        q = f" (scale={self.scale:.4g}, zero_point={self.zero_point})" if self.quantized else ""
        return f"{self.name}: [{dims}] {self.dtype.name}{q}"

    def to_dict(self) -> dict:
        d = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype.name}
        if self.quantized:
            d.update(scale=self.scale, zero_point=self.zero_point)
        return d


def _shape_str(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


class Session:
    """A loaded model. Subclasses implement ``_run(feed) -> list of arrays`` in output order."""

    backend: str = ""

    def __init__(self, path: Path, device: str, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo],
                 meta=None, threads: int | None = None, detail: dict | None = None):
        self.path = Path(path)
        self.device = device
        self.inputs: list[TensorInfo] = list(inputs)
        self.outputs: list[TensorInfo] = list(outputs)
        self.meta = meta
        self.threads = threads
        self.detail = detail or {}
        self._in_by_name = {t.name: t for t in self.inputs}
        self._out_index = {t.name: i for i, t in enumerate(self.outputs)}
        # A model whose batch dimension is fixed (e.g. 1) is run chunk by chunk for larger batches.
        self._fixed_batch = [t.shape[0] if t.shape and t.shape[0] is not None else None for t in self.inputs]
        # Precomputed for run(), which is called per inference: its own cost is the overhead over the runtime.
        self._any_fixed = any(b is not None for b in self._fixed_batch)
        self._out_names = [t.name for t in self.outputs]
        self._out_quant = [t.quantized for t in self.outputs]
        self._checked: set = set()  # (shape, dtype) of single arrays already accepted as they are

    # -- public API ------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return list(self.meta.labels) if self.meta is not None and self.meta.labels else []

    def run(self, inputs: np.ndarray | Mapping[str, Any] | Sequence[np.ndarray], *, raw: bool = False,
            outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the model. ``inputs``: one array (single-input models), a list in input order, or a dict by name.

        Returns a dict of output name -> array (float unless ``raw``).
        """
        feed = self._prepare(inputs, raw)
        batch = self._split_batch(feed) if self._any_fixed else None
        if batch is None:
            results = self._run(feed)
        else:
            n, step = batch
            parts = [self._run({k: v[i:i + step] for k, v in feed.items()}) for i in range(0, n, step)]
            results = [np.concatenate([p[j] for p in parts], axis=0) for j in range(len(self.outputs))]
        return self._pick(results, outputs, raw)

    def _pick(self, results: list, outputs, raw: bool = False) -> dict[str, np.ndarray]:
        """The named outputs (all by default) of one backend run, dequantized unless ``raw``."""
        if outputs is None and (raw or not any(self._out_quant)):
            return dict(zip(self._out_names, results))
        out = {}
        for name in (self._out_names if outputs is None else outputs):
            idx = self._out_index.get(name)
            if idx is None:
                raise DataError(f"Unknown output {name!r}. Available: {', '.join(self._out_index)}")
            out[name] = results[idx] if raw or not self._out_quant[idx] else self._dequantize(self.outputs[idx], results[idx])
        return out

    def run_rows(self, parts: Sequence[Mapping[str, np.ndarray]], *, outputs: Sequence[str] | None = None
                 ) -> dict[str, np.ndarray]:
        """One run over several feeds stacked along the batch axis (a server's batch of requests): the same
        results as ``run`` on the concatenated feed. Backends that can write the rows straight into the
        model's input buffer override ``_run_rows`` and save a copy of the whole batch."""
        if len(parts) == 1:
            return self.run(parts[0], outputs=outputs)
        fast = self._run_rows(parts, outputs)
        if fast is not None:
            return fast
        return self.run({t.name: np.concatenate([p[t.name] for p in parts]) for t in self.inputs}, outputs=outputs)

    def _run_rows(self, parts, outputs):
        """Backends: the ``run_rows`` result without building the concatenated feed, or None (not here)."""
        return None

    def predict(self, x, *, raw: bool = False) -> np.ndarray:
        """The first output for one input array."""
        return self.run(x, raw=raw)[self.outputs[0].name]

    def close(self) -> None:  # backends release native resources here
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self) -> dict:
        return {
            "path": str(self.path),
            "backend": self.backend,
            "device": self.device,
            "threads": self.threads,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            **self.detail,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path.name} backend={self.backend} device={self.device}>"

    # -- for backends ----------------------------------------------------------------------
    def _run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def sample_input(self, batch: int = 1, seed: int = 0, raw: bool = False) -> dict[str, np.ndarray]:
        """Random inputs of the right shape and dtype (dynamic dims become ``batch`` or 1)."""
        rng = np.random.default_rng(seed)
        feed = {}
        for i, t in enumerate(self.inputs):
            shape = [(batch if j == 0 else 1) if d is None else d for j, d in enumerate(t.shape)]
            if raw and t.dtype.kind in "iu":
                info = np.iinfo(t.dtype)
                feed[t.name] = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(t.dtype)
            elif t.dtype.kind in "iu" and not t.quantized:
                feed[t.name] = rng.integers(0, 10, size=shape).astype(t.dtype)
            elif t.dtype == np.bool_:
                feed[t.name] = rng.random(shape) > 0.5
            else:
                feed[t.name] = rng.random(shape, dtype=np.float32)
        return feed

    # -- internals -------------------------------------------------------------------------
    def _prepare(self, inputs, raw: bool) -> dict[str, np.ndarray]:
        if type(inputs) is np.ndarray and len(self.inputs) == 1:  # the common call, checked once per shape
            t = self.inputs[0]
            key = (inputs.shape, inputs.dtype)
            if key in self._checked:
                return {t.name: inputs}
            a = self._convert(t, inputs, raw)
            if a is inputs and len(self._checked) < 64:
                self._checked.add(key)
            return {t.name: a}
        if isinstance(inputs, Mapping):
            missing = [t.name for t in self.inputs if t.name not in inputs]
            extra = [k for k in inputs if k not in self._in_by_name]
            if missing or extra:
                msg = []
                if missing:
                    msg.append(f"missing input(s) {', '.join(missing)}")
                if extra:
                    msg.append(f"unknown input(s) {', '.join(map(str, extra))}")
                raise DataError(f"{'; '.join(msg).capitalize()}. The model takes: "
                                + "; ".join(t.describe() for t in self.inputs))
            items = [(t, inputs[t.name]) for t in self.inputs]
        elif isinstance(inputs, (list, tuple)) and (len(self.inputs) > 1 or (
                len(inputs) == 1 and isinstance(inputs[0], np.ndarray))):
            if len(inputs) != len(self.inputs):
                raise DataError(f"Expected {len(self.inputs)} inputs, received {len(inputs)}. The model takes: "
                                + "; ".join(t.describe() for t in self.inputs))
            items = list(zip(self.inputs, inputs))
        else:
            if len(self.inputs) != 1:
                raise DataError(f"This model has {len(self.inputs)} inputs; pass a dict by name or a list. "
                                "It takes: " + "; ".join(t.describe() for t in self.inputs))
            items = [(self.inputs[0], inputs)]
        return {t.name: self._convert(t, v, raw) for t, v in items}

    def _convert(self, t: TensorInfo, value, raw: bool) -> np.ndarray:
        a = value if isinstance(value, np.ndarray) else np.asarray(value)
        if a.ndim != len(t.shape):
            raise DataError(f"Input {t.name!r} expects shape {_shape_str(t.shape)} {t.dtype.name}; "
                            f"received {_shape_str(a.shape)} {a.dtype.name}")
        for i, (got, want) in enumerate(zip(a.shape, t.shape)):
            if want is not None and got != want and not (i == 0 and self._batch_splittable(got, want)):
                raise DataError(f"Input {t.name!r} expects shape {_shape_str(t.shape)} {t.dtype.name}; "
                                f"received {_shape_str(a.shape)} {a.dtype.name}")
        if a.dtype == t.dtype:
            return a
        if t.quantized and not raw and a.dtype.kind == "f":
            info = np.iinfo(t.dtype)
            q = np.round(a / t.scale) + t.zero_point
            return np.clip(q, info.min, info.max).astype(t.dtype)
        if a.dtype.kind == "f" and t.dtype.kind in "iu" and not t.quantized:
            raise DataError(f"Input {t.name!r} expects {t.dtype.name}; received {a.dtype.name} "
                            "(refusing to truncate floats to integers)")
        if a.dtype.kind in "biuf" and t.dtype.kind in "biuf":
            return a.astype(t.dtype)
        raise DataError(f"Input {t.name!r} expects {t.dtype.name}; received {a.dtype.name}")

    @staticmethod
    def _batch_splittable(got: int, want: int) -> bool:
        return want >= 1 and got > want and got % want == 0

    def _split_batch(self, feed: dict[str, np.ndarray]):
        sizes = []
        for t, fixed in zip(self.inputs, self._fixed_batch):
            if fixed is None:
                continue
            n = feed[t.name].shape[0]
            if n != fixed:
                sizes.append((n, fixed))
        if not sizes:
            return None
        if len({s for s in sizes}) != 1:
            raise DataError("All inputs must share one batch size; received " + ", ".join(str(s[0]) for s in sizes))
        return sizes[0]

    @staticmethod
    def _dequantize(t: TensorInfo, a: np.ndarray) -> np.ndarray:
        if t.quantized:
            return (a.astype(np.float32) - np.float32(t.zero_point)) * np.float32(t.scale)
        return a


class Backend:
    """One runtime. Subclasses are registered in ``edgekit.runtime.backends`` by name."""

    name: str = ""
    suffixes: tuple[str, ...] = ()
    package: str = ""  # pip package that provides it
    extra: str = ""  # edgekit extra that installs it

    @classmethod
    def available(cls) -> bool:
        try:
            cls.version()
            return True
        except Exception:
            return False

    @classmethod
    def version(cls) -> str:
        raise NotImplementedError

    @classmethod
    def devices(cls) -> list[dict]:
        """What this backend sees on this machine: [{"device": ..., "kind": ..., "detail": ...}]."""
        raise NotImplementedError

    @classmethod
    def device_names(cls) -> list[str]:
        """Accepted device strings (generic ones plus backend-specific)."""
        return list(GENERIC_DEVICES)

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads: int | None = None, meta=None, **options) -> Session:
        raise NotImplementedError

    @classmethod
    def check_device(cls, device: str, extra_ok=()) -> str:
        d = device.strip()
        if d.lower() in GENERIC_DEVICES:
            return d.lower()
        if d in extra_ok or any(d.startswith(p) for p in extra_ok if p.endswith(":")):
            return d
        raise ConfigError(f"Unknown device {device!r} for backend {cls.name}. Allowed: "
                          + ", ".join(cls.device_names()))


def io_quantization(meta) -> dict:
    """Per-tensor int8 I/O params recorded in metadata: formats whose files don't carry them
    (ONNX, OpenVINO) take float tensors unless a compression pass stored {"io": {name: ...}}."""
    return ((meta.quantization or {}).get("io") if meta is not None else None) or {}


def check_threads(threads) -> int | None:
    if threads is None:
        return None
    try:
        n = int(threads)
    except (TypeError, ValueError):
        raise ConfigError(f"threads must be a positive integer; received {threads!r}") from None
    if n < 1:
        raise ConfigError(f"threads must be a positive integer; received {threads!r}")
    return n
