"""Parameters and MACs (multiply-accumulates per example), counted layer by layer from shapes.

Counts the layers that dominate compact models: convolutions, depthwise convolutions, dense
(on any rank), multi-head attention (projections and the two attention matmuls). Normalisation,
activations, pooling and resizing are not counted (they are element-wise and small).
"""

from __future__ import annotations

import numpy as np


def _shape(t):
    """Shape of a tensor, or of the first one (attention layers take query and value)."""
    if isinstance(t, (list, tuple)):
        t = t[0]
    return tuple(t.shape)


def _layer_macs(layer) -> int:
    from keras import layers

    try:
        in_shape, out_shape = _shape(layer.input), _shape(layer.output)
    except (AttributeError, ValueError, IndexError):  # layers without (or with an empty list of) inputs
        return 0
    if isinstance(layer, layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return int(np.prod(out_shape[1:]) * kh * kw)
    if isinstance(layer, layers.SeparableConv2D):
        kh, kw = layer.kernel_size
        return int(np.prod(out_shape[1:3]) * in_shape[-1] * (kh * kw * layer.depth_multiplier + out_shape[-1]))
    if isinstance(layer, (layers.Conv1D, layers.Conv2D)):
        k = int(np.prod(layer.kernel_size))
        return int(np.prod(out_shape[1:]) * k * in_shape[-1] // layer.groups)
    if isinstance(layer, layers.Dense):
        return int(np.prod(in_shape[1:]) * layer.units)
    if isinstance(layer, layers.MultiHeadAttention):
        t, d = in_shape[1], in_shape[-1]
        hk = layer._num_heads * layer._key_dim
        hv = layer._num_heads * (layer._value_dim or layer._key_dim)
        proj = t * d * hk * 2 + t * d * hv + t * hv * d
        attn = t * t * hk + t * t * hv
        return int(proj + attn)
    return 0


def _walk(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _walk(layer)
        else:
            yield layer


def model_stats(model) -> dict:
    """``{"params", "trainable_params", "macs"}`` for one example."""
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return {"params": int(model.count_params()), "trainable_params": trainable,
            "macs": int(sum(_layer_macs(layer) for layer in _walk(model)))}
