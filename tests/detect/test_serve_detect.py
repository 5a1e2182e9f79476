"""The detector over real HTTP: ``edgekit serve`` answers POST /v2/models/{name}/detect (and /detect when it is
the only model) with the artifact's own boxes (runtime.boxes, the one decode + NMS) in the posted image's pixels,
the same boxes the in-process DetectorRunner draws; a real server on a socket, a real client."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

# The session's tiny detector trains for ~50 s, and in the default run nothing else needs it (the other detect
# tests are -m slow): CI runs this file in its -m heavy stage.
pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def det_tflite(tiny_detector, tmp_path_factory):
    from edgekit.export import export_model

    r, _ = tiny_detector
    res = export_model(r.model_path, ("tflite",), tmp_path_factory.mktemp("serve-det"), name="det", samples=4)
    return res.artifacts["tflite"]


@pytest.fixture(scope="module")
def det_server(det_tflite):
    from edgekit.serve.server import ServerThread

    with ServerThread([str(det_tflite)], threads=1) as s:
        yield s


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def test_detect_route_answers_the_artifacts_boxes_in_image_pixels(det_server, det_tflite):
    from PIL import Image

    from edgekit.data.shapes import _backgrounds, make_image
    from edgekit.evaluate_detect import DetectorRunner

    img, _ = make_image(np.random.default_rng(7), _backgrounds(), 96)
    w, h = 200, 150  # not the model's 96 x 96, and not square: boxes must come back in these pixels
    sent = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
    body = _png(sent)

    runner = DetectorRunner(str(det_tflite))
    try:
        x = np.asarray(Image.fromarray(sent).resize((96, 96), Image.BILINEAR))[None]
        raw = runner.run(x)
        post = runner.postprocess(score_threshold=0.05)
    finally:
        runner.close()
    want = post(raw)[0]
    assert len(want) > 0, "the tiny detector draws no box at 0.05 on this image: the test would prove nothing"

    with httpx.Client(base_url=det_server.url, timeout=30) as c:
        r = c.post("/v2/models/det/detect?score_threshold=0.05", content=body, headers={"content-type": "image/png"})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert (doc["model_name"], doc["width"], doc["height"]) == ("det", w, h)
        got = doc["detections"]
        assert [d["label"] for d in got] == [runner.meta.labels[c] for c in want.classes]
        np.testing.assert_allclose([d["score"] for d in got], want.scores, atol=2e-3)
        boxes = np.asarray([d["box"] for d in got])
        np.testing.assert_allclose(boxes, want.boxes * [w, h, w, h], atol=0.5)  # pixels of the 200 x 150 image
        assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()

        # the default threshold is the artifact's; fewer or as many boxes, each also in the 0.05 answer
        d = c.post("/v2/models/det/detect", content=body).json()["detections"]
        assert len(d) <= len(got) and all(b["score"] >= runner.meta.extra["postprocess"]["score_threshold"] for b in d)
        # the shortcut when one model is served
        assert c.post("/detect?score_threshold=0.05", content=body).json()["detections"] == got
        assert len(c.post("/detect?score_threshold=0.05&max_detections=1", content=body).json()["detections"]) == 1

        # what a client gets wrong: one-line 4xx answers, and the server keeps answering
        for url, content, status, needle in (
                ("/v2/models/det/detect?score_threshold=2", body, 400, "score_threshold must be a number from 0 to 1"),
                ("/v2/models/det/detect?max_detections=abc", body, 400, "max_detections must be an integer"),
                ("/v2/models/det/detect", b"", 400, "Empty body"),
                ("/v2/models/det/detect", b"not an image", 415, "not a JPEG, PNG or WAV"),
                ("/v2/models/det/classify", body, 400, "is a detector; POST the image to /v2/models/det/detect")):
            e = c.post(url, content=content)
            assert e.status_code == status and needle in e.json()["error"], (url, e.status_code, e.text)
        assert c.get("/v2/models/det/detect").status_code == 405
        paths = c.get("/openapi.json").json()["paths"]
        assert "post" in paths["/v2/models/{model_name}/detect"] and "post" in paths["/detect"]
        assert c.get("/v2/health/ready").status_code == 200
