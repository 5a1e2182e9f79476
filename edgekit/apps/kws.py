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

import json
import queue
import struct
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, MissingDependencyError, ModelError, UnsupportedError
from . import model_kind, model_labels, probabilities

# Defaults tuned on espeak streams (synth seeds 11-14; the benchmark scores seeds 0-4) with a ds_cnn_s
# trained on shifted clips: averaging 7 hops turns a word's run of high posteriors into one crossing
# and keeps the brief spikes that distractor speech causes below the threshold. Re-checked (issue 13)
# with the default built-in model on DECtalk tuning streams (seeds 11-14), a voice it never heard:
# threshold 0.5-0.6 or 300-500 ms smoothing found 3-8 more of 80 keywords but 4-9x the false alarms on
# streams with distractor speech (6 -> 22-53 in 4 minutes), so these stay.
HOP_MS, SMOOTH_MS, THRESHOLD, REFRACTORY_MS = 100.0, 700.0, 0.7, 1000.0

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
class Detection:
    label: str
    time: float  # seconds from the start of the stream to the end of the window that fired
    score: float  # the smoothed posterior that crossed the threshold
    index: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["time"], d["score"] = round(self.time, 3), round(self.score, 4)
        return d


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


def _is_keyword(label: str) -> bool:
    # Speech Commands convention: "_silence_" and "_unknown_" are the non-keyword classes.
    return not (label.startswith("_") and label.endswith("_"))


class _Hops:
    """Cuts any block sizes into hops: ``_feed`` takes audio, ``_classify`` scores the window at each hop."""

    sample_rate: int
    hop_samples: int
    _next: int  # stream position (samples) of the next window's end
    samples = 0

    def push(self, block: np.ndarray):
        """Yield (time of the window's end, probabilities) for each hop completed by this block."""
        x = np.asarray(block, np.float32).reshape(-1)
        while x.size:
            take = min(x.size, self._next - self.samples)
            self._feed(x[:take])
            self.samples += take
            x = x[take:]
            if self.samples == self._next:
                self._next += self.hop_samples
                yield self.samples / self.sample_rate, self._classify()


class _LocalPosteriors(_Hops):
    """Audio blocks -> streaming features -> one posterior vector per hop, on a local Session."""

    def __init__(self, session, hop_ms: float):
        from ..features import Frontend

        pre = session.meta.preprocessing if session.meta is not None else {}
        try:
            self.frontend = Frontend.from_preprocessing(pre)
        except ConfigError as e:
            raise ModelError(f"{session.path.name}: its audio preprocessing metadata is unusable: {e}") from None
        fe = self.frontend
        self.sample_rate = fe.sample_rate
        shape = tuple(session.inputs[0].shape[1:])
        want = fe.output_shape
        if shape not in (want, want + (1,)):
            raise ModelError(f"{session.path.name} takes input {list(session.inputs[0].shape)} but its front-end "
                             f"gives {list(want)} per window; the metadata does not match the model")
        self._shape = (1,) + shape
        # Hops are whole feature frames, so every window is exactly the batch front-end's output.
        self.hop_frames = max(1, int(round(hop_ms / 1000 * fe.sample_rate / fe.frame_step)))
        self.hop_samples = self.hop_frames * fe.frame_step
        self.hop_ms = 1000.0 * self.hop_samples / fe.sample_rate
        self.window_s = fe.clip_samples / fe.sample_rate
        self.session = session
        self.stream = fe.stream()
        self._next = fe.clip_samples

    def _feed(self, x: np.ndarray) -> None:
        self.stream.push(x)

    def _classify(self) -> np.ndarray:
        return probabilities(self.session.predict(self.stream.window().reshape(self._shape)))


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

    def __init__(self, model, *, hop_ms: float = HOP_MS, smooth_ms: float = SMOOTH_MS, threshold: float = THRESHOLD,
                 refractory_ms: float = REFRACTORY_MS, keywords: list[str] | None = None):
        for name, v, lo in (("hop_ms", hop_ms, 1), ("smooth_ms", smooth_ms, 0), ("refractory_ms", refractory_ms, 0)):
            if not v >= lo:
                raise ConfigError(f"{name} must be >= {lo}; received {v}")
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"threshold must be in (0, 1]; received {threshold}")
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
        self.smooth_n = max(1, int(round(smooth_ms / self.hop_ms)))
        self.threshold = float(threshold)
        self.refractory_s = refractory_ms / 1000.0
        self._keywords_arg = list(keywords) if keywords else None
        self._kw_idx: np.ndarray | None = None
        self._history: deque = deque(maxlen=self.smooth_n)
        self._last_fire = -np.inf
        self._last_label: int | None = None
        self.inferences = 0
        self.processing_seconds = 0.0

    def _keyword_indices(self, n: int) -> np.ndarray:
        labels = model_labels(self.model, n)
        if self._keywords_arg is None:
            idx = [i for i, lab in enumerate(labels) if _is_keyword(lab)]
        else:
            unknown = [k for k in self._keywords_arg if k not in labels]
            if unknown:
                raise ConfigError(f"Unknown keyword(s) {', '.join(map(repr, unknown))}. The model's labels: {', '.join(labels)}")
            idx = [labels.index(k) for k in self._keywords_arg]
        if not idx:
            raise ModelError(f"The model has no keyword classes to detect (labels: {', '.join(labels)})")
        self.labels = labels
        return np.asarray(idx)

    def push(self, block: np.ndarray) -> list[Detection]:
        """Feed a block of mono float samples at the model's rate; returns the detections it completes."""
        t0 = time.perf_counter()
        out = []
        for t, probs in self.source.push(block):
            self.inferences += 1
            if self._kw_idx is None:
                self._kw_idx = self._keyword_indices(probs.shape[-1])
            self._history.append(probs.reshape(-1))
            smoothed = np.mean(self._history, axis=0)
            k = self._kw_idx[int(np.argmax(smoothed[self._kw_idx]))]
            s = float(smoothed[k])
            if self._last_label is not None and smoothed[self._last_label] < self.threshold:
                self._last_label = None  # that keyword has faded: it may fire again
            # The same keyword fires again only after its posterior dipped below the threshold, so one
            # long utterance still in the window after the refractory period is not a second detection.
            if s >= self.threshold and t - self._last_fire >= self.refractory_s and k != self._last_label:
                self._last_fire, self._last_label = t, int(k)
                out.append(Detection(self.labels[k], t, s, int(k)))
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
@dataclass
class Event:
    label: str
    start: float
    end: float


