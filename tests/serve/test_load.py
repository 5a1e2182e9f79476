"""Behaviour under load: a bounded load test with every answer checked, dynamic batching, overload → 503,
per-request timeout → 504, metrics, and graceful shutdown that drains in-flight requests."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
import time

import httpx
import numpy as np
import pytest


def binary_request(inputs: dict[str, np.ndarray]) -> tuple[bytes, dict]:
    head = json.dumps({"inputs": [{"name": n, "shape": list(v.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": v.nbytes}} for n, v in inputs.items()],
                       "parameters": {"binary_data_output": True}}).encode()
    body = head + b"".join(v.astype("<f4").tobytes() for v in inputs.values())
    return body, {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}


def decode_binary(r: httpx.Response) -> dict[str, np.ndarray]:
    n = int(r.headers["inference-header-content-length"])
    head, off, out = json.loads(r.content[:n]), n, {}
    for o in head["outputs"]:
        size = o["parameters"]["binary_data_size"]
        out[o["name"]] = np.frombuffer(r.content[off:off + size], "<f4").reshape(o["shape"])
        off += size
    return out


def metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _http(reader, writer, host, port, path, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 keep-alive request on an open connection: a lean client so 16 of them cost little CPU."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
                 .encode() + body)
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    data = await reader.readexactly(int(hdrs["content-length"]))
    return status, hdrs, data


def test_load_2000_requests_16_clients_all_correct(server, sessions):
    """2,000 requests from 16 concurrent keep-alive clients, JSON and binary mixed, batch 1-3, over all three
    backends: no errors, and each answer equals the in-process Session's for that exact input."""
    versions = ["1", "2", "3"]
    rng = np.random.default_rng(42)
    pool = [rng.random((int(rng.integers(1, 4)), 32, 32, 3), dtype=np.float32) for _ in range(24)]
    expected = {(v, i): sessions[("tiny", v)].predict(x) for v in versions for i, x in enumerate(pool)}
    names = {v: (sessions[("tiny", v)].inputs[0].name, sessions[("tiny", v)].outputs[0].name) for v in versions}
    bodies = {}
    for v in versions:
        for i, x in enumerate(pool):
            in_name = names[v][0]
            bodies[(v, i, "binary")] = binary_request({in_name: x})
            bodies[(v, i, "json")] = (json.dumps({"inputs": [{"name": in_name, "shape": list(x.shape), "datatype": "FP32",
                                                               "data": x.ravel().tolist()}]}).encode(),
                                      {"Content-Type": "application/json"})
    before = httpx.get(server.url + "/metrics").text
    failures, done = [], [0]

    async def client(k: int):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            for j in range(125):
                i = (k * 131 + j * 7) % len(pool)
                v = versions[(k + j) % 3]
                kind = "json" if j % 4 == 0 else "binary"
                body, headers = bodies[(v, i, kind)]
                status, hdrs, data = await _http(reader, writer, server.host, server.port,
                                                 f"/v2/models/tiny/versions/{v}/infer", body, headers)
                done[0] += 1
                if status != 200:
                    failures.append((v, status, data[:200]))
                    continue
                if kind == "binary":
                    n = int(hdrs["inference-header-content-length"])
                    got = np.frombuffer(data[n:], "<f4").reshape(pool[i].shape[0], -1)
                else:
                    got = np.asarray(json.loads(data)["outputs"][0]["data"], np.float32).reshape(pool[i].shape[0], -1)
                if not np.allclose(got, expected[(v, i)], atol=1e-5):
                    failures.append((v, "mismatch", float(np.abs(got - expected[(v, i)]).max())))
        finally:
            writer.close()

    async def main():
        await asyncio.gather(*[client(k) for k in range(16)])

    def cpu(pid):
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    c0, s0 = time.process_time(), cpu(server.proc.pid)
    t0 = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - t0
    assert done[0] == 2000
    assert failures == [], failures[:5]
    after = httpx.get(server.url + "/metrics").text
    ok = sum(metric(after, "edgekit_requests_total", model="tiny", version=v, endpoint="infer", code="200")
             - metric(before, "edgekit_requests_total", model="tiny", version=v, endpoint="infer", code="200")
             for v in versions)
    assert ok == 2000
    print(f"2000 requests in {elapsed:.1f} s ({2000 / elapsed:.0f} req/s); CPU: client "
          f"{time.process_time() - c0:.1f} s, server {cpu(server.proc.pid) - s0:.1f} s")


