"""KServe v2 REST over real HTTP: health, metadata, JSON and binary inference, parameters, output selection,
and every bad-input case answered with a 4xx JSON error while the server keeps serving."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest


def images(n, seed=0):
    return np.random.default_rng(seed).random((n, 32, 32, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def triton(server):
    import tritonclient.http as th

    c = th.InferenceServerClient(f"{server.host}:{server.port}")
    yield c
    c.close()


def meta_of(http, name, version=None):
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "")
    r = http.get(path)
    assert r.status_code == 200, r.text
    return r.json()


def infer_json(http, name, inputs: dict, version=None, outputs=None, **extra):
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": k, "shape": list(v.shape), "datatype": "FP32", "data": v.ravel().tolist()}
                       for k, v in inputs.items()], **extra}
    if outputs is not None:
        body["outputs"] = outputs
    return http.post(path, json=body)


def check_alive(http, sessions):
    """After any bad request the server must still answer a good one correctly."""
    s = sessions[("pair", "1")]
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    r = infer_json(http, "pair", {"a": a, "b": a})
    assert r.status_code == 200, r.text
    out = {o["name"]: np.asarray(o["data"], np.float32).reshape(o["shape"]) for o in r.json()["outputs"]}
    np.testing.assert_allclose(out["sum"], s.run({"a": a, "b": a})["sum"])


# -- health and metadata ----------------------------------------------------------------------------
def test_health_server_metadata_and_repository(http, triton):
    assert http.get("/v2/health/live").json() == {"live": True}
    r = http.get("/v2/health/ready")
    assert r.status_code == 200 and r.json() == {"ready": True}
    md = http.get("/v2").json()
    assert md["name"] == "edgekit" and "binary_tensor_data" in md["extensions"]
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.get_server_metadata()["name"] == "edgekit"
    index = {(m["name"], m["version"]) for m in triton.get_model_repository_index()}
    assert {("tiny", "1"), ("tiny", "2"), ("tiny", "3"), ("pair", "1")} <= index


def test_model_metadata_versions_and_readiness(http, triton, sessions):
    latest = meta_of(http, "tiny")
    assert latest["versions"] == ["3"] and latest["platform"] == "openvino"
    for v, platform in (("1", "litert"), ("2", "onnxruntime"), ("3", "openvino")):
        md = meta_of(http, "tiny", v)
        assert md["platform"] == platform
        s = sessions[("tiny", v)]
        assert md["inputs"] == [{"name": s.inputs[0].name, "datatype": "FP32", "shape": [-1, 32, 32, 3]}]
        assert md["outputs"][0]["shape"] == [-1, 5]
        assert triton.is_model_ready("tiny", v)
    pair = triton.get_model_metadata("pair")
    assert [i["name"] for i in pair["inputs"]] == ["a", "b"]
    assert [o["name"] for o in pair["outputs"]] == ["sum", "prod"]
    cfg = http.get("/v2/models/tiny/versions/1/config").json()
    assert cfg["max_batch_size"] >= 1 and cfg["input"][0]["dims"] == [32, 32, 3]


@pytest.mark.parametrize("path,needle", [
    ("/v2/models/nope", "Unknown model 'nope'. Available: "),
    ("/v2/models/nope/infer", "Unknown model 'nope'"),
    ("/v2/models/tiny/versions/9", "Unknown version '9' of model 'tiny'. Available: 1, 2, 3"),
    ("/v2/models/tiny/versions/9/ready", "Unknown version '9'"),
    ("/v2/nothing/here", "No such route"),
])
def test_unknown_model_version_route_is_404_json(http, path, needle):
    r = http.get(path) if not path.endswith("infer") else http.post(path, json={"inputs": []})
    assert r.status_code == 404
    assert needle in r.json()["error"]


# -- inference --------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1", "2", "3"])
def test_json_infer_matches_in_process_every_backend(http, sessions, version):
    s = sessions[("tiny", version)]
    x = images(3, seed=int(version))
    r = infer_json(http, "tiny", {s.inputs[0].name: x}, version=version, id="req-7")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model_name"] == "tiny" and doc["model_version"] == version and doc["id"] == "req-7"
    out = doc["outputs"][0]
    assert out["name"] == s.outputs[0].name and out["datatype"] == "FP32" and out["shape"] == [3, 5]
    np.testing.assert_allclose(np.asarray(out["data"], np.float32).reshape(3, 5), s.predict(x), atol=1e-5)


def test_nested_json_data_is_accepted(http, sessions):
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    body = {"inputs": [{"name": "a", "shape": [2, 4], "datatype": "FP32", "data": a.tolist()},
                       {"name": "b", "shape": [2, 4], "datatype": "FP32", "data": a.ravel().tolist()}]}
    r = http.post("/v2/models/pair/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][1]["data"] == (a * a).ravel().tolist()


def test_tritonclient_binary_inputs_and_outputs(triton, sessions):
    import tritonclient.http as th

    s = sessions[("tiny", "1")]
    x = images(4, seed=11)
    inp = th.InferInput(s.inputs[0].name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    out = th.InferRequestedOutput(s.outputs[0].name, binary_data=True)
    res = triton.infer("tiny", [inp], model_version="1", outputs=[out], request_id="b1")
    np.testing.assert_allclose(res.as_numpy(s.outputs[0].name), s.predict(x), atol=1e-5)
    assert res.get_response()["id"] == "b1"
    # JSON in, binary out, and the reverse.
    inp.set_data_from_numpy(x, binary_data=False)
    res = triton.infer("tiny", [inp], model_version="1", outputs=[out])
    np.testing.assert_allclose(res.as_numpy(s.outputs[0].name), s.predict(x), atol=1e-5)
    inp.set_data_from_numpy(x, binary_data=True)
    res = triton.infer("tiny", [inp], model_version="1",
                       outputs=[th.InferRequestedOutput(s.outputs[0].name, binary_data=False)])
    np.testing.assert_allclose(res.as_numpy(s.outputs[0].name), s.predict(x), atol=1e-5)


def test_output_selection_and_classification_extension(triton, http, sessions):
    import tritonclient.http as th

    a = np.random.default_rng(2).random((3, 4), dtype=np.float32)
    b = np.random.default_rng(3).random((3, 4), dtype=np.float32)
    ins = []
    for n, v in (("a", a), ("b", b)):
        i = th.InferInput(n, [3, 4], "FP32")
        i.set_data_from_numpy(v, binary_data=True)
        ins.append(i)
    res = triton.infer("pair", ins, outputs=[th.InferRequestedOutput("prod", binary_data=True)])
    assert [o["name"] for o in res.get_response()["outputs"]] == ["prod"]
    np.testing.assert_allclose(res.as_numpy("prod"), a * b, rtol=1e-6)
    assert res.as_numpy("sum") is None
    # classification: top-2 as "score:index:label", labels from the artifact metadata
    s = sessions[("tiny", "1")]
    x = images(2, seed=5)
    i = th.InferInput(s.inputs[0].name, [2, 32, 32, 3], "FP32")
    i.set_data_from_numpy(x, binary_data=True)
    res = triton.infer("tiny", [i], model_version="1",
                       outputs=[th.InferRequestedOutput(s.outputs[0].name, binary_data=True, class_count=2)])
    top = res.as_numpy(s.outputs[0].name)
    assert top.shape == (2, 2)
    p = s.predict(x)
    for row in range(2):
        score, idx, label = top[row, 0].decode().split(":")
        assert int(idx) == int(p[row].argmax()) and label == s.labels[int(idx)]
        assert abs(float(score) - p[row].max()) < 1e-5
    # the same over JSON
    r = infer_json(http, "tiny", {s.inputs[0].name: x}, version="1",
                   outputs=[{"name": s.outputs[0].name, "parameters": {"classification": 1}}])
    assert r.json()["outputs"][0]["datatype"] == "BYTES"
    assert r.json()["outputs"][0]["data"][0].split(":")[1] == str(int(p[0].argmax()))


def test_binary_data_output_request_parameter(http, sessions):
    a = np.ones((1, 4), np.float32)
    r = infer_json(http, "pair", {"a": a, "b": a}, parameters={"binary_data_output": True})
    assert r.status_code == 200
    n = int(r.headers["inference-header-content-length"])
    head = json.loads(r.content[:n])
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    assert sizes == [16, 16] and len(r.content) == n + 32
    assert np.frombuffer(r.content[n:n + 16], "<f4").tolist() == [2.0] * 4


def test_quantized_model_takes_and_returns_floats(int8_tflite, start_server):
    from edgekit.runtime import load

    s = load(int8_tflite, threads=1)
    srv = start_server(f"q={int8_tflite}", "--threads", "1")
    try:
        with httpx.Client(base_url=srv.url) as c:
            md = c.get("/v2/models/q").json()
            assert md["inputs"][0]["datatype"] == "FP32"  # the Session hides the int8
            x = images(2, seed=9)
            r = infer_json(c, "q", {s.inputs[0].name: x})
            assert r.status_code == 200, r.text
            got = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(2, -1)
            np.testing.assert_allclose(got, s.predict(x), atol=1e-6)
    finally:
        assert srv.stop() == 0


# -- bad input ----------------------------------------------------------------------------------------
A = {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
B = {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}

BAD_JSON = [
    (b'{"inputs": [', "Malformed JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe\x00", "not UTF-8 JSON"),
    (json.dumps({"inputs": []}).encode(), "non-empty 'inputs'"),
    (json.dumps({"inputs": [A]}).encode(), "Missing input(s) b"),
    (json.dumps({"inputs": [A, B, dict(A, name="c")]}).encode(), "Unknown input 'c'"),
    (json.dumps({"inputs": [A, A]}).encode(), "given twice"),
    (json.dumps({"inputs": [A, dict(B, shape=[1, 5], data=[1] * 5)]}).encode(), "has shape [1, 5]; the model expects [-1, 4]"),
    (json.dumps({"inputs": [A, dict(B, shape=[4])]}).encode(), "has shape [4]"),
    (json.dumps({"inputs": [A, dict(B, datatype="FP64")]}).encode(), "has datatype FP64; the model expects FP32"),
    (json.dumps({"inputs": [A, dict(B, datatype="FLOAT")]}).encode(), "unknown datatype 'FLOAT'"),
    (json.dumps({"inputs": [A, dict(B, data=[1, 2, 3])]}).encode(), "needs 4 values; 'data' has 3"),
    (json.dumps({"inputs": [A, dict(B, shape=[2, 4], data=[[1, 2, 3, 4], [1, 2]])]}).encode(), "ragged"),
    (json.dumps({"inputs": [A, dict(B, data=["x", "y", "z", "w"])]}).encode(), "strings"),
    (json.dumps({"inputs": [A, dict(B, shape=[2, 4], data=[1] * 8)]}).encode(), "share one batch size"),
    (json.dumps({"inputs": [A, {"name": "b", "shape": [1, 4], "datatype": "FP32"}]}).encode(), "has no 'data'"),
    (json.dumps({"inputs": [A, B], "outputs": [{"name": "nope"}]}).encode(), "Unknown output 'nope' for model 'pair'. Available: sum, prod"),
    (json.dumps({"inputs": [A, B], "id": 5}).encode(), "'id' must be a string"),
    (json.dumps({"inputs": [A, dict(B, parameters={"binary_data_size": 16})]}).encode(),
     "no Inference-Header-Content-Length header"),
]


@pytest.mark.parametrize("body,needle", BAD_JSON, ids=[n for _, n in BAD_JSON])
def test_bad_json_requests_are_400_naming_the_problem(http, sessions, body, needle):
    r = http.post("/v2/models/pair/infer", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]
    check_alive(http, sessions)


def _binary(head: dict, blob: bytes, header_len=None):
    h = json.dumps(head).encode()
    return h + blob, {"Inference-Header-Content-Length": str(len(h) if header_len is None else header_len)}


def _bin_inputs(size_a=16, size_b=16):
    return {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": size_a}},
                       {"name": "b", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": size_b}}]}


LYING = [
    ("header longer than body", lambda: _binary(_bin_inputs(), b"\0" * 32, header_len=10_000), "body has"),
    ("header not a number", lambda: _binary(_bin_inputs(), b"\0" * 32, header_len="abc"), "must be an integer"),
    ("header cuts the JSON", lambda: _binary(_bin_inputs(), b"\0" * 32, header_len=20), "Malformed JSON"),
    ("size runs past the end", lambda: _binary(_bin_inputs(), b"\0" * 20), "runs past the end"),
    ("size disagrees with shape", lambda: _binary(_bin_inputs(size_b=12), b"\0" * 28), "needs 16"),
    ("trailing bytes", lambda: _binary(_bin_inputs(), b"\0" * 40), "8 bytes follow the JSON header"),
    ("negative size", lambda: _binary(_bin_inputs(size_b=-16), b"\0" * 32), "non-negative integer"),
]


@pytest.mark.parametrize("make,needle", [(m, n) for _, m, n in LYING], ids=[i for i, _, _ in LYING])
def test_lying_binary_headers_are_400(http, sessions, make, needle):
    body, headers = make()
    r = http.post("/v2/models/pair/infer", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]
    check_alive(http, sessions)


def test_body_over_the_limit_is_413_and_server_keeps_serving(http, sessions):
    big = b"x" * (1024 * 1024 + 1)  # the fixture server runs with --max-body-mb 1
    r = http.post("/v2/models/pair/infer", content=big)
    assert r.status_code == 413
    assert "limit" in r.json()["error"]

    def chunks():  # no Content-Length: the limit must still stop it while streaming
        for _ in range(20):
            yield b"y" * 65536

    r = http.post("/v2/models/pair/infer", content=chunks())
    assert r.status_code == 413
    check_alive(http, sessions)


def test_wrong_method_and_timeout_parameter(http, sessions):
    r = http.get("/v2/models/pair/infer")
    assert r.status_code == 405 and "Allowed: POST" in r.json()["error"]
    r = infer_json(http, "pair", {"a": np.ones((1, 4), np.float32), "b": np.ones((1, 4), np.float32)},
                   parameters={"timeout": -1})
    assert r.status_code == 400 and "parameters.timeout" in r.json()["error"]
    check_alive(http, sessions)


def test_repeated_binary_header_reads_each_requests_own_bytes_and_checks_its_length(http, sessions):
    """The server keeps a checked plan per binary header (protocol.parse_request): a repeat of the same header
    must still answer from its own bytes, and a repeat whose binary part has another length is checked again."""
    s = sessions[("pair", "1")]
    head = {**_bin_inputs(), "outputs": [{"name": "sum", "parameters": {"binary_data": True}}]}
    for seed in range(3):
        a, b = np.random.default_rng(seed).random((2, 1, 4), dtype=np.float32)
        body, headers = _binary(head, a.tobytes() + b.tobytes())
        r = http.post("/v2/models/pair/infer", content=body, headers=headers)
        assert r.status_code == 200, r.text
        n = int(r.headers["inference-header-content-length"])
        np.testing.assert_array_equal(np.frombuffer(r.content[n:], "<f4").reshape(1, 4), s.run({"a": a, "b": b})["sum"])
    for blob, needle in ((b"\0" * 20, "runs past the end"), (b"\0" * 40, "8 bytes follow the JSON header")):
        body, headers = _binary(head, blob)
        r = http.post("/v2/models/pair/infer", content=body, headers=headers)
        assert r.status_code == 400, r.text
        assert needle in r.json()["error"]
