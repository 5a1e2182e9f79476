"""Every command, every path and number option, given what a careless user gives: exit code 2, one
``Error:`` line that names what was wrong, no traceback, and nothing written anywhere (issue 17, class
"tracebacks for user mistakes" and "bad input accepted").

Commands run in process through ``edgekit.cli.main`` (exit codes and messages as a user sees them,
TensorFlow imported once); the server and deploy commands run in a subprocess with a timeout, so a
bad value that is wrongly accepted shows up as a server that starts, not a hung test. Rows for items
other engineers own are ``xfail(strict=True)``: when their fix lands the row passes and strict xfail
says to flip it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


LABELS5 = ["a", "b", "c", "d", "e"]


# --- assets: a tiny model, exported through the CLI; files that are wrong in one way each --------
@pytest.fixture(scope="module")
def assets(keras_classifier, int8_tflite, invoke_cli, tmp_path_factory):
    from edgekit.artifact import sidecar_path
    from edgekit.data.audio import write_wav

    d = tmp_path_factory.mktemp("assets")
    shutil.copy(keras_classifier, d / "m.keras")  # the 5-class tiny CNN of tests/conftest.py
    shutil.copy(sidecar_path(keras_classifier), sidecar_path(d / "m.keras"))
    # The good path of --labels: as many labels as outputs replaces the sidecar's.
    code, out, err = invoke_cli(["export", str(d / "m.keras"), "--to", "tflite", "--out", str(d / "exp"), "-q",
                             "--labels", ",".join(LABELS5)])
    assert code == 0, err
    tfl = d / "exp" / "model.tflite"
    assert json.loads((d / "exp" / "model.tflite.json").read_text())["labels"] == LABELS5
    for name, side in {"labels_str": lambda s: {**s, "labels": "cat"},
                       "labels_nested": lambda s: {**s, "labels": [["a"], "b"]},
                       "meta_list": lambda s: [s],
                       "sparsity_str": lambda s: {**s, "sparsity": "half"}}.items():
        (d / name).mkdir()
        shutil.copy(tfl, d / name / "model.tflite")
        (d / name / "model.tflite.json").write_text(json.dumps(side(json.loads((d / "exp" / "model.tflite.json")
                                                                             .read_text()))))
    _png_bomb_folder(d / "bombs")
    os.mkfifo(d / "fifo.tflite")  # nobody ever writes it: reading would hang
    (d / "zero.tflite").symlink_to("/dev/zero")  # reading would never end
    (d / "meta_nested").mkdir()
    shutil.copy(tfl, d / "meta_nested" / "model.tflite")
    (d / "meta_nested" / "model.tflite.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "meta_deep").mkdir()  # parses (under json's ~1,000 levels), but copying or printing it ran out of stack
    shutil.copy(tfl, d / "meta_deep" / "model.tflite")
    (d / "meta_deep" / "model.tflite.json").write_text('{"extra": ' + '{"a": ' * 900 + "1" + "}" * 901)
    (d / "latin1").mkdir()
    shutil.copy(tfl, d / "latin1" / "model.tflite")
    (d / "latin1" / "model.tflite.json").write_bytes(b'{"labels": ["caf\xe9"]}')
    (d / "afile").write_text("x")
    (d / "adir").mkdir()
    (d / "inv_str.yaml").write_text("hosts: abc\n")
    (d / "inv_port.yaml").write_text("hosts:\n  - host: pi@127.0.0.1\n    port: 99999\n")
    (d / "inv_serve_port.yaml").write_text("hosts:\n  - host: pi@127.0.0.1\n    serve_port: 99999\n")
    (d / "mine").mkdir()  # a user's folder that is not a run folder
    (d / "mine" / "precious.txt").write_text("keep me")
    (d / "notrain.csv").write_text("text,label,split\nhello there,a,test\nbye now,b,test\ngood day,a,val\n")
    (d / "bad.yaml").write_bytes(b"name: caf\xe9\n")
    write_wav(d / "tone.wav", np.zeros(16000, np.float32))
    foreign = _foreign_onnx_assets(d)
    shutil.copy(int8_tflite, d / "int8.tflite")
    (d / "labels3.txt").write_text("a\nb\nc\n")
    (d / "labels_dup.txt").write_text("a\na\nb\nc\n")
    (d / "labels_deep.json").write_text("[" * 100_000 + "]" * 100_000)
    return {"dir": str(d), "keras": str(d / "m.keras"), "tflite": str(tfl), "file": str(d / "afile"),
            **foreign, "int8tflite": str(d / "int8.tflite"), "labels3": str(d / "labels3.txt"),
            "labels_dup": str(d / "labels_dup.txt"), "labels_deep": str(d / "labels_deep.json"),
            "folder": str(d / "adir"), "mine": str(d / "mine"), "bombs": str(d / "bombs"),
            "fifo": str(d / "fifo.tflite"), "zero": str(d / "zero.tflite"),
            **{k: str(d / f"{k}.yaml") for k in ("inv_str", "inv_port", "inv_serve_port")},
            "csv": str(d / "notrain.csv"), "badyaml": str(d / "bad.yaml"),
            "wav": str(d / "tone.wav"), **{k: str(d / k / "model.tflite") for k in
                                           ("labels_str", "labels_nested", "meta_list", "sparsity_str", "latin1",
                                            "meta_nested", "meta_deep")}}


def _png_bomb_folder(root: Path) -> Path:
    """Two classes of three images; one more declares 13,400 x 13,400 pixels (179.6 MP, over Pillow's 178 MP
    bomb limit) in its header: 100 bytes on disk."""
    import struct
    import zlib

    from PIL import Image

    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)

    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):  # enough for a calibration set
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / c / f"ok{i}.png")
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 13400, 13400, 8, 2, 0, 0, 0))
    (root / "b" / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00"))
                                          + chunk(b"IEND", b""))
    return root


def _foreign_onnx_assets(d: Path) -> dict:
    """Small ONNX classifiers edgekit did not train, each wrong for compress in one way (and one that is fine)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def model(shape=("N", 3, 8, 8), opset=13, inputs=1):
        w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
        ins = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, list(shape)) for i in range(inputs)]
        nodes = ([helper.make_node("Add", ["x0", "x1"], ["xs"])] if inputs == 2 else []) + [
            helper.make_node("Conv", ["xs" if inputs == 2 else "x0", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])]
        g = helper.make_graph(nodes, "g", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [w])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 7
        return m

    out = {}
    for key, kw in {"onnx": {}, "onnx2in": {"inputs": 2}, "onnxdyn": {"shape": ("N", 3, "H", "W")},
                    "onnx9": {"opset": 9}}.items():
        onnx.save(model(**kw), str(d / f"{key}.onnx"))
        out[key] = str(d / f"{key}.onnx")
    return out