def test_dynamic_batching_combines_concurrent_requests(serve_models, start_server):
    """With a queue delay, concurrent single-row requests run as shared batches; answers stay per-request."""
    from edgekit.runtime import load

    path = serve_models["tiny"]["1"]
    s = load(path, threads=1)
    srv = start_server(f"m={path}", "--max-batch-size", "8", "--max-queue-delay-ms", "200", "--threads", "1")
    try:
        rng = np.random.default_rng(7)
        xs = [rng.random((1, 32, 32, 3), dtype=np.float32) for _ in range(16)]
        results = [None] * 16

        async def one(i, c):
            body, headers = binary_request({s.inputs[0].name: xs[i]})
            r = await c.post("/v2/models/m/infer", content=body, headers=headers)
            results[i] = decode_binary(r)[s.outputs[0].name]

        async def main():
            async with httpx.AsyncClient(base_url=srv.url, timeout=30) as c:
                await asyncio.gather(*[one(i, c) for i in range(16)])

        asyncio.run(main())
        for x, got in zip(xs, results):
            np.testing.assert_allclose(got, s.predict(x), atol=1e-5)
        text = httpx.get(srv.url + "/metrics").text
        runs = metric(text, "edgekit_batch_size_count", model="m")
        rows = metric(text, "edgekit_batch_size_sum", model="m")
        assert rows == 16
        assert runs < 16, f"16 concurrent requests ran in {runs} batches: no batching happened"
        assert metric(text, "edgekit_batch_size_bucket", model="m", le="8.0") == runs  # never over the max
    finally:
        assert srv.stop() == 0


