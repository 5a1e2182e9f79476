"""Training that holds up on data unlike the built-ins (issue 13): BatchNorm statistics right at
inference at any step count, audio augmentation on folders, transfer from a backbone edgekit trained,
and bad input refused before any work."""

import json

import numpy as np
import pytest

from edgekit.errors import ConfigError, DataError
from edgekit.train import auto_epochs, train


@pytest.fixture(scope="session")
def shapes_run(shapes_folder, tmp_path_factory):
    # 112 training images, 7 steps an epoch: BatchNorm's moving averages alone (momentum 0.99) are still
    # half their initial values after 70 steps; the statistics re-estimated each epoch are the data's.
    return train("ds_cnn_s", shapes_folder, epochs=10, batch_size=16, out_dir=tmp_path_factory.mktemp("s") / "r",
                 quiet=True)


def test_a_small_foreign_image_folder_trains_far_above_chance(shapes_run):
    m = shapes_run.metrics
    assert m["samples"] == 32 and m["split"] == "test"
    assert m["val_top1"] >= 0.6 and m["top1"] >= 0.6, m  # chance is 0.25
    hist = shapes_run.history
    assert len(hist["val_accuracy"]) == m["epochs_run"] == 10


def test_checkpoint_metric_is_the_exported_models(shapes_run, shapes_folder):
    """The best epoch's val_accuracy is what the saved model scores in inference mode on val."""
    from edgekit.data import load_dataset
    from edgekit.zoo import load_model

    ds = load_dataset(shapes_folder)
    xv, yv = ds.split("val")
    p = load_model(shapes_run.model_path).predict(xv, verbose=0)
    assert np.mean(p.argmax(1) == yv) == pytest.approx(shapes_run.metrics["val_top1"])


def test_recalibrate_batchnorm_stores_population_statistics():
    import keras

    from edgekit.compat import recalibrate_batchnorm

    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    h = keras.layers.Dense(4, use_bias=False)(inp)
    bn = keras.layers.BatchNormalization(momentum=0.99)
    out = keras.layers.Dense(2)(keras.layers.Dropout(0.5)(bn(h)))
    model = keras.Model(inp, out)
    x = np.random.default_rng(1).normal(3.0, 2.0, (1000, 6)).astype(np.float32)
    assert recalibrate_batchnorm(model, x, batch_size=100, max_examples=1000) == 1
    hx = x @ np.asarray(model.layers[1].kernel)
    np.testing.assert_allclose(np.asarray(bn.moving_mean), hx.mean(0), rtol=1e-4, atol=1e-4)
    # the average of per-batch variances: within a few percent of the population variance
    np.testing.assert_allclose(np.asarray(bn.moving_variance), hx.var(0), rtol=0.05)
    assert bn.momentum == 0.99 and model.layers[-2].rate == 0.5  # restored


def test_kws_folder_of_non_speech_sounds_trains_with_audio_augmentation(tones_folder, tmp_path):
    r = train("ds_cnn_s", tones_folder, epochs=8, out_dir=tmp_path / "k", quiet=True)
    m = r.metrics
    assert m["split"] == "test" and m["samples"] == 24
    assert m["top1"] >= 0.75 and m["val_top1"] >= 0.75, m  # chance is 0.25
    from edgekit.data import load_dataset

    ds = load_dataset(tones_folder)
    assert ds.info["augment"]["copies"] == 3 and ds.info["background_noise_files"] == 1
    n_train_clips = 4 * 36 - 24 - 24  # 6 of 36 per word are listed for validation, 6 for testing
    assert len(ds.split("train")[1]) == 3 * n_train_clips  # three augmented copies of every training clip
    assert len(load_dataset(tones_folder, augment=False).split("train")[1]) == n_train_clips


def test_audio_augmentation_options_reach_the_loader_and_are_checked(tones_folder):
    from edgekit.data import load_dataset

    ds = load_dataset(tones_folder, augment={"copies": 1, "speed": [0.9, 1.1], "keep_clean": True})
    assert ds.info["augment"]["copies"] == 1 and ds.info["augment"]["keep_clean"]
    with pytest.raises(ConfigError, match="allowed: copies"):
        load_dataset(tones_folder, augment={"copys": 2})
    with pytest.raises(ConfigError, match="speed"):
        load_dataset(tones_folder, augment={"speed": [3, 4]})


