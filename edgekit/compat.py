"""Build-side helpers shared by export, train and compress: loading Keras models with clear errors."""

from __future__ import annotations

from pathlib import Path

from .errors import MissingDependencyError, ModelError, first_line


def keras():
    try:
        import keras
    except ImportError:
        raise MissingDependencyError("keras", "train", what="Loading Keras models") from None
    return keras


def load_keras_model(path: str | Path, compile: bool = False):
    """Load a .keras/.h5 file; edgekit's custom layers are registered first."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"No such model file: {p}")
    k = keras()
    try:  # custom layers (zoo transformers, front-ends) register themselves on import
        import edgekit.zoo  # noqa: F401
    except Exception:
        pass
    try:
        return k.models.load_model(str(p), compile=compile)
    except Exception as e:
        msg = first_line(e)
        raise ModelError(f"{p} could not be loaded as a Keras model ({msg[:300]})") from None


def settle_batchnorm(model, x) -> None:
    """Set every BatchNormalization layer's moving statistics to those of batch ``x``.

    A randomly initialised deep CNN (e.g. MobileNetV3 with weights=None) in inference mode
    shrinks activations to ~1e-9 and outputs a constant softmax, so any parity check on it is
    vacuous. One forward pass in training mode with momentum 0 gives it real statistics.
    """
    k = keras()
    bns = [l for l in _all_layers(model) if isinstance(l, k.layers.BatchNormalization)]
    saved = [l.momentum for l in bns]
    for l in bns:
        l.momentum = 0.0
    try:
        # Layer by layer would be exact; one pass is close enough and keeps this cheap.
        for _ in range(2):
            model(x, training=True)
    finally:
        for l, m in zip(bns, saved):
            l.momentum = m


def _all_layers(model):
    for l in model.layers:
        if hasattr(l, "layers") and l.layers:
            yield from _all_layers(l)
        yield l