def invoke_process(argv: list[str], timeout: float) -> tuple[int, str, str]:
    try:
        p = subprocess.run([sys.executable, "-c", "from edgekit.cli import main; main()", *argv],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # a bad value accepted: the command went on to do the work
        return -1, str(e.stdout or ""), f"(still running after {timeout:.0f} s)\n{e.stderr or ''}"
    return p.returncode, p.stdout, p.stderr


def snapshot(*roots: Path) -> dict:
    return {str(p): (p.is_dir(), None if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns))
            for r in roots for p in [r, *r.rglob("*")]}


# --- the table ---------------------------------------------------------------------------------
# (id, argv with {placeholders} from ``assets`` (``{work}`` is the case's empty folder), what the error
# line must say (regex, case-insensitive), options). Options: proc=SECONDS runs it in a subprocess.
def owned(who: str):
    return pytest.mark.xfail(strict=True, reason=f"owned by {who}")


RECIPE = "the recipe/compress engineer"

CASES = [
    # export
    ("export-out-file", ["export", "{keras}", "--out", "{file}"], r"--out.*is a file"),
    ("export-out-under-file", ["export", "{keras}", "--out", "{file}/sub"], r"--out.*afile.*is a file"),
    ("export-name-dotdot", ["export", "{keras}", "--to", "tflite", "--out", "out", "--name", "../../evil"], r"--name"),
    ("export-name-absolute", ["export", "{keras}", "--to", "tflite", "--out", "out", "--name", "{work}/evil"],
     r"--name"),
    ("export-name-empty", ["export", "{keras}", "--out", "out", "--name", ""], r"--name"),
    ("export-labels-count", ["export", "{keras}", "--to", "tflite", "--out", "out", "--labels", "a,b"],
     r"2 labels.*5 outputs"),
    ("export-labels-file-missing", ["export", "{keras}", "--out", "out", "--labels", "@nope.txt"], r"labels file"),
    ("export-labels-file-folder", ["export", "{keras}", "--out", "out", "--labels", "@{folder}"], r"labels file"),
    ("export-samples-0", ["export", "{keras}", "--out", "out", "--samples", "0"], r"--samples.*>= 1"),
    ("export-atol-negative", ["export", "{keras}", "--out", "out", "--atol", "-1"], r"--atol.*>= 0"),
    ("export-atol-nan", ["export", "{keras}", "--out", "out", "--atol", "nan"], r"--atol.*finite"),
    ("export-batch-0", ["export", "{keras}", "--out", "out", "--batch", "0"], r"--batch"),
    ("export-opset-0", ["export", "{keras}", "--out", "out", "--opset", "0"], r"--opset"),
    ("export-format", ["export", "{keras}", "--out", "out", "--to", "tflitee"], r"tflitee"),
    ("export-model-missing", ["export", "nope.keras", "--out", "out"], r"nope\.keras"),
    ("export-json-folder", ["export", "{keras}", "--out", "out", "--json", "{folder}"], r"--json.*folder"),
    ("export-already-tflite", ["export", "{tflite}", "--out", "out"], r"already a tflite"),
    # compress: values the flags' types accept but the command can't honour (issue 23)
    ("compress-bench-runs-negative", ["compress", "{keras}", "-d", "digits", "--out", "out", "--quantize", "int8",
                                      "--bench-runs", "-1"], r"--bench-runs.*>= 0.*-1"),
    ("compress-max-drop-inf", ["compress", "{keras}", "-d", "digits", "--out", "out", "--quantize", "int8",
                               "--max-drop", "inf"], r"--max-drop.*finite.*inf"),
    ("compress-gate-split", ["compress", "{keras}", "-d", "digits", "--out", "out", "--quantize", "int8",
                             "--gate-split", "bogus"], r"bogus.*test, val"),
    ("compress-epochs-0", ["compress", "{keras}", "-d", "digits", "--out", "out", "--prune", "0.5", "--epochs", "0"],
     r"--epochs.*>= 1.*0"),
    # info
    ("info-json-folder", ["info", "{tflite}", "--json", "{folder}"], r"--json.*folder"),
    ("info-json-slash", ["info", "{tflite}", "--json", "new/"], r"--json.*folder"),
    ("info-json-under-file", ["info", "{tflite}", "--json", "{file}/x.json"], r"--json.*afile.*is a file"),
    ("info-model-missing", ["info", "nope.tflite"], r"nope\.tflite"),
    ("info-model-suffix", ["info", "{file}"], r"model file type"),
    ("info-labels-not-list", ["info", "{labels_str}"], r"labels.*must be a list"),
    ("info-labels-nested", ["info", "{labels_nested}"], r"labels\[0\]"),
    ("info-meta-not-object", ["info", "{meta_list}"], r"metadata.*JSON object"),
    ("info-sparsity-string", ["info", "{sparsity_str}"], r"sparsity"),
    ("info-meta-not-utf8", ["info", "{latin1}"], r"metadata"),
    ("info-device", ["info", "{tflite}", "--device", "warp"], r"warp"),
    # devices, zoo
    ("devices-json-folder", ["devices", "--json", "{folder}"], r"--json.*folder"),
    ("devices-profiles-json-folder", ["devices", "--profiles", "--json", "{folder}"], r"--json.*folder"),
    ("zoo-input-text", ["zoo", "list", "--input", "a,b"], r"--input"),
    ("zoo-input-zero", ["zoo", "list", "--input", "0,0,3"], r"input"),
    ("zoo-models", ["zoo", "list", "--models", "nosuch"], r"nosuch"),
    ("zoo-json-folder", ["zoo", "list", "--json", "{folder}"], r"--json.*folder"),
    # bench
    ("bench-json-folder", ["bench", "{tflite}", "--json", "{folder}"], r"--json.*folder"),
    ("bench-runs-0", ["bench", "{tflite}", "--runs", "0"], r"--runs"),
    ("bench-batch-0", ["bench", "{tflite}", "--batch", "0"], r"--batch"),
    ("bench-warmup-negative", ["bench", "{tflite}", "--warmup", "-1"], r"--warmup"),
    ("bench-duration-0", ["bench", "{tflite}", "--duration", "0"], r"--duration"),
    ("bench-duration-nan", ["bench", "{tflite}", "--duration", "nan"], r"--duration"),
    ("bench-threads-0", ["bench", "{tflite}", "--threads", "0"], r"--threads"),
    ("bench-threads-text", ["bench", "{tflite}", "--threads", "two"], r"--threads"),
    ("bench-device-empty", ["bench", "{tflite}", "--device", ","], r"--device"),
    ("bench-model-missing", ["bench", "nope.tflite", "--no-isolate"], r"nope\.tflite"),
    ("bench-bad-sidecar", ["bench", "{labels_str}", "--no-isolate", "--runs", "1"], r"labels.*must be a list"),
    # data
    ("data-list-json-folder", ["data", "list", "--json", "{folder}"], r"--json.*folder"),
    ("data-info-limit-0", ["data", "info", "digits", "--limit", "0"], r"--limit.*>= 1"),
    ("data-info-limit-negative", ["data", "info", "digits", "--limit", "-3"], r"--limit.*>= 1"),
    ("data-info-csv-no-train", ["data", "info", "{csv}"], r"no 'train' rows"),
    ("data-info-missing-path", ["data", "info", "no/such/folder"], r"no/such/folder"),
    ("data-info-name", ["data", "info", "digitz"], r"digitz"),
    ("data-info-option-syntax", ["data", "info", "digits", "-o", "seed"], r"key=value"),
    ("data-info-option-unknown", ["data", "info", "digits", "-o", "nosuch=1"], r"nosuch"),
    ("data-info-json-folder", ["data", "info", "digits", "--json", "{folder}"], r"--json.*folder"),
    ("data-prepare-name", ["data", "prepare", "digitz"], r"digitz"),
    # eval
    ("eval-limit-0", ["eval", "{tflite}", "--data", "digits", "--limit", "0"], r"--limit.*>= 1"),
    ("eval-limit-negative", ["eval", "{tflite}", "--data", "digits", "--limit", "-3"], r"--limit.*>= 1"),
    ("eval-threads-0", ["eval", "{tflite}", "--data", "digits", "--threads", "0"], r"--threads"),
    ("eval-json-folder", ["eval", "{tflite}", "--data", "digits", "--json", "{folder}"], r"--json.*folder"),
    ("eval-model-missing", ["eval", "nope.tflite", "--data", "digits"], r"nope\.tflite"),
    ("eval-data-missing", ["eval", "{tflite}", "--data", "no/such.csv"], r"no/such\.csv"),
    ("eval-no-data", ["eval", "{tflite}"], r"--data"),
    ("eval-split", ["eval", "{tflite}", "--data", "digits", "--split", "testt"], r"testt"),
    ("eval-bad-sidecar", ["eval", "{labels_str}", "--data", "digits"], r"labels.*must be a list"),
    ("eval-csv-no-train", ["eval", "{tflite}", "--data", "{csv}"], r"no 'train' rows"),
    # compress
    ("compress-out-file", ["compress", "{keras}", "-d", "digits", "--quantize", "int8", "--out", "{file}"],
     r"--out.*is a file"),
    ("compress-json-folder", ["compress", "{keras}", "-d", "digits", "--quantize", "int8", "--out", "out",
                              "--json", "{folder}"], r"--json.*folder"),
    ("compress-prune-range", ["compress", "{keras}", "-d", "digits", "--prune", "1.5", "--out", "out"], r"--prune"),
    ("compress-calibration-samples-0", ["compress", "{keras}", "-d", "digits", "--quantize", "int8",
                                        "--calibration-samples", "0", "--out", "out"], r"--calibration-samples"),
    ("compress-calibration-missing", ["compress", "{keras}", "-d", "digits", "--quantize", "int8",
                                      "--calibration", "nope.npy", "--out", "out"], r"nope\.npy"),
    ("compress-epochs-negative", ["compress", "{keras}", "-d", "digits", "--prune", "0.5", "--epochs", "-1",
                                  "--out", "out"], r"--epochs"),
    ("compress-quantize", ["compress", "{keras}", "-d", "digits", "--quantize", "int4", "--out", "out"], r"int4"),
    ("compress-quantize-fp32", ["compress", "{keras}", "-d", "digits", "--quantize", "int8,fp32", "--out", "out"],
     r"--quantize.*'fp32'.*int8, int16x8, fp16, int8-weights"),
    ("compress-quantize-empty", ["compress", "{keras}", "-d", "digits", "--quantize", ",", "--out", "out"],
     r"--quantize.*empty"),
    ("compress-precision-format", ["compress", "{keras}", "-d", "digits", "--quantize", "int8,int16x8", "--formats",
                                   "tflite,openvino", "--out", "out"],
     r"OpenVINO IR cannot make int16x8.*Allowed for openvino: int8, fp16, int8-weights"),
    ("compress-int8-io-fp16", ["compress", "{keras}", "-d", "digits", "--quantize", "int8,fp16", "--int8-io",
                               "--out", "out"], r"--int8-io.*int8 alone.*Allowed with --int8-io: int8"),
    ("compress-mixed-no-quantize", ["compress", "{keras}", "-d", "digits", "--prune", "0.5", "--mixed-precision",
                                    "--out", "out"], r"--mixed-precision needs --quantize"),
    ("compress-model-missing", ["compress", "nope.keras", "-d", "digits", "--quantize", "int8", "--out", "out"],
     r"nope\.keras"),
    ("compress-max-drop-negative", ["compress", "{keras}", "-d", "digits", "--quantize", "int8", "--max-drop", "-1",
                                    "--out", "out"], r"--max-drop"),
    ("compress-name-dotdot", ["compress", "{keras}", "-d", "digits", "--quantize", "int8", "--name", "../evil",
                              "--out", "out"], r"--name"),
    # compress: models edgekit did not train (issue 16)
    ("compress-onnx-several-inputs", ["compress", "{onnx2in}", "-d", "{folder}", "--quantize", "int8", "--out",
                                      "out"], r"2 inputs.*--input"),
    ("compress-onnx-input-unknown", ["compress", "{onnx}", "-d", "{folder}", "--quantize", "int8", "--input", "nope",
                                     "--out", "out"], r"--input 'nope'.*x0"),
    ("compress-onnx-dynamic-size", ["compress", "{onnxdyn}", "-d", "{folder}", "--quantize", "int8", "--out", "out"],
     r"dynamic spatial.*--preprocess size"),
    ("compress-onnx-opset", ["compress", "{onnx9}", "-d", "{folder}", "--quantize", "int8", "--out", "out"],
     r"opset 9.*>= 10"),
    ("compress-tflite-already-int8", ["compress", "{int8tflite}", "-d", "{folder}", "--quantize", "int8", "--out",
                                      "out"], r"already an int8"),
    ("compress-prune-foreign", ["compress", "{onnx}", "-d", "{folder}", "--prune", "0.5", "--out", "out"],
     r"--prune needs a trainable Keras"),
    ("compress-distill-foreign", ["compress", "{onnx}", "-d", "{folder}", "--distill-from", "{keras}", "--quantize",
                                  "int8", "--out", "out"], r"--distill-from needs a trainable Keras"),
    ("compress-foreign-no-quantize", ["compress", "{onnx}", "-d", "{folder}", "--out", "out"],
     r"Nothing to do.*--quantize int8"),
    ("compress-onnx-to-tflite", ["compress", "{onnx}", "-d", "{folder}", "--quantize", "int8", "--formats", "tflite",
                                 "--out", "out"], r"tflite from an ONNX model: not available"),
    ("compress-tflite-to-tflite", ["compress", "{tflite}", "-d", "{folder}", "--quantize", "int8", "--formats",
                                   "tflite", "--out", "out"], r"needs the source graph"),
    ("compress-preprocess-layout", ["compress", "{onnx}", "-d", "{folder}", "--quantize", "int8", "--preprocess",
                                    "layout=CHW", "--out", "out"], r"layout 'CHW'"),
    ("compress-preprocess-size-conflict", ["compress", "{onnx}", "-d", "{folder}", "--quantize", "int8",
                                           "--preprocess", "size=224", "--out", "out"], r"size=224x224.*8x8"),
    ("compress-labels-count", ["compress", "{onnx}", "-d", "{folder}", "--quantize", "int8", "--labels", "{labels3}",
                               "--out", "out"], r"3 labels.*4 outputs"),
    ("compress-labels-missing", ["compress", "{onnx}", "-d", "{folder}", "--quantize", "int8", "--labels", "nope.txt",
                                 "--out", "out"], r"Labels file nope\.txt"),
    ("compress-labels-on-keras", ["compress", "{keras}", "-d", "digits", "--quantize", "int8", "--labels", "x.txt",
                                  "--out", "out"], r"--labels is for models edgekit did not train"),
    ("compress-foreign-no-images", ["compress", "{onnx}", "-d", "{folder}", "--quantize", "int8", "--out", "out"],
     r"has no images"),
    ("compress-foreign-fp16", ["compress", "{onnx}", "-d", "{folder}", "--quantize", "int8,fp16", "--out", "out"],
     r"did not train takes --quantize int8 only"),
    ("compress-foreign-data-missing", ["compress", "{onnx}", "-d", "nope", "--quantize", "int8", "--out", "out"],
     r"Image folder nope does not exist"),
    # run
    ("run-out-file", ["run", "kws-ds-cnn", "--out", "{file}"], r"--out.*is a file"),
    ("run-dry-run-out-file", ["run", "kws-ds-cnn", "--dry-run", "--out", "{file}"], r"--out.*is a file"),
    ("run-json-folder", ["run", "kws-ds-cnn", "--dry-run", "--json", "{folder}"], r"--json.*folder"),
    ("run-recipe-missing", ["run", "nope.yaml"], r"nope\.yaml"),
    ("run-precision-format", ["run", "kws-ds-cnn", "--dry-run", "--set", "steps.1.precision=fp16,int16x8"],
     r"steps\.1\.precision.*OpenVINO IR cannot make int16x8.*formats that make int16x8: tflite, onnx"),
    ("run-precision-fp32", ["run", "kws-ds-cnn", "--dry-run", "--set", "steps.1.precision=fp32"],
     r"steps\.1\..*precision.*fp32.*int8, int16x8, fp16, int8-weights"),
    ("run-int8-io-fp16", ["run", "kws-ds-cnn", "--dry-run", "--set", "steps.1.precision=int8,fp16", "--set",
                          "steps.1.int8_io=true"], r"steps\.1\.precision.*--int8-io"),
    ("run-set-path", ["run", "kws-ds-cnn", "--dry-run", "--set", "train.nosuch=1"], r"train\.nosuch"),
    ("run-set-value", ["run", "kws-ds-cnn", "--dry-run", "--set", "train.epochs=0"], r"train\.epochs"),
    ("run-recipe-not-utf8", ["run", "{badyaml}", "--dry-run"], r"bad\.yaml"),
    ("run-dry-run-data-option", ["run", "kws-ds-cnn", "--dry-run", "--set", "data.options={{\"nosuch\": 1}}"],
     r"nosuch"),
    # demo
    ("demo-out-file", ["demo", "--out", "{file}"], r"--out.*is a file"),
    ("demo-camera-top-k-0", ["demo", "camera", "-m", "{tflite}", "--top-k", "0", "--headless"], r"--top-k"),
    ("demo-camera-max-frames-0", ["demo", "camera", "-m", "{tflite}", "--max-frames", "0"], r"--max-frames"),
    ("demo-camera-threads-0", ["demo", "camera", "-m", "{tflite}", "--threads", "0"], r"--threads"),
    ("demo-camera-model-missing", ["demo", "camera", "-m", "nope.tflite", "--headless", "-s", "{folder}"],
     r"nope\.tflite"),
    ("demo-camera-json-folder", ["demo", "camera", "-m", "{tflite}", "--json", "{folder}"], r"--json.*folder"),
    ("demo-mic-threshold-0", ["demo", "mic", "-m", "{tflite}", "--wav", "{wav}", "--threshold", "0"],
     r"threshold.*\(0, 1\]"),
    ("demo-mic-threshold-nan", ["demo", "mic", "-m", "{tflite}", "--wav", "{wav}", "--threshold", "nan"],
     r"threshold.*\(0, 1\]"),
    ("demo-mic-hop-0", ["demo", "mic", "-m", "{tflite}", "--wav", "{wav}", "--hop-ms", "0"], r"--hop-ms"),
    ("demo-mic-hop-inf", ["demo", "mic", "-m", "{tflite}", "--wav", "{wav}", "--hop-ms", "inf"], r"--hop-ms"),
    ("demo-mic-smooth-negative", ["demo", "mic", "-m", "{tflite}", "--wav", "{wav}", "--smooth-ms", "-5"],
     r"--smooth-ms"),
    ("demo-mic-duration-negative", ["demo", "mic", "-m", "{tflite}", "--duration", "-1"], r"--duration"),
    ("demo-mic-labels-file-without-wav", ["demo", "mic", "-m", "{tflite}", "--labels-file", "x.json"], r"--wav"),
    ("demo-mic-json-folder", ["demo", "mic", "-m", "{tflite}", "--wav", "{wav}", "--json", "{folder}"],
     r"--json.*folder"),
    # train (the lead is rewriting edgekit/train.py and commands/train.py)
    ("train-limit-0", ["train", "-m", "ds_cnn_s", "-d", "digits", "--out", "out", "--limit", "0"], r"limit.*(>= 1|> 0)"),
    ("train-limit-negative", ["train", "-m", "ds_cnn_s", "-d", "digits", "--out", "out", "--limit", "-3"],
     r"limit.*(>= 1|> 0)"),
    ("train-json-folder", ["train", "-m", "ds_cnn_s", "-d", "digits", "--out", "out", "--json", "{folder}"],
     r"--json.*folder"),
    ("train-model", ["train", "-m", "nosuch", "-d", "digits", "--out", "out"], r"nosuch"),
    ("train-out-file", ["train", "-m", "ds_cnn_s", "-d", "digits", "--out", "{file}", "--epochs", "1", "--limit",
                        "30"], r"--out|afile"),
    ("train-lr-negative", ["train", "-m", "ds_cnn_s", "-d", "digits", "--out", "out", "--lr", "-1", "--epochs", "1",
                           "--limit", "30", "-q"], r"--lr|learning.rate"),
    ("train-model-option-text", ["train", "-m", "mobilenet_v2", "-d", "digits", "--out", "out", "--model-option",
                                 "alpha=abc", "--epochs", "1", "--limit", "30", "-q"], r"alpha='abc'"),
    # issue 25
    ("train-overwrite-not-a-run", ["train", "-m", "ds_cnn_s", "-d", "digits", "--out", "{mine}", "--overwrite",
                                   "--epochs", "1", "--limit", "30", "-q"], r"--overwrite.*mine.*not one"),
    ("train-seed-negative", ["train", "-m", "ds_cnn_s", "-d", "digits", "--out", "out", "--seed", "-1"], r"--seed"),
    ("train-seed-huge", ["train", "-m", "ds_cnn_s", "-d", "digits", "--out", "out", "--seed", str(2**64)], r"--seed"),
    ("train-epochs-huge", ["train", "-m", "ds_cnn_s", "-d", "digits", "--out", "out", "--epochs", str(10**12)],
     r"--epochs"),
    ("train-alpha-negative", ["train", "-m", "mobilenet_v2", "-d", "digits", "--out", "out", "--model-option",
                              "alpha=-1", "--epochs", "1", "--limit", "30", "-q"], r"alpha=-1.*out of range"),
    ("train-alpha-huge", ["train", "-m", "mobilenet_v2", "-d", "digits", "--out", "out", "--model-option",
                          "alpha=1000", "--epochs", "1", "--limit", "30", "-q"], r"alpha=1000.*out of range"),
    ("data-info-png-bomb", ["data", "info", "{bombs}"], r"Can't read image .*bomb\.png.*exceeds limit"),
    ("compress-calibration-png-bomb", ["compress", "{onnx}", "-d", "{bombs}", "--quantize", "int8", "--out", "out"],
     r"bomb\.png.*exceeds limit"),
    ("export-labels-duplicate", ["export", "{keras}", "--to", "tflite", "--out", "out", "--labels", "a,a,b,c,d"],
     r"--labels.*more than once: a"),
    ("compress-labels-duplicate", ["compress", "{onnx}", "-d", "{folder}", "--quantize", "int8", "--labels",
                                   "{labels_dup}", "--out", "out"], r"labels_dup\.txt.*more than once: a"),
    ("compress-labels-nested", ["compress", "{onnx}", "-d", "{folder}", "--quantize", "int8", "--labels",
                                "{labels_deep}", "--out", "out"], r"nested too deeply"),
    # refused by the model builder, after the run's .partial folder was made: it must not be left behind
    ("train-refused-leaves-no-partial", ["train", "-m", "kwt", "-d", "digits", "--out", "out", "--epochs", "1",
                                         "--limit", "30", "-q"], r"kwt expects \(frames, coefficients\)"),
    ("train-weights-empty", ["train", "-m", "ds_cnn_s", "-d", "digits", "--out", "out", "--weights", ""],
     r"weights is empty"),
    ("compress-preprocess-size-huge", ["compress", "{onnxdyn}", "-d", "{bombs}", "--quantize", "int8", "--preprocess",
                                       "size=20000", "--out", "out"], r"size must be at most 4096.*20000"),
    ("info-fifo", ["info", "{fifo}"], r"fifo\.tflite.*is a FIFO"),
    ("info-dev-zero", ["info", "{zero}"], r"zero\.tflite.*is a device"),
    ("bench-fifo", ["bench", "{fifo}", "--no-isolate"], r"is a FIFO"),
    ("eval-dev-zero", ["eval", "{zero}", "--data", "digits"], r"is a device"),
    ("info-meta-nested", ["info", "{meta_nested}"], r"metadata.*nested too deeply"),
    ("bench-meta-nested", ["bench", "{meta_nested}", "--no-isolate", "--runs", "1"], r"nested too deeply"),
    ("info-meta-deep", ["info", "{meta_deep}"], r"metadata.*nested too deeply"),
    # a recipe that is a FIFO waited for a writer for ever; /dev/zero was read past 3 GB (in a subprocess: a hang
    # fails the row instead of the session)
    ("run-recipe-fifo", ["run", "{fifo}"], r"Recipe .*fifo\.tflite is a FIFO", {"proc": 60}),
    ("run-recipe-dev-zero", ["run", "{zero}"], r"Recipe .*zero\.tflite is a device", {"proc": 60}),
    ("bench-threads-huge", ["bench", "{tflite}", "--threads", "3000"], r"--threads.*<= 1024"),
    ("eval-threads-huge", ["eval", "{tflite}", "--data", "digits", "--threads", "3000"], r"--threads.*<= 1024"),
    ("info-json-proc", ["info", "{tflite}", "--json", "/proc/edgekit-x.json"], r"--json.*/proc"),
    ("info-json-sys", ["info", "{tflite}", "--json", "/sys/edgekit/x.json"], r"--json.*/sys"),
    ("export-out-proc", ["export", "{keras}", "--to", "tflite", "--out", "/proc/edgekit-x"], r"--out.*/proc"),
    ("export-name-long", ["export", "{keras}", "--to", "tflite", "--out", "out", "--name", "n" * 300],
     r"--name.*at most"),
    ("export-name-newline", ["export", "{keras}", "--to", "tflite", "--out", "out", "--name", "a\nb"], r"--name"),
    ("compress-out-devnull", ["compress", "{keras}", "-d", "digits", "--quantize", "int8", "--out", "/dev/null"],
     r"--out"),
    ("compress-json-proc", ["compress", "{keras}", "-d", "digits", "--quantize", "int8", "--out", "out", "--json",
                            "/proc/edgekit-x.json"], r"--json.*/proc"),
    ("bundle-out-under-file", ["bundle", "{tflite}", "-p", "x86-cpu", "-o", "{file}/b.tar.gz"], r"afile.*is a file"),
    # serve, bundle, deploy, status, doctor: in a subprocess (an accepted bad value would start serving)
    ("serve-model-missing", ["serve", "nope.tflite", "--port", "0"], r"nope\.tflite", {"proc": 20}),
    ("serve-bad-sidecar", ["serve", "{labels_str}", "--port", "0"], r"labels.*must be a list", {"proc": 20}),
    ("serve-port-negative", ["serve", "{tflite}", "--port", "-1"], r"port", {"proc": 20}),
    ("serve-max-body-inf", ["serve", "{tflite}", "--port", "0", "--max-body-mb", "inf"], r"max-body-mb.*inf",
     {"proc": 10}),
    ("bundle-out-folder", ["bundle", "{tflite}", "-p", "x86-cpu", "--out", "{folder}"], r"--out", {"proc": 30}),
    ("bundle-threads-0", ["bundle", "{tflite}", "-p", "x86-cpu", "--out", "b.tar.gz", "--threads", "0"],
     r"--threads", {"proc": 30}),
    ("bundle-profile", ["bundle", "{tflite}", "-p", "nosuch", "--out", "b.tar.gz"], r"nosuch", {"proc": 30}),
    ("bundle-bad-sidecar", ["bundle", "{labels_str}", "-p", "x86-cpu", "--out", "b.tar.gz"], r"labels",
     {"proc": 30}),
    ("bundle-device", ["bundle", "{tflite}", "-p", "x86-cpu", "--out", "b.tar.gz", "--device", "warp"], r"warp",
     {"proc": 30}),
    ("deploy-bundle-missing", ["deploy", "nope.tar.gz", "--host", "pi@127.0.0.1"], r"nope\.tar\.gz", {"proc": 30}),
    ("deploy-port-0", ["deploy", "nope.tar.gz", "--host", "pi@127.0.0.1", "--port", "0"], r"--port", {"proc": 30}),
    ("status-port-0", ["status", "--host", "pi@127.0.0.1", "--port", "0"], r"--port", {"proc": 30}),
    ("doctor-profile", ["doctor", "-p", "nosuch"], r"nosuch", {"proc": 30}),
    # issue 25
    ("status-inventory-hosts-string", ["status", "--hosts", "{inv_str}"], r"needs a 'hosts' list", {"proc": 30}),
    ("status-inventory-port", ["status", "--hosts", "{inv_port}"], r"Port.*1-65535.*99999", {"proc": 30}),
    ("status-inventory-serve-port", ["status", "--hosts", "{inv_serve_port}"], r"hosts\[0\].*serve_port.*99999",
     {"proc": 30}),
    ("status-host-port-99999", ["status", "--host", "pi@127.0.0.1:99999"], r"Port.*99999", {"proc": 30}),
    ("status-host-semicolon", ["status", "--host", "pi@a;touch x"], r"not a host name", {"proc": 30}),
    ("doctor-python-shell", ["doctor", "-p", "x86-cpu", "--host", "pi@127.0.0.1", "--python", "python3; touch X"],
     r"--python", {"proc": 30}),
    ("status-python-shell", ["status", "--host", "pi@127.0.0.1", "--python", "python3; touch X"], r"--python",
     {"proc": 30}),
]