def test_auto_epoch_budget_fits_the_data():
    assert auto_epochs(2800, 64) == 91          # 44 steps an epoch: ~4,000 steps
    assert auto_epochs(100, 64) == 120          # tiny sets: capped
    assert auto_epochs(200_000, 64) == 12       # big sets: at least 12 epochs


@pytest.mark.heavy  # ~60 s of training here; CI runs it with -m heavy
def test_transfer_from_a_backbone_edgekit_trained(digits_backbone, gray_shapes, tmp_path):
    from edgekit.artifact import read_meta
    from edgekit.transfer import backbone
    from edgekit.zoo import load_model

    r = train("mobilenet_v3_small", gray_shapes, epochs=3, freeze_epochs=1, batch_size=16, out_dir=tmp_path / "t",
              quiet=True, model_options={"alpha": 0.35, "min_size": 32}, weights=digits_backbone.model_path)
    assert r.metrics["weights"] == str(digits_backbone.model_path) and r.metrics["epochs_run"] == 3
    assert read_meta(r.model_path).provenance["weights"] == str(digits_backbone.model_path)
    src, dst = backbone(load_model(digits_backbone.model_path)), backbone(load_model(r.model_path))
    # BatchNorm stayed frozen (inference mode) with everything it was trained with, statistics included: an
    # image backbone is not re-estimated on the few target images (edgekit.transfer); the convolutions were
    # fine-tuned, and the head fit on frozen features came first
    assert r.metrics["head_fit"]["train_accuracy"] > 0
    bn = [i for i, l in enumerate(src.layers) if type(l).__name__ == "BatchNormalization"][0]
    for a, b in zip(src.layers[bn].get_weights(), dst.layers[bn].get_weights()):  # gamma, beta, mean, variance
        np.testing.assert_array_equal(a, b)
    conv = [i for i, l in enumerate(src.layers) if type(l).__name__ == "Conv2D"][-1]
    assert not np.array_equal(src.layers[conv].get_weights()[0], dst.layers[conv].get_weights()[0])


def test_weights_of_another_architecture_are_refused(gray_shapes, tmp_path):
    from edgekit.zoo import build_model

    # The refusal reads the weights file's architecture before any training: an untrained model of another
    # width is enough (a trained one cost ~40 s of this default run).
    other = tmp_path / "alpha035.keras"
    build_model("mobilenet_v3_small", (8, 8, 1), 10, alpha=0.35, min_size=32).save(str(other))
    with pytest.raises(ConfigError, match="doesn't match mobilenet_v3_small"):
        train("mobilenet_v3_small", gray_shapes, epochs=2, out_dir=tmp_path / "x", quiet=True,
              model_options={"alpha": 0.75, "min_size": 32}, weights=other)
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x*"))


