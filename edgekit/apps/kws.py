"""Streaming keyword spotting: audio in, keyword detections with timestamps and scores out.

    spotter = KeywordSpotter(load("kws.tflite"), hop_ms=100, threshold=0.6)
    for chunk in blocks: for d in spotter.push(chunk): print(d)      # live (microphone)
    result = spotter.run(audio)                                        # a whole file, as a stream
    score(result.detections, events)                                   # hits, misses, false alarms

Audio goes through the streaming front-end (``edgekit.features``, built from the model's own
metadata, so the device computes exactly the features the model was trained on): each 20 ms of
audio adds one feature frame; every hop the last 1 s of frames (49 x 10) is classified. The
posteriors are averaged over a short window (smoothing), a keyword fires when its smoothed
posterior crosses the threshold, and a refractory period keeps one utterance from firing twice.
Device side: NumPy only (sounddevice for a live microphone); never TensorFlow or Keras.
"""

from __future__ import annotations

import queue
import struct
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, MissingDependencyError, ModelError, UnsupportedError
from . import model_kind, model_labels

# The defaults before calibration live with the post-processing (edgekit.apps.streams); a calibrated artifact
# carries its own operating point in its metadata (``postprocessing``), which the spotter uses unless told otherwise.
from .streams import HOP_MS, REFRACTORY_MS, SMOOTH_MS, THRESHOLD, Detection, Event, PostProcessor  # noqa: E402,F401
from .streams import _Hops, _LocalPosteriors, match  # noqa: E402,F401  (_LocalPosteriors: the tests' hook)
from .streams import is_keyword as _is_keyword  # noqa: E402

__all__ = ["KeywordSpotter", "Detection", "StreamResult", "RingBuffer", "score", "load_events", "read_audio",
           "listen", "microphone_available"]


