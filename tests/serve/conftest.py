"""Serve fixtures: a model repository built from the session's exported classifier plus small purpose-built
models, and a factory that starts the real ``edgekit serve`` in a subprocess on a free port."""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

READY = re.compile(r"ready (http://\S+)")


def _copy_model(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    files = [src, src.with_name(src.name + ".json")]
    if src.suffix == ".xml":
        files.append(src.with_suffix(".bin"))
    for f in files:
        if f.exists():
            shutil.copy2(f, dst_dir / f.name)
    return dst_dir / src.name


def _pair_onnx(path: Path) -> Path:
    """Two inputs, two outputs, dynamic batch: sum = a + b, prod = a * b (ONNX built by hand, no TF)."""
    import onnx
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 4])
    s = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 4])
    p = helper.make_tensor_value_info("prod", TensorProto.FLOAT, ["N", 4])
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["prod"])],
                          "pair", [a, b], [s, p])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def _tflite(model, path: Path) -> Path:
    import tensorflow as tf

    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def _slow_tflite(path: Path) -> Path:
    """~tens of ms per row: enough to fill a queue on purpose (overload, timeout, drain tests)."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((96, 96, 3))
    x = inp
    for _ in range(4):
        x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2)(x)
    return _tflite(keras.Model(inp, out), path)


def _kws_tflite(path: Path, labels) -> Path | None:
    """A keyword-spotting-shaped model on MFCC features, with the audio front-end in its sidecar."""
    try:
        from edgekit.features import Frontend
    except ImportError:
        return None
    import keras

    from edgekit.artifact import ArtifactMeta, write_meta

    fe = Frontend()
    keras.utils.set_random_seed(1)
    inp = keras.Input(fe.output_shape)
    x = keras.layers.Flatten()(inp)
    out = keras.layers.Dense(len(labels), activation="softmax")(x)
    _tflite(keras.Model(inp, out), path)
    write_meta(path, ArtifactMeta(format="tflite", task="audio-classification", labels=list(labels),
                                  preprocessing=fe.preprocessing()))
    return path


@pytest.fixture(scope="session")
def serve_models(exported_models, tmp_path_factory) -> dict:
    """Paths: a repository folder (tiny v1 tflite, v2 onnx, v3 openvino; kws), pair.onnx, slow.tflite."""
    root = tmp_path_factory.mktemp("serve")
    repo = root / "repo"
    _copy_model(exported_models["tflite"], repo / "tiny" / "1")
    _copy_model(exported_models["onnx"], repo / "tiny" / "2")
    _copy_model(exported_models["openvino"], repo / "tiny" / "3")
    kws = _kws_tflite(root / "kws.tflite", ["_silence_", "_unknown_", "yes", "no"])
    if kws is not None:
        (repo / "kws").mkdir()
        _copy_model(kws, repo / "kws")
    return {
        "repo": repo,
        "tiny": {"1": next((repo / "tiny" / "1").glob("*.tflite")), "2": next((repo / "tiny" / "2").glob("*.onnx")),
                 "3": next((repo / "tiny" / "3").glob("*.xml"))},
        "kws": (repo / "kws" / "kws.tflite") if kws is not None else None,
        "pair": _pair_onnx(root / "pair.onnx"),
        "slow": _slow_tflite(root / "slow.tflite"),
    }


class Served:
    def __init__(self, proc: subprocess.Popen, url: str, ready_s: float, log: Path):
        self.proc, self.url, self.ready_s, self.log = proc, url, ready_s, log
        self.host, port = url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="session")
def start_server(tmp_path_factory):
    """start_server(*args) -> Served: the real CLI in a subprocess on 127.0.0.1, port 0, waiting for 'ready'."""
    started: list[Served] = []
    logs = tmp_path_factory.mktemp("serve-logs")

    def start(*args: str, timeout: float = 60) -> Served:
        log = logs / f"server-{len(started)}.log"
        cmd = [sys.executable, "-c", "from edgekit.cli import main; main()", "serve", *map(str, args),
               "--host", "127.0.0.1", "--port", "0"]
        t0 = time.perf_counter()
        with open(log, "w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = ""
        while time.perf_counter() - t0 < timeout:
            if sel.select(0.2):
                line = proc.stdout.readline()
                if READY.search(line) or not line:
                    break
            if proc.poll() is not None:
                break
        m = READY.search(line)
        if not m:
            proc.kill()
            raise AssertionError(f"server did not start: {line!r}\n{log.read_text()[-2000:]}")
        s = Served(proc, m.group(1), time.perf_counter() - t0, log)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop(signal.SIGKILL if s.proc.poll() is None else signal.SIGTERM, timeout=10)


@pytest.fixture(scope="session")
def server(serve_models, start_server) -> Served:
    """The main test server: the repository plus pair.onnx, a 1 MiB body limit, one thread per model."""
    return start_server(serve_models["repo"], f"pair={serve_models['pair']}", "--max-body-mb", "1",
                        "--threads", "1", "--max-queue", "256")


@pytest.fixture(scope="session")
def sessions(serve_models):
    """In-process Sessions of the same files: the reference the HTTP answers must match."""
    from edgekit.runtime import load

    out = {("tiny", v): load(p, threads=1) for v, p in serve_models["tiny"].items()}
    out[("pair", "1")] = load(serve_models["pair"], threads=1)
    return out