def _params():
    out = []
    for case in CASES:
        cid, argv, expect, *rest = case
        opts = next((r for r in rest if isinstance(r, dict)), {})
        marks = [r for r in rest if not isinstance(r, dict)]
        out.append(pytest.param(argv, expect, opts, id=cid, marks=marks))
    return out


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("Error")]


@pytest.mark.parametrize("argv, expect, opts", _params())
def test_bad_input_is_one_clean_error_and_writes_nothing(argv, expect, opts, assets, invoke_cli, tmp_path,
                                                         monkeypatch):
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    args = [a.format(work=work, **assets) for a in argv]
    before = snapshot(tmp_path, Path(assets["dir"]))
    code, out, err = invoke_process(args, opts["proc"]) if "proc" in opts else invoke_cli(args)
    shown = f"edgekit {' '.join(args)}\n--- exit {code}\n--- stdout\n{out[-2000:]}\n--- stderr\n{err[-3000:]}"
    assert "Traceback" not in err + out, shown
    assert code == 2, shown
    errors = error_lines(err)
    assert len(errors) == 1, shown
    # One line: nothing after the Error line but blank lines (click's usage lines come before it).
    tail = err[err.index(errors[0]):].strip().splitlines()
    assert len(tail) == 1, shown
    assert re.search(expect, errors[0], re.I), f"expected /{expect}/ in the error line\n{shown}"
    assert snapshot(tmp_path, Path(assets["dir"])) == before, f"something was written\n{shown}"


