"""Remote mode: the demos classify through an ``edgekit serve`` server instead of a local model file.

The server's ``POST /v2/models/{name}/classify?top_k=N`` takes a JPEG/PNG image or a WAV clip and
applies the model's own preprocessing (from its metadata), so the client needs neither the model nor
its front-end. Asking for every class (``top_k`` = number of labels) gives the full posterior vector,
which the keyword spotter smooths exactly as it does locally. Standard library only (``http.client``
with one kept-alive connection), so a device needs nothing extra for this mode.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import wave
from urllib.parse import quote, urlsplit

import numpy as np

from ..errors import ConfigError, EdgekitError, ModelError

MAX_ANSWER_BYTES = 64 << 20  # the largest server answer read (JSON outputs of a big model fit many times over)


class ServerError(EdgekitError):
    """The server could not be reached or refused a request."""


class RemoteModel:
    """A model served by ``edgekit serve`` at ``url`` (``http://host:port`` or ``.../v2/models/NAME``).

    Same surface the demos use on a local Session: ``labels``, ``kind`` ("image"/"audio"),
    ``classify_image(bgr)`` and ``classify_audio(samples, sample_rate)`` returning probabilities.
    """

    backend = "remote"

    def __init__(self, url: str, timeout: float = 10.0):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"Server URL must look like http://HOST:PORT[/v2/models/NAME]; received {url!r}")
        self.url = url
        self._host, self._port, self._https, self._timeout = parts.hostname, parts.port, parts.scheme == "https", timeout
        self._conn: http.client.HTTPConnection | None = None
        path = [p for p in parts.path.split("/") if p]
        if not path:
            self.name, self.version = self._only_model(), None
        elif path[:2] == ["v2", "models"] and len(path) in (3, 5) and (len(path) == 3 or path[3] == "versions"):
            self.name, self.version = path[2], (path[4] if len(path) == 5 else None)
        else:
            raise ConfigError(f"Server URL path must be empty or /v2/models/NAME[/versions/N]; received {parts.path!r}")
        self._base = f"/v2/models/{quote(self.name)}" + (f"/versions/{quote(self.version)}" if self.version else "")
        md = self._json("GET", self._base)
        if not isinstance(md, dict):
            raise ServerError(f"{self.url}: the model's metadata is not a JSON object; is this an edgekit server?")
        params = md.get("parameters") or {}
        self.kind = params.get("preprocessing") or "none"
        self.num_labels = int(params.get("labels") or 0)
        try:  # a keyword spotter's calibrated operating point (edgekit.apps.streams), when the server has one
            self.postprocessing = json.loads(params.get("postprocessing") or "{}")
        except (TypeError, ValueError):
            self.postprocessing = {}
        self.platform = md.get("platform", "")
        self.inputs = md.get("inputs") or []
        if len(self.inputs) != 1:
            raise ModelError(f"Served model {self.name!r} has {len(self.inputs)} inputs; the demos need a one-input classifier")
        self.labels: list[str] = []

    def __repr__(self) -> str:
        return f"<RemoteModel {self.name} at {self.url}>"

    # -- HTTP --------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        # One retry on a fresh connection: a kept-alive socket the server has since closed is not an error.
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers or {})
                resp = conn.getresponse()
                raw = resp.read(MAX_ANSWER_BYTES + 1)  # an answer is bounded: a 300 MB one is not read whole
                if len(raw) > MAX_ANSWER_BYTES:
                    self.close()
                    raise ServerError(f"{self.url}: {method} {path} answered more than {MAX_ANSWER_BYTES >> 20} MB; "
                                      "not an edgekit server's answer")
                return resp.status, raw
            except (ConnectionError, http.client.HTTPException, socket.timeout, OSError) as e:
                self.close()
                if attempt:
                    raise ServerError(f"Can't reach the edgekit server at {self.url}: {e}") from None
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> dict:
        status, raw = self._request(method, path, body, headers)
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {"error": raw[:200].decode("latin-1", "replace")}
        except RecursionError:
            raise ServerError(f"{self.url}: {method} {path} answered JSON nested too deeply to be an answer") from None
        if status != 200:
            msg = doc.get("error") if isinstance(doc, dict) else None
            raise ServerError(f"{self.url}: {method} {path} answered {status}: {msg or raw[:200]!r}")
        return doc

    def _only_model(self) -> str:
        index = self._json("POST", "/v2/repository/index", b"{}", {"content-type": "application/json"})
        names = sorted({m["name"] for m in index if isinstance(m, dict) and "name" in m})
        if len(names) != 1:
            raise ConfigError(f"The server at {self.url} serves {len(names)} models ({', '.join(names) or 'none'}); "
                              "name one in the URL: .../v2/models/NAME")
        return names[0]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- classification ----------------------------------------------------------------------
    def classify(self, body: bytes, content_type: str) -> np.ndarray:
        """Probabilities for every class, by class index, for one encoded image or WAV clip."""
        k = max(self.num_labels, 1)
        doc = self._json("POST", f"{self._base}/classify?top_k={k}", body, {"content-type": content_type})
        preds = doc.get("predictions") or []
        n = max([self.num_labels] + [int(p["index"]) + 1 for p in preds])
        probs = np.zeros(n, np.float32)
        if len(self.labels) < n:
            self.labels = [str(i) for i in range(n)] if not self.labels else self.labels + [
                str(i) for i in range(len(self.labels), n)]
        for p in preds:
            probs[int(p["index"])] = float(p["score"])
            self.labels[int(p["index"])] = str(p.get("label", p["index"]))
        return probs

    def classify_image(self, bgr: np.ndarray) -> np.ndarray:
        import cv2

        # JPEG keeps the upload small; the server decodes, resizes and normalises per the model's metadata.
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise ServerError("Could not encode the frame as JPEG")
        return self.classify(buf.tobytes(), "image/jpeg")

    def classify_audio(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.classify(wav_bytes(samples, sample_rate), "audio/wav")


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Float audio in [-1, 1] as a 16-bit mono PCM WAV file in memory."""
    pcm = (np.clip(np.asarray(samples, np.float32), -1, 1) * 32767).astype("<i2")
    f = io.BytesIO()
    with wave.open(f, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return f.getvalue()


def is_url(value: str | None) -> bool:
    return bool(value) and value.lower().startswith(("http://", "https://"))
