"""Build-side helpers shared by export, train and compress: loading Keras models with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
    """Give every BatchNormalization layer the statistics of ``x``: a randomly initialised deep CNN
    (e.g. MobileNetV3 with weights=None) in inference mode shrinks activations to ~1e-9 and outputs a
    constant softmax, so any parity check on it is vacuous."""
    recalibrate_batchnorm(model, x, trainable_only=False)


def recalibrate_batchnorm(model, x, *, batch_size: int = 256, max_examples: int = 2048, seed: int = 0,
                          trainable_only: bool = True) -> int:
    """Re-estimate every trainable BatchNorm layer's moving mean and variance as the average over
    batches of ``x`` (the population statistics, as PyTorch's ``update_bn`` does), with Dropout off.

    A moving average with momentum 0.99 needs thousands of steps to forget its initial values; on a
    few hundred steps the stored statistics are far from the data's and the model predicts one class
    at inference while training accuracy climbs. ``trainable_only`` leaves frozen (e.g. pretrained)
    layers alone. Returns the number of layers updated.
    """
    import tensorflow as tf

    k = keras()
    bns = [l for l in _all_layers(model) if isinstance(l, k.layers.BatchNormalization)
           and (l.trainable or not trainable_only)]
    if not bns or len(x) == 0:
        return 0
    drops = [l for l in _all_layers(model) if isinstance(l, k.layers.Dropout)]
    if len(x) > max_examples:
        x = x[np.sort(np.random.default_rng(seed).permutation(len(x))[:max_examples])]
    saved = [(l.momentum) for l in bns], [l.rate for l in drops]
    sums = [[np.zeros(l.moving_mean.shape, np.float64), np.zeros(l.moving_variance.shape, np.float64)] for l in bns]
    try:
        for l in bns:
            l.momentum = 0.0  # each call stores exactly this batch's statistics
        for l in drops:
            l.rate = 0.0
        # Traced once per model and kept on it: momentum 0 and no dropout are baked into the trace.
        fn = getattr(model, "_edgekit_bn_pass", None)
        if fn is None:
            fn = tf.function(lambda b: model(b, training=True), reduce_retracing=True)
            try:
                model._edgekit_bn_pass = fn
            except Exception:  # pragma: no cover  (a model that refuses attributes: trace each time)
                pass
        n = 0
        for start in range(0, len(x), batch_size):
            fn(tf.convert_to_tensor(x[start:start + batch_size]))
            w = len(x[start:start + batch_size])
            for acc, l in zip(sums, bns):
                acc[0] += w * np.asarray(l.moving_mean)
                acc[1] += w * np.asarray(l.moving_variance)
            n += w
        for acc, l in zip(sums, bns):
            l.moving_mean.assign((acc[0] / n).astype(np.float32))
            l.moving_variance.assign((acc[1] / n).astype(np.float32))
    finally:
        for l, m in zip(bns, saved[0]):
            l.momentum = m
        for l, r in zip(drops, saved[1]):
            l.rate = r
    return len(bns)


def _all_layers(model):
    for l in model.layers:
        if hasattr(l, "layers") and l.layers:
            yield from _all_layers(l)
        yield l
