"""Session-wide fixtures: one tiny image classifier, built once and exported to every format.

Area-specific fixtures live in each tests/<area>/conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("EDGEKIT_CACHE", str(Path(__file__).resolve().parent.parent / ".cache" / "edgekit"))

LABELS = ["cat", "dog", "bird", "fish", "frog"]
IMAGE_SHAPE = (32, 32, 3)
PREPROCESSING = {"type": "image", "size": [32, 32], "channels": 3, "layout": "NHWC", "mean": 0.0,
                 "scale": 1 / 255.0, "color": "RGB"}


def build_tiny_cnn(seed: int = 0):
    """A MobileNet-flavoured CNN (conv, depthwise-separable blocks, BN, GAP, softmax) of ~6k parameters."""
    import keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input(IMAGE_SHAPE, name="image")
    x = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization(momentum=0.9)(x)
    x = L.ReLU(6.0)(x)
    for filters, stride in ((24, 2), (32, 1)):
        x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = L.BatchNormalization(momentum=0.9)(x)
        x = L.ReLU(6.0)(x)
        x = L.Conv2D(filters, 1, use_bias=False)(x)
        x = L.BatchNormalization(momentum=0.9)(x)
        x = L.ReLU(6.0)(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(len(LABELS), activation="softmax", name="probs")(x)
    model = keras.Model(inp, out, name="tiny_cnn")
    from edgekit.compat import settle_batchnorm

    settle_batchnorm(model, np.random.default_rng(seed + 1).random((32, *IMAGE_SHAPE), dtype=np.float32))
    return model


@pytest.fixture(scope="session")
def digits_ds_cnn(tmp_path_factory):
    """The one trained ds_cnn_s of the session (32 channels, 8 epochs on digits, by edgekit.train): the trained
    run of the train tests and the model the compress tests compress (a TrainResult: model_path, metrics,
    out_dir). BatchNorm momentum 0.9: a few epochs at 0.99 leave the moving statistics unsettled."""
    from edgekit.train import train

    out = tmp_path_factory.mktemp("runs") / "digits"
    return train("ds_cnn_s", "digits", epochs=8, out_dir=out, batch_size=32, seed=0, quiet=True,
                 model_options={"filters": 32, "bn_momentum": 0.9})


@pytest.fixture(scope="session")
def keras_classifier(tmp_path_factory) -> Path:
    """A saved .keras classifier with an edgekit sidecar (labels, image preprocessing)."""
    from edgekit.artifact import ArtifactMeta, provenance, write_meta

    d = tmp_path_factory.mktemp("keras_classifier")
    model = build_tiny_cnn()
    path = d / "tiny_cnn.keras"
    model.save(path)
    meta = ArtifactMeta(format="keras", task="image-classification", labels=list(LABELS),
                        preprocessing=dict(PREPROCESSING), provenance=provenance("tests/conftest.py"))
    write_meta(path, meta)
    return path


@pytest.fixture(scope="session")
def exported_models(keras_classifier, tmp_path_factory) -> dict[str, Path]:
    """{"tflite": Path, "onnx": Path, "openvino": Path}: the tiny classifier, exported and verified."""
    from edgekit.export import export_model

    out = tmp_path_factory.mktemp("exported")
    res = export_model(keras_classifier, ("tflite", "onnx", "openvino"), out)
    return dict(res.artifacts)


@pytest.fixture(scope="session")
def int8_tflite(keras_classifier, tmp_path_factory) -> Path:
    """A full-integer TFLite model (int8 input and output) of the tiny classifier."""
    import tensorflow as tf

    from edgekit.compat import load_keras_model

    model = load_keras_model(keras_classifier)
    rng = np.random.default_rng(3)

    def rep():
        for _ in range(32):
            yield [rng.random((1, *IMAGE_SHAPE), dtype=np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    path = tmp_path_factory.mktemp("int8") / "tiny_int8.tflite"
    path.write_bytes(conv.convert())
    return path


def run_cli(*args: str, check: bool = False, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `edgekit` entry point in a subprocess (exit codes and stderr as a user sees them)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-c", "from edgekit.cli import main; main()", *args],
                          capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"edgekit {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def cli():
    return run_cli


def invoke(argv) -> tuple[int, str, str]:
    """``edgekit ARGV`` in process: (exit code, stdout, stderr); an escaping exception is exit 1 and its
    traceback, as the real entry point would print."""
    import io
    import traceback
    from contextlib import redirect_stderr, redirect_stdout

    from edgekit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def invoke_cli():
    """:func:`invoke`: ``edgekit`` in this process (faster than :func:`run_cli`; no TensorFlow start-up per call)."""
    return invoke


def run_cli_in_process(*args: str, check: bool = False, **_ignored) -> subprocess.CompletedProcess:
    """:func:`run_cli`'s result from :func:`invoke` (in this process: no Python + TensorFlow start per call), for
    tests that read only the exit code and the output."""
    code, out, err = invoke(list(args))
    proc = subprocess.CompletedProcess(["edgekit", *args], code, out, err)
    if check and code != 0:
        raise AssertionError(f"edgekit {' '.join(map(str, args))} exited {code}:\n{out}\n{err}")
    return proc


@pytest.fixture(scope="session")
def cli_in_process():
    """:func:`run_cli_in_process`; a folder's conftest can make it that folder's ``cli``."""
    return run_cli_in_process


@pytest.fixture
def leftover_partials():
    """leftover_partials(out, stem, file) -> (stale, live): two ``.{stem}.PID.XXXX.partial`` folders in ``out``, each
    holding a half-written ``file``: one whose process has ended (an interrupted run's, to be swept) and one of
    this live process (never to be touched)."""
    def make(out: Path, stem: str, file: str):
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        stale = out / f".{stem}.{dead.pid}.abcd.partial"
        live = out / f".{stem}.{os.getpid()}.efgh.partial"
        for d in (stale, live):
            (d / file).parent.mkdir(parents=True)
            (d / file).write_bytes(b"half")
        return stale, live
    return make


@pytest.fixture(scope="session")
def byom(tmp_path_factory) -> dict:
    """A model edgekit did not train (NCHW ONNX, logits, ImageNet mean/std, no metadata), image folders of
    photo crops (flat, and in class subfolders), and its ``edgekit compress`` to int8 ONNX + OpenVINO IR
    with the fidelity gate, run through the CLI in process."""
    import json

    sys.path.insert(0, str(Path(__file__).parent / "compress"))
    from byom_models import CLASSES, export_foreign_onnx, sample_crops, train_nchw_cnn, write_folder

    d = tmp_path_factory.mktemp("byom")
    keras_model = train_nchw_cnn()
    onnx_path = export_foreign_onnx(keras_model, d / "src" / "photo_cnn.onnx")
    x, y = sample_crops(120, 72, seed=5)
    flat, labelled = write_folder(d / "flat", x), write_folder(d / "labelled", x, y)
    (d / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    code, out, err = invoke(["compress", onnx_path, "-d", flat, "--quantize", "int8", "--preprocess", "imagenet",
                             "--labels", d / "labels.txt", "--formats", "onnx,openvino", "--out", d / "out",
                             "--bench-runs", "5", "--json", d / "out.json", "-q"])
    assert code == 0, err + out
    return {"dir": d, "onnx": onnx_path, "flat": flat, "labelled": labelled, "labels": d / "labels.txt",
            "out": d / "out", "result": json.loads((d / "out.json").read_text()), "stdout": out,
            "classes": CLASSES, "keras_model": keras_model}


@pytest.fixture(scope="session")
def byom_tf(byom) -> dict:
    """The same foreign model as a SavedModel folder and as a float .tflite (no edgekit metadata)."""
    import tensorflow as tf

    d = byom["dir"] / "tf"
    sm = d / "photo_cnn_savedmodel"
    byom["keras_model"].export(str(sm), verbose=False)
    tfl = d / "photo_cnn.tflite"
    tfl.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(sm)).convert())
    return {"savedmodel": sm, "tflite": tfl}