# --- the reverse: good input that was refused, and the fixed paths doing their job ----------------
def _held_out_speech_folder(root: Path, words=("yes", "no", "up")) -> Path:
    from edgekit.data.audio import write_wav

    test = []
    for wi, w in enumerate(words):
        (root / w).mkdir(parents=True)
        for i in range(2):
            t = np.arange(16000) / 16000
            write_wav(root / w / f"s{i}_nohash_0.wav", (0.3 * np.sin(2 * np.pi * (300 + 200 * wi + 10 * i) * t))
                      .astype(np.float32))
            test.append(f"{w}/s{i}_nohash_0.wav")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    return root


def test_eval_on_a_held_out_speech_commands_folder(tmp_path, invoke_cli):
    import keras

    from edgekit.artifact import ArtifactMeta, write_meta
    from edgekit.data import load_dataset
    from edgekit.errors import DataError

    sc = _held_out_speech_folder(tmp_path / "sc")
    with pytest.raises(DataError, match="nothing to train on"):  # training on it is still refused
        load_dataset(sc)
    ds = load_dataset(sc, require_train=False)
    assert list(ds.splits) == ["test"] and len(ds.split("test")[1]) == 6
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(ds.input_shape), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "kws.keras")
    write_meta(tmp_path / "kws.keras", ArtifactMeta(format="keras", task="audio-classification",
                                                    labels=list(ds.labels), preprocessing=ds.preprocessing))
    code, out, err = invoke_cli(["eval", str(tmp_path / "kws.keras"), "--data", str(sc), "--split", "test",
                             "--json", str(tmp_path / "r.json"), "--limit", "4"])
    assert code == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["samples"] == 4 and r["split"] == "test" and r["labels"] == ["no", "up", "yes"]
    assert sum(map(sum, r["confusion"])) == 4


