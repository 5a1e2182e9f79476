"""``edgekit serve``: an inference server on the edgekit runtime speaking KServe v2 / Open Inference Protocol REST.

Device side: NumPy, the runtime backends, uvicorn, and pillow for image classify; never
TensorFlow or Keras. Submodules load lazily so ``import edgekit.serve`` stays cheap.

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