def test_overload_answers_503_at_once_and_timeout_504(serve_models, start_server):
    """A slow model, a queue of 2: a burst gets immediate 503s (not a growing queue), the rest succeed,
    and a tight per-request timeout answers 504. The server stays healthy throughout."""
    slow = serve_models["slow"]
    srv = start_server(f"slow={slow}", "--max-queue", "2", "--max-batch-size", "1", "--threads", "1")
    try:
        x = np.random.default_rng(0).random((4, 96, 96, 3), dtype=np.float32)  # ~0.1 s of work per request
        md = httpx.get(srv.url + "/v2/models/slow").json()
        body, headers = binary_request({md["inputs"][0]["name"]: x})
        # One request first, so the burst meets a warm server (decode pool, batcher thread, model): on a cold one
        # the first request could still be in the decode pool when the two queue slots filled (2 served, not 3).
        assert httpx.post(srv.url + "/v2/models/slow/infer", content=body, headers=headers, timeout=60).status_code == 200
        codes, times = [], []

        async def one(c):
            t = time.perf_counter()
            r = await c.post("/v2/models/slow/infer", content=body, headers=headers)
            times.append((r.status_code, time.perf_counter() - t))
            codes.append(r.status_code)
            if r.status_code == 503:
                assert "Queue full" in r.json()["error"] and r.headers["retry-after"] == "1"

        async def burst():
            async with httpx.AsyncClient(base_url=srv.url, timeout=60,
                                         limits=httpx.Limits(max_connections=40)) as c:
                await asyncio.gather(*[one(c) for _ in range(30)])

        asyncio.run(burst())
        assert set(codes) <= {200, 503}
        assert codes.count(503) >= 10 and codes.count(200) >= 3, codes
        ok_times = sorted(t for c, t in times if c == 200)
        rejected = sorted(t for c, t in times if c == 503)
        assert rejected[len(rejected) // 2] < ok_times[-1], "503s must come back before the queue drains"
        text = httpx.get(srv.url + "/metrics").text
        assert metric(text, "edgekit_errors_total", model="slow", reason="overload") == codes.count(503)
        assert metric(text, "edgekit_queue_depth", model="slow") == 0
        # per-request timeout: Triton's 'timeout' parameter (microseconds) shortens the server's limit
        head = json.loads(body[:int(headers["Inference-Header-Content-Length"])])
        head["parameters"]["timeout"] = 1000  # 1 ms: less than one run of this model
        h = json.dumps(head).encode()
        r = httpx.post(srv.url + "/v2/models/slow/infer", content=h + body[len(body) - x.nbytes:],
                       headers={"Inference-Header-Content-Length": str(len(h))}, timeout=30)
        assert r.status_code == 504 and "timed out" in r.json()["error"].lower()
        assert httpx.get(srv.url + "/v2/health/ready").status_code == 200
        r = httpx.post(srv.url + "/v2/models/slow/infer", content=body, headers=headers, timeout=30)
        assert r.status_code == 200
    finally:
        assert srv.stop() == 0


def test_metrics_exposition(server, sessions):
    s = sessions[("pair", "1")]
    a = np.ones((2, 4), np.float32)
    before = httpx.get(server.url + "/metrics").text
    for _ in range(3):
        r = httpx.post(server.url + "/v2/models/pair/infer", json={"inputs": [
            {"name": "a", "shape": [2, 4], "datatype": "FP32", "data": a.ravel().tolist()},
            {"name": "b", "shape": [2, 4], "datatype": "FP32", "data": a.ravel().tolist()}]})
        assert r.status_code == 200
    httpx.post(server.url + "/v2/models/pair/infer", content=b"{bad")
    r = httpx.get(server.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    for name, kind in (("edgekit_requests_total", "counter"), ("edgekit_errors_total", "counter"),
                       ("edgekit_request_duration_seconds", "histogram"), ("edgekit_batch_size", "histogram"),
                       ("edgekit_inference_duration_seconds", "histogram"), ("edgekit_queue_depth", "gauge")):
        assert f"# TYPE {name} {kind}" in text

    def delta(name, **lab):
        return metric(text, name, **lab) - metric(before, name, **lab)

    assert delta("edgekit_requests_total", model="pair", endpoint="infer", code="200") == 3
    assert delta("edgekit_requests_total", model="pair", endpoint="infer", code="400") == 1
    assert delta("edgekit_errors_total", model="pair", reason="bad_request") == 1
    assert delta("edgekit_request_duration_seconds_count", model="pair") == 4
    assert delta("edgekit_batch_size_sum", model="pair") == 6  # 3 runs x 2 rows
    # histogram buckets are cumulative and end at +Inf == count
    inf = metric(text, "edgekit_request_duration_seconds_bucket", model="pair", le="+Inf")
    assert inf == metric(text, "edgekit_request_duration_seconds_count", model="pair")
    assert re.search(r'edgekit_queue_depth\{model="pair",version="1"\} 0', text)
    assert re.search(r'edgekit_model_ready\{model="tiny",version="3"\} 1', text)


def test_graceful_shutdown_drains_in_flight_requests(serve_models, start_server):
    """SIGTERM while requests are queued and running: every accepted request still gets its 200,
    new connections are refused afterwards, and the process exits 0."""
    slow = serve_models["slow"]
    srv = start_server(f"slow={slow}", "--max-queue", "32", "--max-batch-size", "1", "--threads", "1")
    md = httpx.get(srv.url + "/v2/models/slow").json()
    x = np.random.default_rng(1).random((4, 96, 96, 3), dtype=np.float32)  # ~0.1 s of work per request
    body, headers = binary_request({md["inputs"][0]["name"]: x})
    codes = []

    def one():
        try:
            r = httpx.post(srv.url + "/v2/models/slow/infer", content=body, headers=headers, timeout=60)
            codes.append(r.status_code)
        except httpx.ConnectError:  # arrived after the listener closed: never accepted, fine
            codes.append("refused")
        except httpx.HTTPError as e:  # accepted and then dropped: exactly what draining must prevent
            codes.append(type(e).__name__)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    # wait until several requests are inside the server (queued or running), then ask it to stop
    deadline = time.monotonic() + 30
    inflight = 0
    while time.monotonic() < deadline:
        inflight = metric(httpx.get(srv.url + "/metrics").text, "edgekit_inflight_requests")
        if inflight >= 4:
            break
        time.sleep(0.005)
    else:
        pytest.fail(f"only {inflight} requests ever in flight together")
    t0 = time.perf_counter()
    rc = srv.stop()
    for t in threads:
        t.join(30)
    assert set(codes) <= {200, "refused"}, codes
    assert codes.count(200) >= inflight, codes
    assert rc == 0
    with pytest.raises(OSError):
        socket.create_connection((srv.host, srv.port), timeout=2).close()
    print(f"drained {inflight:.0f}+ in-flight requests in {time.perf_counter() - t0:.2f} s")