def test_limit_is_honoured_exactly(tmp_path, invoke_cli):
    code, out, err = invoke_cli(["data", "info", "digits", "--limit", "7", "--json", str(tmp_path / "d.json")])
    assert code == 0, err
    d = json.loads((tmp_path / "d.json").read_text())
    assert (d["train"], d["val"], d["test"]) == (7, 7, 7)


def test_json_into_a_missing_folder_creates_it(tmp_path, assets, invoke_cli):
    code, out, err = invoke_cli(["info", assets["tflite"], "--json", str(tmp_path / "new" / "deep" / "i.json")])
    assert code == 0, err
    assert json.loads((tmp_path / "new" / "deep" / "i.json").read_text())["metadata"]["labels"] == LABELS5


def test_library_readers_get_the_same_clear_errors(assets, tmp_path):
    from edgekit.artifact import ArtifactMeta, check_file_stem, read_meta
    from edgekit.data import Dataset, load_dataset
    from edgekit.errors import ConfigError, DataError, ModelError

    with pytest.raises(ModelError, match=r"labels' must be a list; received a string \"cat\""):
        read_meta(assets["labels_str"])
    with pytest.raises(ValueError, match="inputs\\[0\\]"):
        ArtifactMeta.from_dict({"inputs": [{"name": "x"}]})
    with pytest.raises(ModelError, match=r"meta_deep.*nested too deeply \(more than 32 levels"):
        read_meta(assets["meta_deep"])  # it parses; it used to come back and break asdict/json.dumps later
    assert ArtifactMeta.from_dict(ArtifactMeta(labels=["a", 1], sparsity=0.5).to_dict()).labels == ["a", 1]
    for bad in ("../x", "/abs", "a/b", ".hidden", "", " m", "a\\b"):
        with pytest.raises(ConfigError, match="name"):
            check_file_stem(bad, "name")
    assert check_file_stem("model-int8_v2") == "model-int8_v2"
    with pytest.raises(DataError, match="no 'train' rows .found: val 1, test 2"):
        load_dataset(assets["csv"])
    ds = load_dataset("digits")
    assert isinstance(ds, Dataset)
    for bad in (0, -3, 2.5):
        with pytest.raises(ConfigError, match="limit must be an integer >= 1"):
            ds.subset(bad)
    from edgekit.evaluate import evaluate

    with pytest.raises(ConfigError, match="limit"):
        evaluate(assets["tflite"], "digits", limit=-3)


