"""Property-based HTTP fuzz of a real ``edgekit serve`` on 127.0.0.1 (hypothesis; the slow suite: -m slow).

Properties: whatever arrives — any method, a path built from the OpenAPI description's templates or near
misses of them, stray headers, random or mutated KServe v2 bodies, lying binary-extension lengths — the
server answers with a documented status (never 500), a JSON error body that strict parsers accept, a
route that exists exactly when /openapi.json lists it, and it stays healthy; its log has no traceback.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from urllib.parse import unquote

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from .test_hostile import FAST, hostile  # noqa: E402

pytestmark = pytest.mark.slow

DOCUMENTED = {200, 400, 404, 405, 408, 413, 415, 422, 431, 503, 504}
SETTINGS = settings(max_examples=int(os.environ.get("EDGEKIT_FUZZ_EXAMPLES", "1000")), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    s = hostile.Server(hostile.image_onnx(tmp / "img.onnx"), ["--max-json-mb", "1", "--max-body-mb", "2", *FAST],
                       tmp / "server.log")
    yield s
    assert s.stop() == 0
    log = s.log.read_text()
    assert "Traceback" not in log and "Internal error" not in log, log[-3000:]


@pytest.fixture(scope="module")
def spec(srv) -> dict:
    st_, body, _ = hostile.request(srv.host, srv.port, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert st_ == 200
    return json.loads(body)


def _strict(body: bytes):
    """The JSON document (strict: no bare NaN/Infinity); after it, exactly the binary outputs it announces."""
    dec = json.JSONDecoder(parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"bare {c}")))
    doc, end = dec.raw_decode(body.decode("latin-1"))  # the JSON part is ASCII: offsets are byte offsets
    if end < len(body):
        sizes = [o.get("parameters", {}).get("binary_data_size", 0) for o in doc["outputs"]]
        assert sum(sizes) == len(body) - end, (sizes, len(body) - end)
    return doc


def _templates(spec) -> list[tuple[re.Pattern, set]]:
    out = []
    for path, item in spec["paths"].items():
        rx = re.escape(path).replace(r"\{model_name\}", "[^/]+").replace(r"\{model_version\}", "[^/]+")
        out.append((re.compile(rx), set(item)))
    return out


STATUSES: Counter = Counter()  # what the fuzz saw, printed per test (-s) for the record


def _check(srv, raw: bytes, spec=None, method=None, path=None):
    status, body, _ = hostile.request(srv.host, srv.port, raw, timeout=30)
    STATUSES[status] += 1
    assert status in DOCUMENTED, (status, raw[:300], body[:300])
    if body[:1] == b"{":
        doc = _strict(body)
        if status != 200:
            assert isinstance(doc.get("error"), str) and doc["error"], body[:300]
    if spec is not None and status not in (400, 408, 431):
        # what the app routes on: the percent-decoded path, empty segments dropped
        clean = "/" + "/".join(p for p in unquote(path.split("?")[0]).split("/") if p)
        listed = [methods for rx, methods in _templates(spec) if rx.fullmatch(clean)]
        if status == 404:  # an unlisted route, or a listed one naming a model or version that is not served
            m = re.match(r"/v2/models/([^/]+)(?:/versions/([^/]+))?", clean)
            assert not listed or (m and (m[1] != "img" or m[2] not in (None, "1"))), (method, path)
        elif status == 405:
            assert listed and method.lower() not in set().union(*listed), (method, path)
        else:
            assert listed and method.lower() in set().union(*listed), (method, path, status)
    return status, body


SEGMENTS = ["v2", "models", "img", "versions", "1", "2", "infer", "classify", "ready", "config", "health",
            "live", "repository", "index", "metrics", "openapi.json", "", "..", "%2e", "x" * 300, "\u00e9", "%00"]


@st.composite
def paths(draw, spec_paths):
    if draw(st.integers(0, 3)):  # mostly the documented routes, mostly with the served model
        p = draw(st.sampled_from(spec_paths))
        p = p.replace("{model_name}", draw(st.sampled_from(["img"] * 4 + ["nope", "img%20"])))
        p = p.replace("{model_version}", draw(st.sampled_from(["1"] * 4 + ["0", "99", "-1", "x"])))
        if not draw(st.integers(0, 3)):
            p += "/" + draw(st.sampled_from(SEGMENTS))
    else:
        p = "/" + "/".join(draw(st.lists(st.sampled_from(SEGMENTS), max_size=6)))
    if draw(st.booleans()):
        p += "?" + draw(st.sampled_from(["top_k=3", "top_k=0", "top_k=abc", "top_k=" + "9" * 40, "a=b&c"]))
    return p.encode("utf-8").decode("latin-1")


BODIES = st.one_of(
    st.binary(max_size=300),
    st.just(b'{"inputs":[]}'),
    st.just(hostile.png_bytes(8, 8)),
    st.just(b"RIFF\x00\x00\x00\x00WAVEfmt "),
    st.just(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40),
)


def test_fuzz_routes_methods_and_bodies(srv, spec):
    spec_paths = sorted(spec["paths"])

    @SETTINGS
    @given(method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
           path=paths(spec_paths), body=BODIES,
           extra=st.lists(st.sampled_from(["Inference-Header-Content-Length: 5", "Inference-Header-Content-Length: -3",
                                           "Inference-Header-Content-Length: abc", "Content-Encoding: gzip",
                                           "Expect: 100-continue", "Content-Type: image/png",
                                           "X-" + "a" * 100 + ": b"]), max_size=3, unique=True))
    def run(method, path, body, extra):
        head = "".join(h + "\r\n" for h in extra)
        raw = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
               f"{head}\r\n").encode("latin-1") + body
        _check(srv, raw, spec, method, path)

    STATUSES.clear()
    run()
    print("routes fuzz:", dict(STATUSES))
    assert STATUSES[200] > 50 and STATUSES[404] > 50 and STATUSES[405] > 50
    assert hostile.request(srv.host, srv.port, hostile.HEALTH)[0] == 200


NUM = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False, width=32),
                st.booleans(), st.text(max_size=3), st.none())
NESTED = st.recursive(st.lists(NUM, max_size=8), lambda inner: st.lists(inner, max_size=4), max_leaves=40)
DTYPES = ["FP32", "FP16", "FP64", "INT8", "INT64", "UINT8", "BOOL", "BYTES", "fp32", ""]


@st.composite
def infer_docs(draw):
    def maybe(strategy, default):
        return draw(strategy) if draw(st.integers(0, 4)) == 0 else default

    rows = draw(st.integers(0, 3))
    shape = maybe(st.lists(st.integers(-2, 40), max_size=5), [rows, 32, 32, 3])
    n = int(np.prod([max(d, 0) for d in shape])) if isinstance(shape, list) and shape else 0
    data = maybe(NESTED, [0.5] * min(n, 20000))
    item = {"name": maybe(st.sampled_from(["x", "", "scores"]), "image"), "shape": shape,
            "datatype": maybe(st.sampled_from(DTYPES), "FP32"), "data": data}
    for key in draw(st.lists(st.sampled_from(["name", "shape", "datatype", "data"]), max_size=2, unique=True)):
        item.pop(key)
    doc = {"inputs": maybe(st.sampled_from([[], {}, None, [item, item], [1]]), [item])}
    if draw(st.booleans()):
        doc["outputs"] = maybe(st.sampled_from([[{"name": "nope"}], [{}], "x", [{"name": "scores", "parameters": {
            "classification": -1}}]]), [{"name": "scores", "parameters": {"classification": draw(st.integers(0, 5))}}])
    if draw(st.booleans()):
        doc["parameters"] = maybe(st.sampled_from([[], {"timeout": 0}, {"timeout": "x"}]),
                                  {"timeout": draw(st.integers(1, 10**7)), "binary_data_output": draw(st.booleans())})
    if draw(st.booleans()):
        doc["id"] = maybe(st.sampled_from([1, None, [], "\u2603"]), "req-1")
    return doc


def test_fuzz_kserve_infer_documents(srv):
    @SETTINGS
    @given(doc=infer_docs(), mutate=st.sampled_from(["none", "truncate", "nan", "deep"]))
    def run(doc, mutate):
        body = json.dumps(doc).encode()
        if mutate == "truncate":
            body = body[: len(body) // 2]
        elif mutate == "nan":
            body = body.replace(b"0.5", b"NaN", 1)
        elif mutate == "deep":
            body = b'{"inputs":[{"name":"image","data":' + b"[" * 5000 + b"]" * 5000 + b"}]}"
        status, out = _check(srv, hostile.post("/v2/models/img/infer", body))
        assert status in (200, 400, 413, 422, 504), (status, out[:300])
        if status == 200 and out[:1] == b"{":
            assert _strict(out)["model_name"] == "img"

    STATUSES.clear()
    run()
    print("infer fuzz:", dict(STATUSES))
    assert STATUSES[200] > 0 and STATUSES[400] > 0
    assert hostile.request(srv.host, srv.port, hostile.INFER)[0] == 200


def test_fuzz_binary_extension_lengths(srv):
    x = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)

    @SETTINGS
    @given(size=st.just(x.nbytes) | st.integers(-5, x.nbytes + 10), header_delta=st.just(0) | st.integers(-20, 20),
           tail=st.just(0) | st.integers(-16, 16), binary_out=st.booleans())
    def run(size, header_delta, tail, binary_out):
        head = json.dumps({"inputs": [{"name": "image", "shape": [1, 32, 32, 3], "datatype": "FP32",
                                       "parameters": {"binary_data_size": size}}],
                           "parameters": {"binary_data_output": binary_out}}).encode()
        blob = x.tobytes()
        blob = blob[:len(blob) + tail] if tail < 0 else blob + b"\x00" * tail
        body = head + blob
        status, out = _check(srv, hostile.post("/v2/models/img/infer", body, "application/octet-stream",
                                               f"Inference-Header-Content-Length: {len(head) + header_delta}\r\n"))
        valid = size == x.nbytes and header_delta == 0 and tail == 0
        assert status == (200 if valid else 400), (status, size, header_delta, tail, out[:200])

    STATUSES.clear()
    run()
    print("binary fuzz:", dict(STATUSES))
    assert STATUSES[200] > 0 and STATUSES[400] > 0
