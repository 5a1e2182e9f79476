"""Demo apps on the device-side runtime: a camera classifier and a streaming keyword spotter.

    from edgekit.apps import open_model
    from edgekit.apps.camera import CameraDemo, open_source
    from edgekit.apps.kws import KeywordSpotter, score

Both take a local model file (through ``edgekit.runtime``) or the URL of an ``edgekit serve`` server
(``edgekit.apps.remote``). Device side: NumPy, OpenCV, sounddevice; never TensorFlow or Keras.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["open_model", "model_kind", "model_labels", "probabilities", "top_k"]


def open_model(model: str | None = None, url: str | None = None, device: str = "cpu", threads: int | None = None):
    """A local ``Session`` for a model file, or a ``RemoteModel`` for a server URL (exactly one of the two)."""
    if bool(model) == bool(url):
        raise ConfigError("Give exactly one of a model file (--model) or a server URL (--url); "
                          f"received model={model!r}, url={url!r}")
    if url:
        from .remote import RemoteModel

        return RemoteModel(url)
    from ..runtime import load

    return load(model, device=device, threads=threads)


def model_kind(model) -> str:
    """'image', 'audio' or 'none': what the model's preprocessing metadata says it takes."""
    kind = getattr(model, "kind", None)
    if kind is not None:
        return kind
    meta = getattr(model, "meta", None)
    pre = (meta.preprocessing if meta is not None else None) or {}
    return str(pre.get("type") or "none")


def model_labels(model, n: int) -> list[str]:
    labels = list(getattr(model, "labels", None) or [])
    return labels + [str(i) for i in range(len(labels), n)]


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Scores as probabilities: unchanged when they already are (softmax output), else softmax."""
    from ..serve.preprocess import softmax_if_needed  # the server's rule, so local and remote agree

    return softmax_if_needed(scores)[0].astype(np.float32)


def top_k(probs: np.ndarray, labels: list[str], k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"label": labels[i] if i < len(labels) else str(int(i)), "index": int(i), "score": round(float(probs[i]), 4)}
            for i in order]
