"""The ASGI application: KServe v2 REST routes, a classify route for apps, /metrics.

Plain ASGI rather than a framework: the routes are few, and owning the body read lets the size
limit stop a request before it is buffered, with no per-request framework objects on the hot path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

from .. import __version__
from ..errors import EdgekitError
from . import protocol
from .errors import REFUSED, MethodNotAllowed, NotFound, NotRepresentable, RequestError, Timeout, TooLarge, refused

log = logging.getLogger("edgekit.serve")

EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "parameters"]
_JSON = [(b"content-type", b"application/json")]


class Response(Exception):
    """A finished response, raised from deep inside a handler (errors) or returned."""

    def __init__(self, status: int, body: bytes | dict | list, headers=None):
        self.status = status
        if isinstance(body, (dict, list)):
            try:  # strict JSON: NaN/Infinity are not JSON (protocol.encode_response says why we refuse them)
                body = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
            except ValueError:
                raise NotRepresentable("The answer holds a non-finite number (NaN or Infinity), which JSON "
                                       "can't carry; the model produced it for this input") from None
            headers = headers or {"content-type": "application/json"}
        self.body = body
        self.headers = headers or {"content-type": "application/json"}


def _expire(fut: asyncio.Future, timeout_s: float):
    if not fut.done():
        fut.set_exception(Timeout(f"Request timed out after {timeout_s * 1000:.0f} ms"))


class App:
    def __init__(self, repo, config, metrics):
        self.repo = repo
        self.cfg = config
        self.metrics = metrics
        self.max_body = int(config.max_body_mb * 1024 * 1024)
        self.max_json = min(self.max_body, int(config.max_json_mb * 1024 * 1024))
        self.max_pixels = int(config.max_image_mp * 1e6)
        self.draining = False
        # Requests in progress on the server, counted from their headers: the HTTP layer's request tasks, set by
        # server._make_server (every request this app answers runs in one). Left empty, nothing runs inline.
        self.in_flight: set | frozenset = frozenset()
        self._openapi = None
        # Image decoding and big JSON parses run here, off the event loop, so health checks and other
        # requests keep being answered; two workers bound the memory such work can take at once.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="edgekit-parse")

    # -- ASGI entry --------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            await self._answer(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive, send):
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                # uvicorn has already waited for in-flight requests; finish whatever is still queued.
                self.draining = True
                await asyncio.get_running_loop().run_in_executor(None, self.repo.close, self.cfg.drain_timeout_s)
                self._pool.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _answer(self, scope, receive, send):
        t0 = time.perf_counter()
        labels = ["", "", "other"]
        try:
            resp = await self._route(scope, receive, labels)
        except Response as r:
            resp = r
        except EdgekitError as e:
            status = getattr(e, "status", 400)
            self.metrics.errors.inc((labels[0], labels[1], getattr(e, "reason", "bad_request")))
            resp = Response(status, {"error": str(e)})
            if status == 405:  # RFC 9110: a 405 says which methods the resource takes
                resp.headers = {**resp.headers, "allow": e.allow}
            if status == 503:  # overload or draining: tell well-behaved clients when to come back
                resp.headers = {**resp.headers, "retry-after": "1"}
        except asyncio.CancelledError:
            # uvicorn cancels what is still running when the drain timeout ends. Answer that plainly and end
            # the task here, rather than re-raising into uvicorn, which logs a traceback and answers 500.
            self.metrics.errors.inc((labels[0], labels[1], "shutting_down"))
            resp = Response(503, {"error": "The server shut down before this request finished"},
                            {"content-type": "application/json", "connection": "close"})
        except Exception as e:  # noqa: BLE001 - a bug must cost one request, not the server
            log.exception("Internal error on %s %s", scope.get("method"), scope.get("path"))
            self.metrics.errors.inc((labels[0], labels[1], "internal"))
            resp = Response(500, {"error": f"Internal server error: {type(e).__name__}: {e}"})
        headers = [(k.encode(), v.encode()) for k, v in resp.headers.items()]
        headers.append((b"content-length", str(len(resp.body)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": resp.body})
        m = self.metrics
        m.requests.inc((labels[0], labels[1], labels[2], str(resp.status)))
        if labels[2] in ("infer", "classify", "detect"):
            m.request_seconds.observe(time.perf_counter() - t0, (labels[0], labels[1]))

    async def _read_body(self, scope, receive, limit: int | None = None) -> bytes:
        """The whole body, refused with 413 as soon as it is known to exceed ``limit`` (default: the body limit)."""
        if limit is None or limit >= self.max_body:
            limit, flag = self.max_body, "--max-body-mb"
        else:  # a JSON-only body: the JSON limit, and the way around it
            flag = "--max-json-mb; send large tensors with the binary extension, Inference-Header-Content-Length"
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    raise RequestError(f"Bad Content-Length header {v.decode(errors='replace')!r}") from None
                if n > limit:
                    raise TooLarge(f"The body is {n} bytes; the limit is {limit} ({flag})")
        chunks, total = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                r = scope.get(REFUSED)  # the connection guard timed the read out and answered already
                if r is not None:
                    raise refused(r[0], r[1], "The body did not arrive in time")
                raise RequestError("The client disconnected before sending the whole body")
            chunk = msg.get("body", b"")
            if chunk:
                total += len(chunk)
                if total > limit:
                    raise TooLarge(f"The body is over the limit of {limit} bytes ({flag})")
                chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- routing -----------------------------------------------------------------------------
    async def _route(self, scope, receive, labels) -> Response:
        method = scope["method"]
        parts = [p for p in scope["path"].split("/") if p]
        if parts[:2] == ["v2", "models"] and len(parts) >= 3:
            name, rest, version = parts[2], parts[3:], None
            if rest[:1] == ["versions"]:
                if len(rest) < 2:
                    raise NotFound("Missing version number after /versions/")
                version, rest = rest[1], rest[2:]
            action = rest[0] if len(rest) == 1 else ("" if not rest else None)
            if action is None:
                raise NotFound(f"No such route: {scope['path']}")
            return await self._model_route(method, action, name, version, scope, receive, labels)
        if parts == ["classify"] or parts == ["detect"]:
            m = self.repo.default()
            if m is None:
                raise NotFound(f"Several models are served; POST to /v2/models/{{name}}/{parts[0]}. Available: "
                               + ", ".join(self.repo.names()))
            return await self._model_route(method, parts[0], m.name, None, scope, receive, labels)
        labels[2] = "health" if parts[:2] == ["v2", "health"] else "other"
        if parts == ["openapi.json"]:
            _need(method, "GET")
            labels[2] = "metadata"
            if self._openapi is None:
                from .openapi import spec

                self._openapi = Response(200, spec(self))
            return self._openapi
        if parts == ["v2", "health", "live"]:
            _need(method, "GET", "HEAD")
            return Response(200, {"live": True})
        if parts == ["v2", "health", "ready"]:
            _need(method, "GET", "HEAD")
            ready = not self.draining and bool(self.repo.models)
            return Response(200 if ready else 503, {"ready": ready})
        if parts == ["metrics"]:
            _need(method, "GET")
            labels[2] = "metrics"
            return Response(200, self.metrics.render().encode(),
                            {"content-type": "text/plain; version=0.0.4; charset=utf-8"})
        if parts == ["v2"]:
            _need(method, "GET")
            labels[2] = "metadata"
            return Response(200, {"name": "edgekit", "version": __version__, "extensions": EXTENSIONS})
        if parts == ["v2", "repository", "index"]:
            _need(method, "POST", "GET")
            labels[2] = "repository"
            return Response(200, [{"name": m.name, "version": m.version, "state": "READY"}
                                  for m in self.repo.models])
        raise NotFound(f"No such route: {scope['path']}")

    async def _model_route(self, method, action, name, version, scope, receive, labels) -> Response:
        model = self.repo.get(name, version)
        labels[0], labels[1] = model.name, model.version
        if action == "infer":
            labels[2] = "infer"
            _need(method, "POST")
            return await self._infer(model, scope, receive)
        if action == "classify":
            labels[2] = "classify"
            _need(method, "POST")
            return await self._classify(model, scope, receive)
        if action == "detect":
            labels[2] = "detect"
            _need(method, "POST")
            return await self._detect(model, scope, receive)
        # Another raw-payload route goes here the way classify and detect do: _raw_input (the body decoded with
        # preprocess.to_input in self._pool, never on the loop), self._run, then shape the answer; add it to
        # openapi.py and to the /classify-style shortcut in _route if it wants one.
        labels[2] = "metadata"
        if action == "":
            _need(method, "GET")
            return Response(200, model.metadata())
        if action == "ready":
            _need(method, "GET", "HEAD")
            ready = not self.draining
            return Response(200 if ready else 503, {"name": model.name, "ready": ready})
        if action == "config":
            _need(method, "GET")
            return Response(200, _triton_config(model))
        raise NotFound(f"No such route: {scope['path']}")

    # -- inference ---------------------------------------------------------------------------
    async def _run(self, model, feed, rows, key, timeout_s, outputs=None):
        loop = asyncio.get_running_loop()
        # Alone: no other request has its headers in. Counting only requests that had reached the app, at
        # concurrency 8 each request found the others' tasks not yet started, ran on the loop, and reading and
        # inference stopped overlapping: 0.77x of in-process throughput instead of >= 0.9x.
        alone = len(self.in_flight) == 1
        fut = model.batcher.submit(feed, rows, key, time.perf_counter() + timeout_s, outputs, alone=alone)
        # A timer instead of asyncio.wait_for: no extra task per request on the hot path.
        timer = loop.call_later(timeout_s, _expire, fut, timeout_s)
        self.metrics.inflight += 1
        try:
            return await fut
        finally:
            self.metrics.inflight -= 1
            timer.cancel()

    async def _infer(self, model, scope, receive) -> Response:
        header_len = None
        for k, v in scope["headers"]:
            if k == b"inference-header-content-length":
                header_len = v.decode("latin-1")
            elif k == b"content-encoding" and v.lower() not in (b"identity",):
                raise RequestError(f"Content-Encoding {v.decode('latin-1')!r} is not supported; send the body uncompressed")
        body = await self._read_body(scope, receive, self.max_json if header_len is None else None)
        json_part, binary = protocol.split_body(body, header_len)
        if len(json_part) > self.max_json:
            raise TooLarge(f"The JSON header is {len(json_part)} bytes; the limit is {self.max_json} (--max-json-mb)")
        if len(json_part) <= protocol.YIELDING_PARSE_BYTES:  # small: a thread hop would cost more than the parse
            req = protocol.parse_request(json_part, binary, model)
        else:
            req = await asyncio.get_running_loop().run_in_executor(
                self._pool, protocol.parse_request, json_part, binary, model)
        timeout = self.cfg.timeout_ms / 1000.0
        if req.timeout_s is not None:
            timeout = min(timeout, req.timeout_s)  # a client may shorten the server's limit, never extend it
        names = None
        if req.outputs is not None:
            names = sorted({o.name for o in req.outputs})
        results = await self._run(model, req.feed, req.batch, req.key, timeout, names)
        out, headers = protocol.encode_response(model, req, results)
        return Response(200, out, headers)

    async def _raw_input(self, model, scope, receive, what: str):
        """The request body (a JPEG/PNG image or a WAV clip) as the model's one input row, decoded off the loop;
        returns (feed, key, size): ``size`` is the image's (width, height), None for audio."""
        from .preprocess import to_input

        if len(model.input_info) != 1:
            raise RequestError(f"Model {model.name!r} has {len(model.input_info)} inputs; {what} needs a one-input model")
        body = await self._read_body(scope, receive)
        if not body:
            raise RequestError("Empty body: POST a JPEG/PNG image or a WAV clip")
        x, size = await asyncio.get_running_loop().run_in_executor(self._pool, to_input, model, body,
                                                                    self.max_pixels, True)
        feed = {next(iter(model.input_info)): x}
        key = tuple((n, a.shape[1:], a.dtype.str) for n, a in feed.items())
        return feed, key, size

    async def _classify(self, model, scope, receive) -> Response:
        from .preprocess import softmax_if_needed

        if model.task == "detection":
            raise RequestError(f"Model {model.name!r} is a detector; POST the image to "
                               f"/v2/models/{model.name}/detect for its boxes")
        qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            top_k = int(qs.get("top_k", ["5"])[0])
        except ValueError:
            raise RequestError(f"top_k must be an integer; received {qs['top_k'][0]!r}") from None
        if top_k < 1:
            raise RequestError(f"top_k must be at least 1; received {top_k}")
        feed, key, _ = await self._raw_input(model, scope, receive, "classify")
        x = next(iter(feed.values()))
        res = await self._run(model, feed, x.shape[0] if model.batch_flexible else 1, key,
                              self.cfg.timeout_ms / 1000.0, [model.output_names[0]])
        probs, applied = softmax_if_needed(res[model.output_names[0]][0])
        order = probs.argsort()[::-1][:top_k]
        preds = [{"index": int(i), "label": model.labels[i] if i < len(model.labels) else str(int(i)),
                  "score": float(probs[i])} for i in order]
        return Response(200, {"model_name": model.name, "model_version": model.version,
                              "label": preds[0]["label"], "score": preds[0]["score"],
                              "predictions": preds, "softmax_applied": applied})

    async def _detect(self, model, scope, receive) -> Response:
        """An image in, its boxes out: the artifact's own post-processing (runtime.boxes, the one NumPy decode
        and NMS every format shares), boxes in the posted image's pixels."""
        post = model.detector()
        qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        changes = {}
        for name, cast, low, high in (("score_threshold", float, 0.0, 1.0), ("max_detections", int, 1, 1000)):
            if name in qs:
                raw = qs[name][0]
                try:
                    v = cast(raw)
                except ValueError:
                    v = None
                if v is None or not low <= v <= high:  # NaN fails both comparisons
                    raise RequestError(f"{name} must be {'an integer' if cast is int else 'a number'} from {low:g} "
                                       f"to {high:g}; received {raw[:40]!r}")
                changes[name] = v
        if changes:
            post = dataclasses.replace(post, **changes)
        feed, key, size = await self._raw_input(model, scope, receive, "detect")
        if size is None:
            raise RequestError(f"Model {model.name!r} is a detector; POST a JPEG or PNG image")
        out = model.output_names[0]
        res = await self._run(model, feed, 1, key, self.cfg.timeout_ms / 1000.0, [out])
        dets = await asyncio.get_running_loop().run_in_executor(self._pool, post, res[out][:1])
        w, h = size
        return Response(200, {"model_name": model.name, "model_version": model.version, "width": w, "height": h,
                              "detections": dets[0].to_list(model.labels or None, size)})


def _need(method: str, *allowed: str):
    if method not in allowed:
        e = MethodNotAllowed(f"Method {method} is not allowed here. Allowed: {', '.join(allowed)}")
        e.allow = ", ".join(allowed)
        raise e


def _triton_config(model) -> dict:
    """A Triton-style model config, for tools that ask for one (perf_analyzer, dashboards)."""
    def dims(t):
        shape = protocol.wire_shape(t.shape)
        return shape[1:] if model.batchable else shape

    def entry(t):
        return {"name": t.name, "data_type": "TYPE_" + protocol.tensor_datatype(t),
                "dims": dims(t)}

    return {"name": model.name, "platform": model.session.backend,
            "max_batch_size": model.batcher.max_batch if model.batchable else 0,
            "input": [entry(t) for t in model.session.inputs],
            "output": [entry(t) for t in model.session.outputs],
            "dynamic_batching": {"max_queue_delay_microseconds": int(model.batcher.max_delay * 1e6)}
            if model.batchable else {}}