@pytest.mark.parametrize("model,opts,weights,match", [
    ("ds_cnn_s", {}, "imagenet", "ImageNet weights exist for mobilenet_v2, mobilenet_v3_small"),
    ("mobilenet_v3_small", {"alpha": 0.35}, "imagenet", "alpha 0.75, 1.0; received alpha=0.35"),
    ("mobilenet_v2", {"resolution": 100}, "imagenet", "resolution 96, 128, 160, 192, 224"),
    ("mobilenet_v2", {}, "nope/model.keras", "does not exist"),
])
def test_bad_weights_fail_before_any_data_is_loaded(model, opts, weights, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        train(model, "no-such-dataset", out_dir=tmp_path / "r", model_options=opts, weights=weights)


@pytest.fixture
def offline_keras_cache(tmp_path, monkeypatch):
    """KERAS_HOME in tmp_path and every download refused at once (a proxy nothing listens on)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    return tmp_path / "keras" / "models"


def test_imagenet_weights_offline_name_the_file_and_where_to_put_it(tmp_path, offline_keras_cache):
    with pytest.raises(DataError) as e:
        train("mobilenet_v2", "digits", out_dir=tmp_path / "r", weights="imagenet")
    msg = str(e.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5" in msg
    assert str(offline_keras_cache) in msg and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_imagenet_weights_placed_in_the_keras_cache_are_loaded_frozen_then_fine_tuned(tmp_path, offline_keras_cache):
    """The whole --weights imagenet path, offline: a file in the published format (Keras 2 HDF5, the exact
    name Keras' applications fetch) placed where the offline error says. Its values are random, not
    ImageNet's; what is checked is that Keras' own loader takes it from the cache, the frozen phase keeps
    it, and fine-tuning then moves the convolutions but not BatchNorm's scale and shift."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from edgekit.transfer import backbone
    from edgekit.zoo import load_model

    offline_keras_cache.mkdir(parents=True)
    keras.utils.set_random_seed(7)
    published = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None)
    rng = np.random.default_rng(7)
    for layer in published.layers:  # BatchNorm away from its init, so "kept" can't hold by accident
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape), m, v])
    with h5py.File(offline_keras_cache / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, published)
    kinds = [type(l).__name__ for l in published.layers]
    conv = len(kinds) - 1 - kinds[::-1].index("Conv2D")
    seen = []  # the last convolution's kernel at each epoch's end (the frozen epoch, then the fine-tuning one)

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(backbone(self.model).layers[conv].get_weights()[0].copy())

    r = train("mobilenet_v2", "digits", epochs=2, freeze_epochs=1, limit=240, out_dir=tmp_path / "r", quiet=True,
              weights="imagenet", callbacks=[Watch()])
    assert r.metrics["weights"] == "imagenet"
    got = backbone(load_model(r.model_path))
    assert got.layers[0].output.shape[1:3] == (96, 96)  # built at the weights' resolution
    bn = kinds.index("BatchNormalization")
    np.testing.assert_array_equal(published.layers[bn].get_weights()[0], got.layers[bn].get_weights()[0])  # gamma
    src = published.layers[conv].get_weights()[0]
    assert len(seen) == 2 and np.array_equal(seen[0], src) and not np.array_equal(seen[1], src)  # frozen, then tuned
    # the deliverable is the checkpoint validation chose: the head fit (0), the frozen epoch (1) or the tuned one (2)
    np.testing.assert_array_equal(got.layers[conv].get_weights()[0], seen[1] if r.metrics["best_epoch"] == 2 else src)
    first = kinds.index("Conv2D")  # and nothing was re-initialized: the first conv stays near the file's
    a, b = published.layers[first].get_weights()[0], got.layers[first].get_weights()[0]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


def test_bad_training_input_is_refused_before_work(tmp_path, gray_shapes):
    with pytest.raises(ConfigError, match="learning_rate must be a finite number > 0"):
        train("ds_cnn_s", "digits", out_dir=tmp_path / "a", learning_rate=-1)
    with pytest.raises(ConfigError, match="expected float"):
        train("mobilenet_v3_small", "digits", out_dir=tmp_path / "b", model_options={"alpha": "abc"})
    with pytest.raises(ConfigError, match="apply to audio datasets"):
        train("mobilenet_v3_small", gray_shapes, out_dir=tmp_path / "c", augment={"copies": 2})
    tiny = tmp_path / "tiny"
    for c, n in (("a", 12), ("b", 2)):
        (tiny / c).mkdir(parents=True)
        for i in range(n):
            (tiny / c / f"{i}.png").write_bytes((gray_shapes / "circle" / "000.png").read_bytes())
    with pytest.raises(ConfigError, match="fewer than 3 training examples: b "):
        train("ds_cnn_s", tiny, out_dir=tmp_path / "d", quiet=True)
    assert not (tmp_path / "d").exists() and not list(tmp_path.glob(".*.partial"))


def test_train_cli_reports_the_test_size_and_exits_2_on_bad_input(invoke_cli, tmp_path):
    # Only exit codes and output are read: in process (a subprocess per call cost a TensorFlow start each).
    code, out, err = invoke_cli(["train", "-m", "ds_cnn_s", "-d", "digits", "--out", tmp_path / "r", "--lr", "-1"])
    assert code == 2 and "learning_rate must be" in err and "Traceback" not in err
    code, out, err = invoke_cli(["train", "-m", "ds_cnn_s", "-d", "digits", "--out", tmp_path / "r", "--no-augment",
                                 "--augment-option", "copies=1"])
    assert code == 2 and "contradict" in err
    code, out, err = invoke_cli(["train", "-m", "ds_cnn_s", "-d", "digits", "-e", "2", "--limit", "300", "--out",
                                 tmp_path / "ok", "-q", "--json", tmp_path / "m.json"])
    assert code == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    assert f"({m['correct']}/{m['samples']};" in out and m["epochs_budget"] == 2
