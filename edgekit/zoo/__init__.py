"""The model zoo: compact classifiers for images, keyword spotting and short text.

    model = build_model("ds_cnn_s", input_shape=(49, 10), num_classes=12)
    model_stats(model)  -> {"params": ..., "macs": ...}

Builders are ``"module:function"`` targets in the ``models`` registry (entry-point group
``edgekit.models``); each takes ``(input_shape, num_classes, **options)`` and returns a Keras
model whose input is exactly the dataset's example shape. Importing this package imports Keras
(its custom layers must be registered before any zoo ``.keras`` file is loaded).
"""

from __future__ import annotations

from ..errors import ConfigError
from ..registry import Registry
from . import layers as _layers  # noqa: F401  (custom layers registered, so any .keras of the zoo loads)

__all__ = ["models", "build_model", "model_stats", "describe", "load_model", "DESCRIPTIONS"]

models: Registry = Registry("model", "edgekit.models")
models.register("mobilenet_v2", "edgekit.zoo.mobilenet:mobilenet_v2")
models.register("mobilenet_v3_small", "edgekit.zoo.mobilenet:mobilenet_v3_small")
models.register("efficientnet_lite0", "edgekit.zoo.efficientnet_lite:efficientnet_lite0")
models.register("efficientnet_lite1", "edgekit.zoo.efficientnet_lite:efficientnet_lite1")
models.register("efficientnet_lite2", "edgekit.zoo.efficientnet_lite:efficientnet_lite2")
models.register("ds_cnn_s", "edgekit.zoo.ds_cnn:ds_cnn_s")
models.register("ds_cnn_m", "edgekit.zoo.ds_cnn:ds_cnn_m")
models.register("ds_cnn_l", "edgekit.zoo.ds_cnn:ds_cnn_l")
models.register("kwt", "edgekit.zoo.transformers:kwt")
models.register("text_transformer", "edgekit.zoo.transformers:text_transformer")
models.register("centernet_mnv2", "edgekit.zoo.detectors:centernet_mnv2")
models.register("centernet_lite0", "edgekit.zoo.detectors:centernet_lite0")
models.register("fomo_mnv2", "edgekit.zoo.detectors:fomo_mnv2")

# name -> (task, default input shape for listings, one line)
DESCRIPTIONS = {
    "mobilenet_v2": ("image-classification", (96, 96, 3), "MobileNetV2 (Keras applications), width multiplier alpha"),
    "mobilenet_v3_small": ("image-classification", (96, 96, 3), "MobileNetV3-Small (Keras applications), alpha"),
    "efficientnet_lite0": ("image-classification", (224, 224, 3), "EfficientNet-Lite0: ReLU6, no SE, fixed stem/head; "
                           "ImageNet weights via edgekit[pretrained]"),
    "efficientnet_lite1": ("image-classification", (240, 240, 3), "EfficientNet-Lite1 (depth 1.1); ImageNet weights"),
    "efficientnet_lite2": ("image-classification", (260, 260, 3), "EfficientNet-Lite2 (width 1.1, depth 1.2); "
                           "ImageNet weights"),
    "ds_cnn_s": ("audio-classification", (49, 10), "Hello Edge DS-CNN small: 64 channels, 4 DS blocks"),
    "ds_cnn_m": ("audio-classification", (49, 10), "Hello Edge DS-CNN medium: 172 channels, 4 DS blocks"),
    "ds_cnn_l": ("audio-classification", (49, 10), "Hello Edge DS-CNN large: 276 channels, 5 DS blocks"),
    "kwt": ("audio-classification", (49, 40), "Keyword transformer: feature frames as tokens"),
    "text_transformer": ("text-classification", (32,), "Token embedding + 2 encoder blocks"),
    "centernet_lite0": ("detection", (192, 192, 3), "Box detector: EfficientNet-Lite0 (ImageNet weights) + FPN, "
                                                     "CenterNet head at 1/4"),
    "centernet_mnv2": ("detection", (192, 192, 3), "Box detector: MobileNetV2 0.35 + FPN, CenterNet head at 1/8"),
    "fomo_mnv2": ("detection", (192, 192, 3), "FOMO-style centroids: MobileNetV2 0.35 cut at 1/8, heatmap"),
}


