"""Quantization-aware fine-tuning, the last remedy when post-training int8 misses the gate.

tfmot's QAT wrappers reject Keras 3 models, so this fine-tunes a copy whose Conv2D, DepthwiseConv2D
and Dense kernels pass through a symmetric per-output-channel int8 fake-quantizer (straight-through
gradient). Per-output-channel scales commute with BatchNorm folding (the folded kernel is the same
channel scaled), so the grid seen in training is the one the converters use. The fine-tuned weights
go back into the plain architecture, which is then quantized post-training as usual: weights that
sit on the int8 grid lose nothing there, and activations are calibrated as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class QATConfig:
    epochs: int = 2
    learning_rate: float = 3e-4
    batch_size: int = 64
    seed: int = 0


def qat_available() -> bool:
    return True


def _fake_quant(w, axis: int):
    """Symmetric int8 fake quantization per channel along ``axis``, straight-through gradient."""
    from keras import ops

    red = [i for i in range(len(w.shape)) if i != (axis % len(w.shape))]
    scale = ops.maximum(ops.max(ops.abs(w), axis=red, keepdims=True), 1e-8) / 127.0
    scale = ops.stop_gradient(scale)
    q = ops.clip(ops.round(w / scale), -127.0, 127.0) * scale
    return w + ops.stop_gradient(q - w)


def _layer_classes():
    import keras
    from keras import ops

    class QConv2D(keras.layers.Conv2D):
        @property
        def kernel(self):
            return _fake_quant(self._kernel, axis=-1)

    class QDense(keras.layers.Dense):
        @property
        def kernel(self):
            return _fake_quant(self._kernel, axis=-1)

    class QDepthwiseConv2D(keras.layers.DepthwiseConv2D):
        def call(self, inputs):
            out = ops.depthwise_conv(inputs, _fake_quant(self.kernel, axis=2), strides=self.strides,
                                     padding=self.padding, dilation_rate=self.dilation_rate,
                                     data_format=self.data_format)
            if self.use_bias:
                out = ops.add(out, ops.reshape(self.bias, (1,) * (self.rank + 1) + (-1,)))
            return self.activation(out) if self.activation is not None else out

    return {keras.layers.Conv2D: QConv2D, keras.layers.Dense: QDense, keras.layers.DepthwiseConv2D: QDepthwiseConv2D}


def qat_model(model, ds, cfg: QATConfig | None = None, say: Callable[[str], None] = lambda s: None):
    """A plain copy of ``model`` whose weights were fine-tuned under int8 weight fake-quantization."""
    import keras

    from ._fit import finetune
    from .prune import clone_with_weights

    cfg = cfg or QATConfig()
    flat = clone_with_weights(model)
    swap = _layer_classes()

    def clone_fn(layer):
        cls = swap.get(type(layer))
        return cls.from_config(layer.get_config()) if cls else layer.__class__.from_config(layer.get_config())

    q = keras.models.clone_model(flat, clone_function=clone_fn)
    q.set_weights(flat.get_weights())
    finetune(q, ds, epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, seed=cfg.seed,
             say=say, what="quantization-aware fine-tuning")
    plain = clone_with_weights(flat)
    plain.set_weights(q.get_weights())
    return plain
