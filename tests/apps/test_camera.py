"""The camera demo on real models, real OpenCV video I/O and a real server: headless runs, saving, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from edgekit.apps import open_model  # noqa: E402
from edgekit.apps.camera import CameraDemo, ImagePreprocessor, open_source  # noqa: E402
from edgekit.errors import DataError, ModelError, UnsupportedError  # noqa: E402
from edgekit.runtime import load  # noqa: E402

LABELS = ["cat", "dog", "bird", "fish", "frog"]  # tests/conftest.py's classifier


def lines_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_preprocessing_follows_the_metadata(exported_models):
    s = load(exported_models["tflite"])
    pre = ImagePreprocessor(s.meta.preprocessing, s.inputs[0].shape)
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[..., 2] = 255  # pure red in OpenCV's BGR order
    x = pre(frame)
    assert x.shape == (1, 32, 32, 3) and x.dtype == np.float32
    # RGB order and (pixel - mean) * scale with scale 1/255: red is channel 0 at 1.0.
    np.testing.assert_allclose(x[0, ..., 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(x[0, ..., 1:], 0.0, atol=1e-6)
    nchw = ImagePreprocessor({**s.meta.preprocessing, "layout": "NCHW"}, [1, 3, 32, 32])
    assert nchw(frame).shape == (1, 3, 32, 32)
    with pytest.raises(ModelError, match="metadata says 64x64"):
        ImagePreprocessor({**s.meta.preprocessing, "size": [64, 64]}, s.inputs[0].shape)


def test_video_through_every_backend_agrees(exported_models, video_file):
    tops = {}
    for fmt, path in exported_models.items():
        demo = CameraDemo(load(path), top_k=3)
        got = []
        with open_source(video_file) as src:
            summary = demo.run(src, on_result=got.append)
        assert summary["frames"] == len(got) == 48
        assert summary["fps"] > 0 and summary["latency_ms_p95"] >= summary["latency_ms_p50"] > 0
        for r in got:
            assert [t["label"] in LABELS for t in r.top] == [True] * 3
            scores = [t["score"] for t in r.top]
            assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
        tops[fmt] = [r.top[0]["index"] for r in got]
    assert len(set(tops["tflite"])) > 1  # the frames change, and so do the answers
    for fmt in ("onnx", "openvino"):
        agree = np.mean(np.asarray(tops[fmt]) == np.asarray(tops["tflite"]))
        assert agree >= 0.95, (fmt, agree)


def test_cli_headless_json_lines_and_saved_video(cli, exported_models, video_file, tmp_path):
    out, summary_file = tmp_path / "annotated.mp4", tmp_path / "summary.json"
    p = cli("demo", "camera", "--model", str(exported_models["onnx"]), "--source", str(video_file), "--headless",
            "--save", str(out), "--top-k", "2", "--json", str(summary_file))
    assert p.returncode == 0, p.stderr
    rows = lines_of(p.stdout)
    frames, summary = rows[:-1], rows[-1]["summary"]
    assert [r["frame"] for r in frames] == list(range(48))
    assert all(len(r["top"]) == 2 and r["latency_ms"] > 0 for r in frames)
    assert summary["frames"] == 48 and summary["fps"] >= 10, summary  # throughput is measured and reported
    assert json.loads(summary_file.read_text())["frames"] == 48
    cap = cv2.VideoCapture(str(out))
    n, first = 0, None
    while True:
        ok, f = cap.read()
        if not ok:
            break
        first = f if first is None else first
        n += 1
    assert n == 48 and first.shape == (240, 320, 3)
    # The overlay (top-k text box, black background) is drawn in the top-left corner.
    assert first[2:20, 2:60].mean() < first[150:, 150:].mean()


def test_image_folder_and_max_frames(cli, exported_models, tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((50, 70, 3), 60 * i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    p = cli("demo", "camera", "-m", str(exported_models["tflite"]), "--source", str(tmp_path), "--headless")
    assert p.returncode == 0, p.stderr
    assert len(lines_of(p.stdout)) == 4  # 3 frames + summary
    # Without a display (none set here, even on a desktop) the window falls back to headless, said once.
    p = cli("demo", "camera", "-m", str(exported_models["tflite"]), "--source", str(tmp_path), "--max-frames", "2",
            "--json", "-", env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})
    assert p.returncode == 0 and json.loads(p.stdout)["frames"] == 2
    assert p.stderr.count("no display") == 1


def test_remote_mode_matches_local(exported_models, video_file):
    from edgekit.serve.server import ServerThread

    local = CameraDemo(load(exported_models["tflite"]), top_k=5)
    with ServerThread([str(exported_models["tflite"])]) as srv, open_source(video_file) as src:
        remote_model = open_model(url=srv.url)
        remote = CameraDemo(remote_model, top_k=5)
        pairs = [(local.classify(f), remote.classify(f)) for f in src]
        summary = remote.run(open_source(video_file), max_frames=10)
    assert remote_model.labels == LABELS and summary["frames"] == 10 and summary["backend"] == "remote"
    # JPEG on the wire and PIL's resize on the server: close to the local numbers, not bit-equal.
    diffs = [np.abs(a - b).max() for a, b in pairs]
    assert np.median(diffs) < 0.05, diffs
    assert np.mean([a.argmax() == b.argmax() for a, b in pairs]) >= 0.8


def test_bad_inputs_exit_2(cli, exported_models, kws_model, video_file, tmp_path):
    m = str(exported_models["tflite"])
    p = cli("demo", "camera", "-m", m, "--source", "7", "--headless")
    assert p.returncode == 2 and "No camera at index 7" in p.stderr and "Traceback" not in p.stderr
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    p = cli("demo", "camera", "-m", m, "--source", str(bad), "--headless")
    assert p.returncode == 2 and "broken.mp4" in p.stderr and "Traceback" not in p.stderr
    p = cli("demo", "camera", "-m", m, "--source", str(tmp_path / "missing.mp4"), "--headless")
    assert p.returncode == 2 and "No such video file or image folder" in p.stderr
    p = cli("demo", "camera", "-m", str(kws_model), "--source", str(bad), "--headless")
    assert p.returncode == 2 and "needs an image classifier" in p.stderr
    p = cli("demo", "camera", "--source", str(bad))
    assert p.returncode == 2 and "exactly one of a model file" in p.stderr
    p = cli("demo", "camera", "-m", m, "--source", str(video_file), "--headless", "--save", str(tmp_path / "x.gif"))
    assert p.returncode == 2 and "unknown video type '.gif'" in p.stderr


def test_library_errors(exported_models, tmp_path):
    with pytest.raises(UnsupportedError, match="No camera"):
        open_source(9)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        open_source(tmp_path / "empty")
    with pytest.raises(Exception, match="top_k must be >= 1"):
        CameraDemo(load(exported_models["tflite"]), top_k=0)
