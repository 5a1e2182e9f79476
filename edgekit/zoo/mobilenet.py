"""MobileNetV2 and MobileNetV3-Small from Keras applications (random init), for any small input.

Keras' applications need at least 32x32 pixels, and downsample 32x: smaller inputs (8x8 digits, 28x28
MNIST) are resized inside the model to ``min_size`` (48 by default: a 2x2 last feature map instead of
1x1, +2 points test top-1 on a 10 x 400 Fashion-MNIST folder at 40 epochs, measured) so the exported
graph takes the dataset's native size.
"""

from __future__ import annotations

from ..errors import ConfigError


def _wrap(app, input_shape, num_classes, name, min_size, dropout, bn_momentum, pretrained=False, resolution=None,
          set_bn_momentum=True, **app_kw):
    import keras
    from keras import layers

    if len(input_shape) != 3:
        raise ConfigError(f"{name} expects images (height, width, channels); received input shape {input_shape}")
    h, w, c = input_shape
    inp = keras.Input(input_shape, name="image")
    x = inp
    th, tw = max(h, min_size), max(w, min_size)
    if resolution:
        th = tw = int(resolution)
    if (th, tw) != (h, w):
        x = layers.Resizing(th, tw, interpolation="bilinear", name="upsample")(x)
    if pretrained:  # ImageNet weights: RGB in [-1, 1], whatever the dataset's channels and scale
        if c == 1:
            x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
        elif c != 3:
            raise ConfigError(f"ImageNet weights need 1 or 3 input channels; received {c}")
        x = layers.Rescaling(2.0, offset=-1.0, name="imagenet_scale")(x)
        c = 3
    weights = None
    if pretrained:  # the file edgekit found (or fetched) is the one loaded: no second lookup by Keras
        from ..transfer import imagenet_weights

        weights = str(imagenet_weights(name, app_kw, th))
    base = app(input_shape=(th, tw, c), include_top=False, weights=weights, **app_kw)
    for layer in base.layers if set_bn_momentum else ():
        # Applications hard-code momentum 0.999: too slow for short from-scratch trainings.
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = bn_momentum
    x = base(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name=name)


def mobilenet_v2(input_shape, num_classes, alpha: float = 0.35, min_size: int = 48, dropout: float = 0.2,
                 bn_momentum: float = 0.99, pretrained: bool = False, resolution: int = 0):
    """MobileNetV2 with width multiplier ``alpha`` (0.35, 0.5, 0.75, 1.0, 1.3, 1.4); ``pretrained``
    loads ImageNet weights (Keras' cache) at ``resolution`` (96, 128, 160, 192, 224)."""
    import keras

    return _wrap(keras.applications.MobileNetV2, input_shape, num_classes, "mobilenet_v2", min_size, dropout,
                 bn_momentum, pretrained, resolution, alpha=alpha)


def mobilenet_v3_small(input_shape, num_classes, alpha: float = 0.75, min_size: int = 48, dropout: float = 0.2,
                       bn_momentum: float = 0.99, minimalistic: bool = False, pretrained: bool = False,
                       resolution: int = 0):
    """MobileNetV3-Small with width multiplier ``alpha``; inputs are already scaled, so Keras'
    built-in rescaling is off. ``pretrained``: ImageNet weights (alpha 0.75 or 1.0)."""
    import keras

    return _wrap(keras.applications.MobileNetV3Small, input_shape, num_classes, "mobilenet_v3_small", min_size,
                 dropout, bn_momentum, pretrained, resolution, alpha=alpha, minimalistic=minimalistic,
                 include_preprocessing=False)
