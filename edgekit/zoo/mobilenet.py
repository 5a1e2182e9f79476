"""MobileNetV2 and MobileNetV3-Small from Keras applications (random init), for any small input.

Keras' applications need at least 32x32 pixels; smaller inputs (8x8 digits, 28x28 MNIST) are
resized inside the model so the exported graph takes the dataset's native size.
"""

from __future__ import annotations

from ..errors import ConfigError


def _wrap(app, input_shape, num_classes, name, min_size, dropout, bn_momentum, **app_kw):
    import keras
    from keras import layers

    if len(input_shape) != 3:
        raise ConfigError(f"{name} expects images (height, width, channels); received input shape {input_shape}")
    h, w, c = input_shape
    inp = keras.Input(input_shape, name="image")
    x = inp
    th, tw = max(h, min_size), max(w, min_size)
    if (th, tw) != (h, w):
        x = layers.Resizing(th, tw, interpolation="bilinear", name="upsample")(x)
    base = app(input_shape=(th, tw, c), include_top=False, weights=None, **app_kw)
    for layer in base.layers:
        # Applications hard-code momentum 0.999: too slow for short from-scratch trainings.
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = bn_momentum
    x = base(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name=name)


def mobilenet_v2(input_shape, num_classes, alpha: float = 0.35, min_size: int = 32, dropout: float = 0.2,
                 bn_momentum: float = 0.99):
    """MobileNetV2 with width multiplier ``alpha`` (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)."""
    import keras

    return _wrap(keras.applications.MobileNetV2, input_shape, num_classes, "mobilenet_v2", min_size, dropout,
                 bn_momentum, alpha=alpha)


def mobilenet_v3_small(input_shape, num_classes, alpha: float = 0.75, min_size: int = 32, dropout: float = 0.2,
                       bn_momentum: float = 0.99, minimalistic: bool = False):
    """MobileNetV3-Small with width multiplier ``alpha``; inputs are already scaled, so Keras'
    built-in rescaling is off."""
    import keras

    return _wrap(keras.applications.MobileNetV3Small, input_shape, num_classes, "mobilenet_v3_small", min_size,
                 dropout, bn_momentum, alpha=alpha, minimalistic=minimalistic, include_preprocessing=False)
