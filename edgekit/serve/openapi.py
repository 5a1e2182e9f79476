"""An OpenAPI 3.0 description of the routes ``edgekit serve`` answers (GET /openapi.json).

KServe v2 / Open Inference Protocol REST plus edgekit's classify and detect routes and /metrics, so schema-driven
fuzzers and client generators can run against a server. ``ROUTES`` is the list of (path, methods) the app
serves; tests/serve/test_hostile.py checks it against what the running server actually answers.
"""

from __future__ import annotations

from .. import __version__

_M = "/v2/models/{model_name}"
_V = "/v2/models/{model_name}/versions/{model_version}"

# path -> {method: (summary, request body schema name or None, response schema name)}
ROUTES: dict[str, dict[str, tuple]] = {
    "/v2/health/live": {"get": ("Server liveness", None, "Live"), "head": ("Server liveness", None, None)},
    "/v2/health/ready": {"get": ("Server readiness (503 while draining)", None, "Ready"),
                         "head": ("Server readiness", None, None)},
    "/v2": {"get": ("Server metadata", None, "ServerMetadata")},
    "/v2/repository/index": {"get": ("Loaded models", None, "RepositoryIndex"),
                             "post": ("Loaded models", None, "RepositoryIndex")},
    "/metrics": {"get": ("Prometheus metrics (text exposition 0.0.4)", None, "text")},
    "/openapi.json": {"get": ("This document", None, "object")},
    "/classify": {"post": ("Classify a JPEG/PNG image or WAV clip (only when one model is served)", "raw",
                           "Classification")},
    "/detect": {"post": ("Detect objects in a JPEG/PNG image (only when one detector is served)", "raw", "Detection")},
}
for _base in (_M, _V):
    ROUTES[_base] = {"get": ("Model metadata", None, "ModelMetadata")}
    ROUTES[_base + "/ready"] = {"get": ("Model readiness", None, "ModelReady"), "head": ("Model readiness", None, None)}
    ROUTES[_base + "/config"] = {"get": ("Triton-style model config", None, "object")}
    ROUTES[_base + "/infer"] = {"post": ("Inference: JSON tensors, or binary tensor data after a JSON header of "
                                         "Inference-Header-Content-Length bytes", "InferenceRequest",
                                         "InferenceResponse")}
    ROUTES[_base + "/classify"] = {"post": ("Classify a JPEG/PNG image or WAV clip with the model's preprocessing",
                                            "raw", "Classification")}
    ROUTES[_base + "/detect"] = {"post": ("Boxes of a detector (task 'detection') in a JPEG/PNG image, in the "
                                          "image's pixels", "raw", "Detection")}

_TENSOR_META = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
    "name": {"type": "string"}, "datatype": {"type": "string"},
    "shape": {"type": "array", "items": {"type": "integer"}}}}
_PARAMS = {"type": "object", "additionalProperties": True}
# Tensor data: a flat or nested array of numbers, booleans or strings (row-major). Finite numbers only:
# NaN and Infinity are not JSON (protocol.py says how they are handled).
_DATA = {"type": "array", "items": {}}

SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
    "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    "ModelReady": {"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
    "ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"], "properties": {
        "name": {"type": "string"}, "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}}}},
    "RepositoryIndex": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "version": {"type": "string"}, "state": {"type": "string"}}}},
    "ModelMetadata": {"type": "object", "required": ["name", "platform", "inputs", "outputs"], "properties": {
        "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": _TENSOR_META}, "outputs": {"type": "array", "items": _TENSOR_META}}},
    "InferenceRequest": {"type": "object", "required": ["inputs"], "properties": {
        "id": {"type": "string"}, "parameters": _PARAMS,
        "inputs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "shape", "datatype"], "properties": {
                "name": {"type": "string"}, "datatype": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "parameters": _PARAMS, "data": _DATA}}},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "parameters": _PARAMS}}}}},
    "InferenceResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
        "parameters": _PARAMS,
        "outputs": {"type": "array", "items": {**_TENSOR_META, "properties": {
            **_TENSOR_META["properties"], "parameters": _PARAMS, "data": _DATA}}}}},
    "Classification": {"type": "object", "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"}, "label": {"type": "string"},
        "score": {"type": "number"}, "softmax_applied": {"type": "boolean"},
        "predictions": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "label": {"type": "string"}, "score": {"type": "number"}}}}}},
    "Detection": {"type": "object", "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"},
        "width": {"type": "integer"}, "height": {"type": "integer"},
        "detections": {"type": "array", "items": {"type": "object", "properties": {
            "label": {"type": "string"}, "class": {"type": "integer"}, "score": {"type": "number"},
            "box": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number"},
                    "description": "x1, y1, x2, y2 in the posted image's pixels"}}}}}},
}

