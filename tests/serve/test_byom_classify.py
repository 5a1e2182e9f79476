"""serve classify on a model edgekit did not train: an NCHW ONNX compressed with --labels and --preprocess
answers a JPEG with its own labels, the same as the in-process Session on the same preprocessing."""

from __future__ import annotations

import io

import httpx
import numpy as np


def test_classify_jpeg_on_foreign_nchw_int8(byom, start_server):
    from PIL import Image

    from edgekit.preprocess import to_input
    from edgekit.runtime import load

    path = byom["out"] / "photo_cnn_int8.onnx"
    srv = start_server(f"photo={path}", "--threads", "1")
    jpg = next(byom["labelled"].glob("flower-left/*.jpg")).read_bytes()
    r = httpx.post(srv.url + "/v2/models/photo/classify?top_k=4", content=jpg, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200, r.text
    doc = r.json()
    with load(path) as s:
        pre = s.meta.preprocessing
        im = Image.open(io.BytesIO(jpg)).convert("RGB").resize((32, 32), Image.BILINEAR)
        logits = s.predict(to_input(np.asarray(im), pre))[0]
    assert [d["index"] for d in doc["predictions"]] == list(np.argsort(-logits)[:4])
    assert doc["label"] == byom["classes"][int(logits.argmax())]
    assert doc["softmax_applied"] is True  # the model gives logits, as PyTorch classifiers do
