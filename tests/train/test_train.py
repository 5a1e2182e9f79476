"""edgekit train: the run folder, resuming, bad input; edgekit eval on every format."""

import json

import numpy as np
import pytest

from edgekit.artifact import read_meta
from edgekit.errors import ConfigError, DataError
from edgekit.evaluate import evaluate, evaluate_predictions
from edgekit.train import train


@pytest.fixture
def _cli(cli_in_process):
    """These tests read only exit codes and output: ``edgekit`` in process (no TensorFlow start per call)."""
    return lambda *args: cli_in_process(*map(str, args))


def test_run_folder(digits_run):
    out = digits_run.out_dir
    names = {p.name for p in out.iterdir()}
    assert names == {"model.keras", "model.keras.json", "history.json", "metrics.json", "curves.png", "confusion.png"}
    assert not list(out.parent.glob(".*.partial"))
    for png in ("curves.png", "confusion.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((out / "metrics.json").read_text())
    conf = np.array(m["confusion"])
    assert conf.shape == (10, 10) and conf.sum() == m["samples"] == 359
    assert m["top1"] == pytest.approx(np.trace(conf) / conf.sum())
    assert m["top1"] > 0.6  # chance is 0.1
    assert 1 <= m["best_epoch"] <= m["epochs_run"] == 8  # the budget of tests/conftest.py's digits_ds_cnn
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["loss"]) == len(hist["val_accuracy"]) == 8
    assert hist["loss"][-1] < hist["loss"][0]
    meta = read_meta(out / "model.keras")
    assert meta.labels == [str(i) for i in range(10)] and meta.task == "image-classification"
    assert meta.preprocessing["type"] == "image" and meta.preprocessing["scale"] == pytest.approx(1 / 16)
    assert meta.inputs[0]["shape"] == [None, 8, 8, 1]
    assert meta.provenance["data"] == "digits" and meta.metrics["top1"] == m["top1"]


def test_eval_keras_matches_training_metrics(digits_run):
    r = evaluate(digits_run.model_path)  # dataset taken from the metadata
    assert r["data"] == "digits" and r["split"] == "test"
    assert r["top1"] == pytest.approx(digits_run.metrics["top1"])
    assert r["confusion"] == digits_run.metrics["confusion"]


@pytest.mark.parametrize("fmt", ["tflite", "onnx", "openvino"])
def test_eval_every_format(digits_run, digits_exports, fmt):
    r = evaluate(digits_exports[fmt], "digits")
    assert r["format"] == fmt and r["samples"] == 359
    assert abs(r["top1"] - digits_run.metrics["top1"]) <= 2 / 359  # float exports: at most a rounding flip or two
    assert set(r["per_class"]) == {str(i) for i in range(10)}


def test_eval_cli_json_and_table(digits_exports, _cli):
    r = _cli("eval", digits_exports["onnx"], "--data", "digits", "--json", "-")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["format"] == "onnx" and len(d["confusion"]) == 10
    r = _cli("eval", digits_exports["tflite"], "--data", "digits", "--split", "val")
    assert r.returncode == 0, r.stderr
    assert "top-1" in r.stdout and "confusion matrix" in r.stdout


def test_eval_wrong_data_is_clear(digits_exports, _cli):
    r = _cli("eval", digits_exports["tflite"], "--data", "mnist-5k")
    assert r.returncode == 2 and "shape" in r.stderr and "Traceback" not in r.stderr


def test_resume_after_interruption(tmp_path):
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    out = tmp_path / "run"
    kw = dict(epochs=2, batch_size=64, limit=200, quiet=True, model_options={"bn_momentum": 0.9})
    with pytest.raises(KeyboardInterrupt):
        train("ds_cnn_s", "digits", out_dir=out, callbacks=[Interrupt()], **kw)
    assert not out.exists()  # never looks finished
    partial = tmp_path / ".run.partial"
    assert json.loads((partial / "state.json").read_text())["epoch"] == 1
    r = train("ds_cnn_s", "digits", out_dir=out, **kw)
    assert r.resumed_from_epoch == 1
    assert len(r.history["loss"]) == 2 and r.metrics["epochs_run"] == 2
    assert not partial.exists() and (out / "model.keras").exists()


def test_bad_input_leaves_no_run_folder(tmp_path, _cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    with pytest.raises(DataError, match="empty"):
        train("ds_cnn_s", empty, out_dir=out, quiet=True)
    with pytest.raises(ConfigError, match="Unknown model 'resnet'"):
        train("resnet", "digits", out_dir=out, quiet=True)
    assert not out.exists() and not list(tmp_path.glob(".*partial"))
    bad = tmp_path / "bad.csv"
    bad.write_text("words,label\nhi,a\n")
    r = _cli("train", "--model", "text_transformer", "--data", bad, "--out", out)
    assert r.returncode == 2 and "bad.csv" in r.stderr and "text" in r.stderr
    assert not out.exists()


def test_existing_run_folder_is_not_overwritten(digits_run):
    with pytest.raises(ConfigError, match="already exists"):
        train("ds_cnn_s", "digits", out_dir=digits_run.out_dir, quiet=True)


def test_text_transformer_on_csv(tmp_path):
    p = tmp_path / "t.csv"
    rows = ["text,label"] + [f"good nice great {i},pos" for i in range(30)] + [f"bad awful poor {i},neg" for i in range(30)]
    p.write_text("\n".join(rows) + "\n")
    r = train("text_transformer", p, epochs=3, out_dir=tmp_path / "txt", batch_size=8, quiet=True)
    assert r.metrics["top1"] == 1.0  # the two classes share no words
    meta = read_meta(r.model_path)
    assert meta.preprocessing["type"] == "text" and "good" in meta.preprocessing["vocab"]
    assert evaluate(r.model_path, p)["top1"] == 1.0


def test_audio_run_keeps_frontend_for_eval(tmp_path):
    pytest.importorskip("espeakng_loader")
    opts = {"reps": 1, "augment_copies": 1, "frontend": {"kind": "logmel", "num_mel_bins": 20}}
    r = train("kwt", "keywords", epochs=1, out_dir=tmp_path / "kws", data_options=opts, limit=120, quiet=True,
              model_options={"depth": 1, "dim": 16, "mlp_dim": 32})
    meta = read_meta(r.model_path)
    assert meta.preprocessing["frontend"]["num_mel_bins"] == 20 and meta.inputs[0]["shape"] == [None, 49, 20]
    # no data options given: eval rebuilds the same features from the metadata
    res = evaluate(r.model_path, limit=50)
    assert res["data"] == "keywords" and res["samples"] == 50


def test_mirrored_strategy_runs(tmp_path):
    r = train("ds_cnn_s", "digits", epochs=1, out_dir=tmp_path / "m", limit=64, strategy="mirrored", quiet=True)
    assert (r.out_dir / "model.keras").exists()
    with pytest.raises(ConfigError, match="Unknown strategy"):
        train("ds_cnn_s", "digits", out_dir=tmp_path / "n", strategy="horovod")


def test_evaluate_predictions_by_hand():
    probs = np.eye(3)[[0, 1, 2, 2]]
    r = evaluate_predictions(probs, np.array([0, 1, 1, 2]), ["a", "b", "c"])
    assert r["top1"] == 0.75 and r["per_class"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert r["confusion"] == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