_ERRORS = {"400": "Bad request (the message names the problem)", "404": "No such model, version or route",
           "405": "Method not allowed", "408": "Headers or body did not arrive in time",
           "413": "Body, JSON part or decoded image over its limit", "415": "Unsupported media type",
           "422": "The answer can't be written as JSON (NaN or Infinity in an output)",
           "431": "Request headers too large", "503": "Queue full, connection limit or shutting down",
           "504": "The request timed out"}


def _response(schema: str | None) -> dict:
    if schema is None:
        return {"description": "OK (no body)"}
    if schema == "text":
        return {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
    ref = {"type": "object"} if schema == "object" else {"$ref": f"#/components/schemas/{schema}"}
    return {"description": "OK", "content": {"application/json": {"schema": ref}}}


def _operation(path: str, method: str, summary: str, body: str | None, out: str | None) -> dict:
    op: dict = {"summary": summary, "operationId": f"{method}_{path.strip('/').replace('/', '_') or 'root'}"
                .replace("{", "").replace("}", "").replace(".", "_"),
                "responses": {"200": _response(out), **{c: {"description": d, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}} for c, d in _ERRORS.items()}}}
    params = []
    for name in ("model_name", "model_version"):
        if "{" + name + "}" in path:
            params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    if path.endswith("classify"):
        params.append({"name": "top_k", "in": "query", "required": False,
                       "schema": {"type": "integer", "minimum": 1, "default": 5}})
    if path.endswith("detect"):
        params += [{"name": "score_threshold", "in": "query", "required": False,
                    "schema": {"type": "number", "minimum": 0, "maximum": 1}},
                   {"name": "max_detections", "in": "query", "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}]
    if path.endswith("/infer"):
        params.append({"name": "Inference-Header-Content-Length", "in": "header", "required": False,
                       "description": "Binary tensor data extension: the length of the JSON part",
                       "schema": {"type": "integer", "minimum": 0}})
    if params:
        op["parameters"] = params
    if body == "raw":
        kinds = ("image/jpeg", "image/png") if path.endswith("detect") else ("image/jpeg", "image/png", "audio/wav")
        op["requestBody"] = {"required": True, "content": {t: {"schema": {"type": "string", "format": "binary"}}
                                                           for t in kinds}}
    elif body:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    return op


def spec(app=None) -> dict:
    """The OpenAPI document; with ``app``, ``model_name`` is an enum of the models it serves."""
    doc = {"openapi": "3.0.3",
           "info": {"title": "edgekit serve", "version": __version__,
                    "description": "KServe v2 / Open Inference Protocol REST, plus classify, detect and /metrics"},
           "paths": {p: {m: _operation(p, m, *op) for m, op in methods.items()} for p, methods in ROUTES.items()},
           "components": {"schemas": SCHEMAS}}
    if app is not None:
        names = sorted({m.name for m in app.repo.models})
        versions = sorted({m.version for m in app.repo.models}, key=lambda v: (len(v), v))
        for item in doc["paths"].values():
            for op in item.values():
                for p in op.get("parameters", []):
                    if p["name"] == "model_name":
                        p["schema"] = {"type": "string", "enum": names}
                    elif p["name"] == "model_version":
                        p["schema"] = {"type": "string", "enum": versions}
    return doc