def _builder_params(builder) -> dict:
    """Keyword parameters of a builder, following ``**kw`` into the ``ds_cnn``-style function it wraps."""
    import inspect

    params = dict(inspect.signature(builder).parameters)
    out = {n: p for n, p in params.items() if n not in ("input_shape", "num_classes") and p.kind is not p.VAR_KEYWORD}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        inner = getattr(inspect.getmodule(builder), builder.__name__.rsplit("_", 1)[0], None)
        if callable(inner) and inner is not builder:
            out.update({n: p for n, p in inspect.signature(inner).parameters.items()
                        if n not in ("input_shape", "num_classes", "size") and p.kind is not p.VAR_KEYWORD})
        else:
            out["**"] = None
    return out


def check_model_options(name: str, options: dict) -> None:
    """Unknown option names and values of the wrong type are a ConfigError before anything is built."""
    params = _builder_params(models.get(name))
    known = sorted(n for n in params if n != "**")
    for k, v in (options or {}).items():
        if k not in params:
            if "**" in params:
                continue
            raise ConfigError(f"Model {name!r} has no option {k!r}; options: {', '.join(known) or '(none)'}")
        default = params[k].default
        if isinstance(default, bool):
            ok = isinstance(v, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        elif isinstance(default, str):
            ok = isinstance(v, str)
        else:
            ok = True
        if not ok:
            raise ConfigError(f"Model {name!r} option {k}={v!r}: expected {type(default).__name__} like the default "
                              f"{default!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            _check_option_range(name, k, v, default)


# Numeric builder options: a negative width trained for minutes, alpha=1000 took > 3 GB (issue 25).
# (low, high, low_open): floats by name; any other int option is a count or size in 0 or 1 .. 16384.
OPTION_RANGES = {"alpha": (0.0, 4.0, True), "dropout": (0.0, 0.95, False), "bn_momentum": (0.0, 1.0, False),
                 "vocab_size": (1, 1_000_000, False)}


def _check_option_range(name: str, k: str, v, default) -> None:
    import math

    if isinstance(default, float) or isinstance(v, float):
        lo, hi, open_lo = OPTION_RANGES.get(k, (0.0, 1e6, False))
    else:
        lo, hi, open_lo = OPTION_RANGES.get(k, (0 if default == 0 else 1, 16384, False))
    bad = not math.isfinite(v) or (v <= lo if open_lo else v < lo) or v > hi
    if bad:
        rng = f"{'(' if open_lo else '['}{lo}, {hi}]"
        raise ConfigError(f"Model {name!r} option {k}={v!r} is out of range; allowed: {rng}")


def build_model(name: str, input_shape, num_classes: int, **options):
    """Build zoo model ``name`` for inputs of ``input_shape`` (no batch dim) and ``num_classes`` outputs."""
    builder = models.get(name)
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2; received {num_classes}")
    check_model_options(name, options)
    try:
        return builder(tuple(int(d) for d in input_shape), int(num_classes), **options)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        opts = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "no options"
        raise ConfigError(f"Model {name!r} can't be built for input {tuple(input_shape)} with {opts}: {e}") from None


def model_stats(model) -> dict:
    """Parameters and multiply-accumulates for one example (see :mod:`edgekit.zoo.stats`)."""
    from .stats import model_stats as _stats

    return _stats(model)


def load_model(path):
    """``keras.saving.load_model`` with edgekit's custom layers registered."""
    import keras

    return keras.saving.load_model(str(path), compile=False)


def describe(input_shape=None, names=None) -> list[dict]:
    """Each model built for its default (or the given) input with params and MACs."""
    rows = []
    for n in names or models.names():
        task, shape, what = DESCRIPTIONS.get(n, ("-", input_shape, ""))
        shape = tuple(input_shape) if input_shape else shape
        ncls = 12 if task == "audio-classification" else 10
        m = build_model(n, shape, ncls)
        st = model_stats(m)
        rows.append({"name": n, "task": task, "input": "x".join(map(str, shape)), "params": st["params"],
                     "macs": st["macs"], "description": what})
    return rows