def load_events(path: str | Path) -> list[Event]:
    """Ground truth: JSON ``{"events": [{"label", "start", "end"}, ...]}`` or a bare list (seconds)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError(f"No such labels file: {p}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"Can't read labels file {p} as JSON: {e}") from None
    items = doc.get("events") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise DataError(f"{p}: expected a list of events or {{\"events\": [...]}}; received {type(items).__name__}")
    out = []
    for i, e in enumerate(items):
        try:
            ev = Event(str(e["label"]), float(e["start"]), float(e["end"]))
        except (TypeError, KeyError, ValueError):
            raise DataError(f"{p}: event {i} needs 'label', 'start' and 'end' (seconds); received {e!r}") from None
        if ev.end < ev.start:
            raise DataError(f"{p}: event {i} ends ({ev.end}) before it starts ({ev.start})")
        out.append(ev)
    return out


def score(detections: list[Detection], events: list[Event], *, window_s: float = 1.0, slack_s: float = 0.5,
          keywords: list[str] | None = None) -> dict:
    """Hits, misses and false alarms of ``detections`` against keyword ``events``.

    A detection (timestamped at the end of its window) hits a keyword event with the same label
    when the event was inside that window: ``start <= time <= end + window_s + slack_s`` (slack
    covers the smoothing delay). Each event is hit at most once; every other detection is a false
    alarm. Events whose label is not a keyword (distractors, ``keywords`` given) only count when detected.
    """
    kw_events = [e for e in events if (e.label in keywords if keywords else _is_keyword(e.label))]
    matched: set[int] = set()
    hits, false_alarms = [], []
    for d in sorted(detections, key=lambda d: d.time):
        best = None
        for i, e in enumerate(kw_events):
            if i in matched or e.label != d.label:
                continue
            if e.start <= d.time <= e.end + window_s + slack_s and (best is None or e.start < kw_events[best].start):
                best = i
        if best is None:
            false_alarms.append(d.to_dict())
        else:
            matched.add(best)
            hits.append({**d.to_dict(), "start": kw_events[best].start, "end": kw_events[best].end})
    misses = [asdict(e) for i, e in enumerate(kw_events) if i not in matched]
    n = len(kw_events)
    return {"keywords": n, "hits": len(hits), "misses": len(misses), "false_alarms": len(false_alarms),
            "recall": round(len(hits) / n, 4) if n else None,
            "precision": round(len(hits) / len(detections), 4) if detections else None,
            "hit_list": hits, "miss_list": misses, "false_alarm_list": false_alarms}


def print_detection(d: Detection, file=sys.stdout) -> None:
    print(f"{d.time:8.2f}s  {d.label:<10} {d.score:.3f}", file=file, flush=True)