class RingBuffer:
    """The newest ``capacity`` samples of a stream in a fixed array (no reallocation per block)."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ConfigError(f"Ring buffer capacity must be >= 1 sample; received {capacity}")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, np.float32)
        self._pos = 0  # where the next sample goes
        self.total = 0  # samples ever written

    def push(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32).reshape(-1)
        cap, n = self.capacity, x.shape[0]
        if n >= cap:
            self._buf[:] = x[-cap:]
            self._pos = 0
        else:
            end = self._pos + n
            if end <= cap:
                self._buf[self._pos:end] = x
            else:
                k = cap - self._pos
                self._buf[self._pos:] = x[:k]
                self._buf[:n - k] = x[k:]
            self._pos = end % cap
        self.total += n

    def latest(self, n: int | None = None) -> np.ndarray:
        """The last ``n`` samples in time order (zeros before the stream began)."""
        n = self.capacity if n is None else min(int(n), self.capacity)
        return np.concatenate([self._buf[self._pos:], self._buf[:self._pos]])[self.capacity - n:]


@dataclass
class StreamResult:
    detections: list[Detection]
    audio_seconds: float
    processing_seconds: float
    inferences: int
    hop_ms: float
    extra: dict = field(default_factory=dict)

    @property
    def real_time_factor(self) -> float:
        """Processing time / audio time: below 1 keeps up with a live stream; the goal is <= 0.1."""
        return self.processing_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def to_dict(self) -> dict:
        return {"detections": [d.to_dict() for d in self.detections], "audio_seconds": round(self.audio_seconds, 3),
                "processing_seconds": round(self.processing_seconds, 4),
                "real_time_factor": round(self.real_time_factor, 5), "inferences": self.inferences,
                "ms_per_inference": round(1000 * self.processing_seconds / max(self.inferences, 1), 3),
                "hop_ms": self.hop_ms, **self.extra}


class _RemotePosteriors(_Hops):
    """Audio blocks -> a 1-s ring buffer -> the server classifies the window as a WAV every hop."""

    def __init__(self, remote, hop_ms: float, sample_rate: int = 16000, window_s: float = 1.0):
        self.remote, self.sample_rate, self.window_s = remote, sample_rate, window_s
        self.hop_samples = max(1, int(round(hop_ms / 1000 * sample_rate)))
        self.hop_ms = 1000.0 * self.hop_samples / sample_rate
        self.ring = RingBuffer(int(round(window_s * sample_rate)))
        self._next = self.ring.capacity

    def _feed(self, x: np.ndarray) -> None:
        self.ring.push(x)

    def _classify(self) -> np.ndarray:
        return self.remote.classify_audio(self.ring.latest(), self.sample_rate)


class KeywordSpotter:
    """Streaming KWS on a local Session or a RemoteModel.

    hop_ms: how often the 1-s window is classified. smooth_ms: posteriors are averaged over this
    span. threshold: the smoothed keyword posterior that fires a detection. refractory_ms: after a
    detection, no other fires for this long. keywords: the labels that may fire (default: every
    label except ``_silence_``/``_unknown_``).
    """

    def __init__(self, model, *, hop_ms: float | None = None, smooth_ms: float | None = None,
                 threshold: float | None = None, refractory_ms: float | None = None, keywords: list[str] | None = None):
        from .streams import operating_point_of

        # The model's calibrated operating point (or the defaults), each argument given overriding it.
        op = operating_point_of(model, hop_ms=hop_ms, smooth_ms=smooth_ms, threshold=threshold,
                                refractory_ms=refractory_ms)
        hop_ms = op.hop_ms
        kind = model_kind(model)
        name = getattr(model, "name", None) or getattr(getattr(model, "path", None), "name", str(model))
        if kind != "audio":
            what = {"image": "images (image preprocessing)", "none": "no declared input kind (no preprocessing metadata)"}
            raise ModelError(f"Model {name} takes {what.get(kind, repr(kind))}; the microphone demo needs a keyword-spotting "
                             "model with audio preprocessing metadata (e.g. edgekit train ds_cnn_s keywords, then export)")
        self.model = model
        if hasattr(model, "classify_audio"):
            self.source = _RemotePosteriors(model, hop_ms)
        else:
            if len(model.inputs) != 1:
                raise ModelError(f"Model {name} has {len(model.inputs)} inputs; keyword spotting needs one")
            self.source = _LocalPosteriors(model, hop_ms)
        self.sample_rate = self.source.sample_rate
        self.hop_ms = self.source.hop_ms
        self.window_s = self.source.window_s
        self.operating_point = replace(op, hop_ms=self.hop_ms)
        self.smooth_n = max(1, int(round(op.smooth_ms / self.hop_ms)))
        self.threshold = float(op.threshold)
        self.refractory_s = op.refractory_ms / 1000.0
        self._keywords_arg = list(keywords) if keywords else None
        self._post: PostProcessor | None = None
        self.inferences = 0
        self.processing_seconds = 0.0

    def _postprocessor(self, n: int) -> PostProcessor:
        from .streams import keyword_indices

        self.labels = model_labels(self.model, n)
        return PostProcessor(self.labels, keyword_indices(self.labels, self._keywords_arg), self.operating_point)

    def push(self, block: np.ndarray) -> list[Detection]:
        """Feed a block of mono float samples at the model's rate; returns the detections it completes."""
        t0 = time.perf_counter()
        out = []
        for t, probs in self.source.push(block):
            self.inferences += 1
            if self._post is None:
                self._post = self._postprocessor(probs.shape[-1])
            d = self._post.push(t, probs)
            if d is not None:
                out.append(d)
        self.processing_seconds += time.perf_counter() - t0
        return out

    def run(self, audio: np.ndarray, block_ms: float = 100.0, on_detection=None) -> StreamResult:
        """Stream a whole recording through in ``block_ms`` blocks (as a microphone would deliver it)."""
        audio = np.asarray(audio, np.float32).reshape(-1)
        block = max(1, int(round(block_ms / 1000 * self.sample_rate)))
        dets: list[Detection] = []
        for i in range(0, audio.shape[0], block):
            for d in self.push(audio[i:i + block]):
                dets.append(d)
                if on_detection is not None:
                    on_detection(d)
        return StreamResult(dets, audio.shape[0] / self.sample_rate, self.processing_seconds, self.inferences,
                            self.hop_ms)


# -- audio input ---------------------------------------------------------------------------------
def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """A PCM WAV as float32 mono at ``sample_rate`` (resampled if needed); a clear error if unreadable."""
    from ..features.wav import read_wav

    p = Path(path)
    if not p.exists():
        raise DataError(f"No such WAV file: {p}")
    if p.is_dir():
        raise DataError(f"{p} is a folder; give a WAV file")
    try:
        audio = read_wav(p, sample_rate)
    except (RuntimeError, ValueError, struct.error) as e:  # the wave module's reactions to some corrupt headers
        raise DataError(f"Can't read WAV file {p}: {type(e).__name__} {e}".rstrip()) from None
    if audio.size == 0:
        raise DataError(f"WAV file {p} holds no audio")
    return audio


