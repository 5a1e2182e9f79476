"""Read a legacy (non-zip) PyTorch state-dict file with NumPy alone: no PyTorch, no arbitrary code.

    state = read_state_dict("efficientnet-lite0-57934424.pth")   # {"_conv_stem.weight": ndarray, ...}

The legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``) is a run of pickles: a
magic number, the protocol version, a system-info dict, the object itself (its tensors name their
storages through ``persistent_id``), the list of storage keys, then each storage's raw little-endian
bytes after an 8-byte element count. The object pickle is read by an unpickler that allows only
``collections.OrderedDict`` and torch's tensor-rebuild functions (re-implemented here on NumPy) and
storage types: any other global is refused, so a hostile file can't run code.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .errors import DataError

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
            "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
            "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class _Storage:
    """A placeholder for one storage until its bytes are read after the object pickle."""

    def __init__(self, key: str, dtype):
        self.key, self.dtype, self.array = key, np.dtype(dtype), None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def resolve(self) -> np.ndarray:
        flat = self.storage.array
        item = flat.itemsize
        if self.offset < 0 or any(d < 0 for d in self.size) or any(s < 0 for s in self.stride):
            raise DataError(f"tensor of storage {self.storage.key!r}: negative offset, size or stride")
        last = self.offset + sum((d - 1) * s for d, s in zip(self.size, self.stride)) if all(self.size) else -1
        if last >= len(flat):
            raise DataError(f"tensor of storage {self.storage.key!r} reaches past its {len(flat)} elements")
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=tuple(s * item for s in self.stride))
        return np.array(view)  # a copy: contiguous, owns its memory


def _rebuild_tensor(storage, storage_offset, size, stride, *rest):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *rest):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages: dict):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGES:
            return name  # only ever used as a storage tag in persistent_load
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a state-dict file")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and pid[1] in STORAGES):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        key = str(pid[2])
        if key not in self.storages:
            self.storages[key] = _Storage(key, STORAGES[pid[1]])
        return self.storages[key]


def _restricted_load(f):
    """A plain pickle of numbers, strings and lists only (the header pickles and the key list)."""
    class _Plain(pickle.Unpickler):
        def find_class(self, module, name):
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed here")
    return _Plain(f).load()


def read_state_dict(path) -> "OrderedDict[str, np.ndarray]":
    """The tensors of a legacy PyTorch state-dict file as NumPy arrays; DataError if it isn't one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"Can't read PyTorch weights {path}: {e}") from None
    f = io.BytesIO(data)
    try:
        if _restricted_load(f) != MAGIC:
            raise DataError(f"{path} is not a legacy PyTorch file (bad magic number)")
        if _restricted_load(f) != PROTOCOL:
            raise DataError(f"{path}: unsupported PyTorch serialization protocol")
        _restricted_load(f)  # sys info: endianness, type sizes
        storages: dict = {}
        obj = _Unpickler(f, storages).load()
        keys = _restricted_load(f)
        for key in keys:
            st = storages.get(str(key))
            if st is None:
                raise DataError(f"{path}: storage {key!r} is not referenced by any tensor")
            (n,) = struct.unpack("<q", f.read(8))
            nbytes = n * st.dtype.itemsize
            raw = f.read(nbytes)
            if n < 0 or len(raw) != nbytes:
                raise DataError(f"{path} is cut short (storage {key!r})")
            st.array = np.frombuffer(raw, dtype=st.dtype.newbyteorder("<"))
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path} is not a readable PyTorch state dict ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a state dict")
    out = OrderedDict()
    for k, v in obj.items():
        if isinstance(v, _Tensor):
            if v.storage.array is None:
                raise DataError(f"{path}: tensor {k!r} has no storage data")
            out[str(k)] = v.resolve()
    return out