def test_export_refuses_mismatched_labels_before_writing(assets, tmp_path):
    from edgekit.artifact import ArtifactMeta
    from edgekit.errors import ConfigError
    from edgekit.export import export_model

    with pytest.raises(ConfigError, match="6 labels .* 5 outputs"):
        export_model(assets["keras"], ("tflite",), tmp_path / "out", meta=ArtifactMeta(labels=list("abcdef")))
    with pytest.raises(ConfigError, match="name"):
        export_model(assets["keras"], ("tflite",), tmp_path / "out", name="../evil")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


# --- issue 25: --json onto special files: written through (or refused), never replaced ---------
JSON_COMMANDS = {
    "info": ["info", "{tflite}"],
    "bench": ["bench", "{tflite}", "--no-isolate", "--runs", "2", "--warmup", "0"],
    "devices": ["devices"],
    "devices-profiles": ["devices", "--profiles"],
    "zoo": ["zoo", "list", "--models", "ds_cnn_s"],
    "data-list": ["data", "list"],
}


@pytest.mark.parametrize("command", list(JSON_COMMANDS))
def test_json_onto_special_files_keeps_them(command, assets, invoke_cli, tmp_path):
    import stat

    argv = [a.format(**assets) for a in JSON_COMMANDS[command]]
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a second /dev/null (root here)
    code, out, err = invoke_cli([*argv, "--json", str(dev)])
    assert code == 0, err
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and os.lstat(dev).st_rdev == os.makedev(1, 3)

    real = tmp_path / "real.json"
    real.write_text("old")
    (tmp_path / "link.json").symlink_to(real.name)
    code, out, err = invoke_cli([*argv, "--json", str(tmp_path / "link.json")])
    assert code == 0, err
    assert (tmp_path / "link.json").is_symlink() and os.readlink(tmp_path / "link.json") == "real.json"
    json.loads(real.read_text())  # the target got the results

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code, out, err = invoke_cli([*argv, "--json", str(fifo)])  # nobody reads: refused, not hung, not replaced
    assert code == 2 and "FIFO with no reader" in error_lines(err)[0], err
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader holds it open (results < the 64 KB pipe buffer)
    try:
        code, out, err = invoke_cli([*argv, "--json", str(fifo)])
        assert code == 0, err
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
        json.loads(os.read(rfd, 1 << 16))
    finally:
        os.close(rfd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link.json", "null", "real.json"]


def test_eval_on_a_separate_image_folder_takes_every_image(keras_classifier, tmp_path, invoke_cli):
    """Issue 25 (found by users): a test folder of class subfolders that did not train the model is
    evaluated whole, not its 20 % "test" share; the model's own training folder still gives its test split."""
    from PIL import Image

    from edgekit.artifact import read_meta, sidecar_path, write_meta

    folder = tmp_path / "held_out"
    rng = np.random.default_rng(0)
    for c in LABELS5:
        (folder / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / c / f"{i}.png")
    model = tmp_path / "m.keras"
    shutil.copy(keras_classifier, model)
    meta = read_meta(keras_classifier)
    meta.labels = list(LABELS5)
    write_meta(model, meta)
    code, out, err = invoke_cli(["eval", str(model), "--data", str(folder), "--json", str(tmp_path / "r.json")])
    assert code == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["samples"] == 25 and r["whole_folder"] is True and sum(map(sum, r["confusion"])) == 25
    code, out, err = invoke_cli(["eval", str(model), "--data", str(folder)])
    assert "over 25 samples (every image of the folder" in out, out
    meta.provenance = {**(meta.provenance or {}), "data": "held_out"}  # now it is the training folder
    write_meta(model, meta)
    code, out, err = invoke_cli(["eval", str(model), "--data", str(folder), "--json", str(tmp_path / "r.json")])
    r = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and r["samples"] == 5 and r["whole_folder"] is False, err
    assert sidecar_path(model).exists()


NATIVE_BANNERS = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                  b"I0000 00:00:1796589151.837264   30091 port.cc:153] oneDNN custom operations are on. You may see\n"
                  b"I0000 00:00:1796589152.1   30091 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
                  b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
                  b"appropriate compiler flags.\n"
                  b"E0000 00:00:1796616861.342151   26801 node_def_util.cc:682] NodeDef mentions attribute "
                  b"use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; ...> This may be "
                  b"expected if your graph generating binary is newer  than this binary. Unknown attributes will be "
                  b"ignored. NodeDef: {{node ParallelMapDatasetV2/_14}}\n"
                  b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
                  b"fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32, output_inference_type: FLOAT32\n")