def _sounddevice():
    try:
        import sounddevice as sd
    except ImportError:
        raise MissingDependencyError("sounddevice", "demo", "Live microphone input") from None
    except OSError as e:  # the package is there but the PortAudio library is not
        raise UnsupportedError(f"No microphone/audio backend is available: sounddevice can't load PortAudio ({e}). "
                               "Install PortAudio (e.g. apt install libportaudio2) or pass a recording with --wav FILE") from None
    return sd


def microphone_available() -> tuple[bool, str]:
    """(True, device name) when a microphone can be opened, else (False, why)."""
    try:
        sd = _sounddevice()
        dev = sd.query_devices(kind="input")
        return True, str(dev.get("name", "default input"))
    except Exception as e:  # noqa: BLE001 - any failure means "no microphone", with the reason
        return False, str(e)


def listen(spotter: KeywordSpotter, *, duration: float | None = None, device=None, block_ms: float = 100.0,
           on_detection=None, on_start=None) -> StreamResult:
    """Spot keywords live from the microphone until ``duration`` seconds pass or Ctrl-C.

    ``on_start(device_name)`` is called once the microphone is open and listening.
    """
    sd = _sounddevice()
    try:
        name = str(sd.query_devices(device, kind="input").get("name", "microphone"))
    except Exception as e:  # noqa: BLE001 - PortAudio raises plain ValueError/PortAudioError
        raise UnsupportedError(f"No microphone found ({e}); pass a recording with --wav FILE") from None
    blocks: queue.Queue = queue.Queue()
    dropped = [0]

    def callback(indata, frames, t, status):
        if status:
            dropped[0] += 1
        blocks.put(indata[:, 0].copy())

    block = max(1, int(round(block_ms / 1000 * spotter.sample_rate)))
    dets: list[Detection] = []
    heard = 0
    try:
        with sd.InputStream(samplerate=spotter.sample_rate, channels=1, dtype="float32", blocksize=block,
                            device=device, callback=callback):
            if on_start is not None:
                on_start(name)
            t_end = None if duration is None else time.monotonic() + duration
            while t_end is None or time.monotonic() < t_end:
                try:
                    x = blocks.get(timeout=0.5)
                except queue.Empty:
                    continue
                heard += x.shape[0]
                for d in spotter.push(x):
                    dets.append(d)
                    if on_detection is not None:
                        on_detection(d)
    except KeyboardInterrupt:
        pass
    except sd.PortAudioError as e:
        raise UnsupportedError(f"Can't open the microphone: {e}") from None
    return StreamResult(dets, heard / spotter.sample_rate, spotter.processing_seconds, spotter.inferences,
                        spotter.hop_ms, {"overflows": dropped[0]})


# -- scoring against a labelled stream ----------------------------------------------------------
def load_events(path: str | Path) -> list[Event]:
    """Ground truth: JSON ``{"events": [{"label", "start", "end"}, ...]}`` or a bare list (seconds)."""
    from .streams import load_events as _load

    return _load(path, what="labels file")


def score(detections: list[Detection], events: list[Event], *, window_s: float = 1.0, slack_s: float = 0.5,
          keywords: list[str] | None = None) -> dict:
    """Hits, misses and false alarms of ``detections`` against keyword ``events`` (edgekit.apps.streams.match
    with a tolerance of ``window_s + slack_s`` after the word's end; slack covers the smoothing delay).
    Events whose label is not a keyword (distractors, ``keywords`` given) only count when detected."""
    kw_events = [e for e in events if (e.label in keywords if keywords else _is_keyword(e.label))]
    m = match(detections, kw_events, window_s + slack_s)
    hits = [{**d.to_dict(), "start": e.start, "end": e.end} for d, e in m["hits"]]
    n = len(m["keywords"])
    return {"keywords": n, "hits": len(hits), "misses": len(m["misses"]), "false_alarms": len(m["false_alarms"]),
            "recall": round(len(hits) / n, 4) if n else None,
            "precision": round(len(hits) / len(detections), 4) if detections else None,
            "hit_list": hits, "miss_list": [asdict(e) for e in m["misses"]],
            "false_alarm_list": [d.to_dict() for d in m["false_alarms"]]}


def print_detection(d: Detection, file=sys.stdout) -> None:
    print(f"{d.time:8.2f}s  {d.label:<10} {d.score:.3f}", file=file, flush=True)
