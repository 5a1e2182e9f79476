"""``edgekit serve``: an inference server on the edgekit runtime speaking KServe v2 / Open Inference Protocol REST.

Device side: NumPy, the runtime backends, uvicorn, and pillow for image classify; never
TensorFlow or Keras. Submodules load lazily so ``import edgekit.serve`` stays cheap.

Routes (``{m}`` = ``/v2/models/NAME`` or ``/v2/models/NAME/versions/N``; no version = the highest):

    GET  /v2/health/live · /v2/health/ready (503 while draining) · /v2 (server metadata) · /metrics
    GET  {m} (model metadata) · {m}/ready · {m}/config (Triton-style)
    POST {m}/infer      JSON or binary tensors (Inference-Header-Content-Length), parameters, output selection,
                        classification extension ("classification": k)
    POST {m}/classify   a JPEG/PNG or WAV body → labels and scores (?top_k=5); /classify when one model is served
    POST /v2/repository/index
    GET  /openapi.json  an OpenAPI 3.0 description of all of the above (for schema-driven clients and fuzzers)

Hostile or careless clients are bounded (guard.py): header size and read time, body read time, stalls and
minimum rate (--min-body-rate-kb), idle keep-alive; the slowest connections are shed at --max-connections,
and health checks and /metrics are answered even when the table is full. JSON bodies have their own limit
(--max-json-mb) and big ones, like image decoding (--max-image-mp, and each side at most 16384 px), run
off the event loop. A body is read from the socket straight into one buffer (guard.py says why).

    from edgekit.serve import ServeConfig, ServerThread, serve
    serve(["model.tflite"], ServeConfig(port=8000))          # blocks; SIGTERM drains
    with ServerThread(["model.tflite"]) as s: print(s.url)   # port 0 → a free port
"""

from __future__ import annotations

from .config import ServeConfig

__all__ = ["ServeConfig", "serve", "build", "ServerThread", "discover"]


def __getattr__(name):
    if name in ("serve", "build", "ServerThread"):
        from . import server

        return getattr(server, name)
    if name == "discover":
        from .repository import discover

        return discover
    raise AttributeError(name)