def test_native_tensorflow_banners_are_dropped_and_everything_else_kept():
    """Issue 25 (found by users): TensorFlow's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL; the entry
    point filters them from fd 2 (child processes included) and passes every other line through."""
    child = f"import os; os.write(2, {NATIVE_BANNERS!r} + b'child\\n')"
    code = ("import os, subprocess, sys\n"
            "from edgekit.cli import NativeStderrFilter\n"
            "f = NativeStderrFilter()\n"
            f"os.write(2, {NATIVE_BANNERS!r} + b'E0000 00:00:1.2 1 x.cc:1] a real error\\n')\n"
            "print('from python', file=sys.stderr, flush=True)\n"
            f"subprocess.run([sys.executable, '-c', {child!r}])\n"
            "os.write(2, b'no newline at the end')\n"
            "f.close()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode() == ("E0000 00:00:1.2 1 x.cc:1] a real error\nfrom python\nchild\nno newline at the end")


def test_build_tools_python_chatter_is_hidden_and_their_warnings_kept():
    """`edgekit run -q` of the demo recipe printed NNCF's INFO lines (one per ignored node), TensorFlow's retracing
    warnings and tf.lite.Interpreter's deprecation notice; the entry point hides them, not NNCF's warnings or errors."""
    code = ("import logging, sys, warnings\n"
            "import nncf\n"  # NNCF sets its logger's level and handler on import
            "from edgekit.cli import quiet_python_logs\n"
            "quiet_python_logs()\n"
            "nncf.common.logging.nncf_logger.info('INFO-HIDDEN')\n"
            "nncf.common.logging.nncf_logger.warning('NNCF-WARNING-KEPT')\n"
            "logging.basicConfig()\n"
            "logging.getLogger('tensorflow').warning('5 out of the last 5 calls triggered tf.function retracing')\n"
            "logging.getLogger('tensorflow').error('TF-ERROR-KEPT')\n"
            "warnings.warn('    Warning: tf.lite.Interpreter is deprecated and is scheduled for deletion', UserWarning)\n"
            "warnings.warn('OTHER-WARNING-KEPT', UserWarning)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "NNCF-WARNING-KEPT" in out and "TF-ERROR-KEPT" in out and "OTHER-WARNING-KEPT" in out, out
    assert "INFO-HIDDEN" not in out and "retracing" not in out and "is deprecated" not in out, out


@pytest.mark.slow
def test_a_tensorflow_command_is_quiet_unless_verbose():
    argv = [sys.executable, "-c", "from edgekit.cli import main; main()"]
    quiet = subprocess.run(argv + ["zoo", "list", "--models", "ds_cnn_s"], capture_output=True, text=True, timeout=300)
    loud = subprocess.run(argv + ["--verbose", "zoo", "list", "--models", "ds_cnn_s"], capture_output=True, text=True,
                          timeout=300)
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    assert "ds_cnn_s" in quiet.stdout and "absl::InitializeLog" not in quiet.stderr and "oneDNN" not in quiet.stderr
    assert "oneDNN custom operations" in loud.stderr


@pytest.fixture(scope="module")
def hostile_server():
    """An HTTP server that answers what no edgekit server would: JSON nested 100,000 deep, a 70 MB answer
    (streamed, never held), a list for metadata."""
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            name = self.path.rsplit("/", 1)[-1]
            size = 70 << 20 if name == "huge" else None
            body = {"nested": b"[" * 100_000 + b"]" * 100_000, "list": b"[1, 2]"}.get(name, b"")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(size or len(body)))
            self.end_headers()
            try:
                if size:
                    chunk = b" " * (1 << 20)
                    for _ in range(70):
                        self.wfile.write(chunk)
                else:
                    self.wfile.write(body)
            except OSError:  # the client stopped reading: what it should do
                pass

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v2/models"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("name, expect", [("nested", r"nested too deeply"), ("huge", r"more than 64 MB"),
                                          ("list", r"not a JSON object")])
def test_demo_url_answers_are_bounded(name, expect, hostile_server, assets, invoke_cli, tmp_path):
    code, out, err = invoke_cli(["demo", "camera", "--url", f"{hostile_server}/{name}", "--headless", "-s",
                                 assets["folder"]])
    assert "Traceback" not in err and code == 2, err
    assert len(error_lines(err)) == 1 and re.search(expect, error_lines(err)[0]), err


def test_an_interrupted_exports_partial_folder_is_swept_by_the_next_run(assets, invoke_cli, tmp_path,
                                                                        leftover_partials):
    """Issue 25: a killed export leaves .model.tflite.PID.XXXX.partial behind; the next export of the same
    name removes those whose process is gone (and never one a live process owns)."""
    out = tmp_path / "exp"
    stale, live = leftover_partials(out, "model.tflite", "model.tflite")
    code, so, err = invoke_cli(["export", assets["keras"], "--to", "tflite", "--out", str(out), "-q"])
    assert code == 0, err
    assert not stale.exists() and live.exists() and (out / "model.tflite").is_file()
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".partial")) == [live.name]
