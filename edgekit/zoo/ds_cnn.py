"""DS-CNN keyword spotters from "Hello Edge" (Zhang et al., 2017), as in ARM's ML-KWS and MLPerf Tiny.

Input: a feature map ``(frames, coefficients)``, e.g. 49 x 10 MFCCs; a channel axis is added inside.
"""

from __future__ import annotations

# (filters, first-conv strides, strides of each depthwise-separable block)
SIZES = {
    "s": (64, (2, 2), [(1, 1)] * 4),
    "m": (172, (2, 1), [(2, 2), (1, 1), (1, 1), (1, 1)]),
    "l": (276, (2, 1), [(2, 2), (1, 1), (1, 1), (1, 1), (1, 1)]),
}


def ds_cnn(input_shape, num_classes, size="s", dropout: float = 0.2, bn_momentum: float = 0.99, filters=None,
           normalize: bool = True):
    import keras
    from keras import layers

    if len(input_shape) not in (2, 3):
        from ..errors import ConfigError

        raise ConfigError(f"ds_cnn expects (frames, coefficients) features; received input shape {input_shape}")
    n, first_strides, blocks = SIZES[size]
    n = filters or n
    inp = keras.Input(input_shape, name="features")
    x = inp
    # normalize: per-window mean over frames removed (zoo.layers.TimeMeanNormalization). On a 20-word folder
    # of synthesizer voices it never trained on, test top-1 0.65 -> 0.80 (measured, 3 augmented copies).
    # Every format's int8 keeps it and the first conv float (compress.quantize.FLOAT_NAME_PATTERNS): quantized,
    # NNCF lost 3.3 points on it and missed the demo's gate, and TFLite up to 1.3 on the demo (0.3 with it float).
    if normalize and len(input_shape) == 2:  # audio features (frames, coefficients), not images
        from .layers import TimeMeanNormalization

        x = TimeMeanNormalization(name="time_mean_norm")(x)
    x = x if len(input_shape) == 3 else layers.Reshape((*input_shape, 1))(x)

    def bn_relu(t):
        return layers.ReLU()(layers.BatchNormalization(momentum=bn_momentum)(t))

    x = bn_relu(layers.Conv2D(n, (10, 4), strides=first_strides, padding="same", use_bias=False)(x))
    x = layers.Dropout(dropout)(x)
    for strides in blocks:
        x = bn_relu(layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(x))
        x = bn_relu(layers.Conv2D(n, 1, use_bias=False)(x))
    x = layers.Dropout(min(0.5, dropout * 2))(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name=f"ds_cnn_{size}")


def ds_cnn_s(input_shape, num_classes, **kw):
    """DS-CNN-S: 64 channels, about 24k parameters and 2.7M MACs on 49x10 MFCCs."""
    return ds_cnn(input_shape, num_classes, "s", **kw)


def ds_cnn_m(input_shape, num_classes, **kw):
    """DS-CNN-M: 172 channels."""
    return ds_cnn(input_shape, num_classes, "m", **kw)


def ds_cnn_l(input_shape, num_classes, **kw):
    """DS-CNN-L: 276 channels, one more block."""
    return ds_cnn(input_shape, num_classes, "l", **kw)
