"""Keyword streams as an always-on device lives with them: post-processing, event matching, recall and
false alarms per hour, and the calibration of the operating point that ships in the artifact.

    from edgekit.apps.streams import Stream, evaluate_streams, calibrate
    s = Stream.from_files("talk.wav", "talk.json")             # a WAV plus its events (or none: negatives only)
    r = evaluate_streams("kws.tflite", [s])                     # recall, FA/h, per keyword, latency, DET curve
    op = calibrate("kws.tflite", calibration_streams)           # sweep, pick, write into the sidecar

One implementation for the microphone demo (``KeywordSpotter`` pushes one posterior vector at a time
through :class:`PostProcessor`), ``edgekit eval --stream`` and calibration (the posteriors of a stream are
computed once; :func:`detect` replays them under any operating point with the same decision rule).

Post-processing: posteriors are averaged over the last ``smooth_ms`` of hops (causal); the best keyword
fires when its smoothed posterior reaches its threshold, no detection follows another within
``refractory_ms``, and the same keyword fires again only after its posterior dipped below its threshold.
Matching: a detection (timestamped at the end of the window that fired) hits a keyword event of the
same label when ``start <= time <= end + tolerance_s``; each event is hit at most once; every other
detection is a false alarm. Device side: NumPy only, never TensorFlow or Keras.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, ModelError
from . import probabilities

__all__ = ["OperatingPoint", "PostProcessor", "Detection", "Event", "Stream", "posteriors", "detect", "match",
           "evaluate_streams", "det_curve", "sweep", "calibrate", "stream_recall_at_fa", "operating_point_of",
           "DEFAULT", "TOLERANCE_S"]

# The spotter's defaults before calibration. Tuned on espeak streams (synth seeds 11-14) with a ds_cnn_s trained
# on shifted clips: averaging 7 hops turns a word's run of high posteriors into one crossing. Re-checked (issue
# 13) on DECtalk tuning streams. A calibrated artifact carries its own (metadata ``postprocessing``).
HOP_MS, SMOOTH_MS, THRESHOLD, REFRACTORY_MS = 100.0, 700.0, 0.7, 1000.0
TOLERANCE_S = 1.5  # a hit may come up to the window (1 s) plus the smoothing delay after the word's end
DET_THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.30, 0.995, 0.01))
SMOOTH_GRID = (300.0, 500.0, 700.0, 1000.0)
REFRACTORY_GRID = (1000.0, 1500.0)


@dataclass(frozen=True)
class OperatingPoint:
    """Post-processing of the posteriors: what the spotter and the stream evaluation share."""

    threshold: float = THRESHOLD
    smooth_ms: float = SMOOTH_MS
    refractory_ms: float = REFRACTORY_MS
    hop_ms: float = HOP_MS
    thresholds: dict = field(default_factory=dict)  # per keyword, overriding ``threshold``

    def __post_init__(self):
        for name, v, lo in (("hop_ms", self.hop_ms, 1), ("smooth_ms", self.smooth_ms, 0),
                            ("refractory_ms", self.refractory_ms, 0)):
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= lo):
                raise ConfigError(f"{name} must be a number >= {lo}; received {v!r}")
        for k, t in [("threshold", self.threshold)] + [(f"thresholds[{k!r}]", v) for k, v in self.thresholds.items()]:
            if not (isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 < t <= 1.0):
                raise ConfigError(f"{k} must be in (0, 1]; received {t!r}")

    def threshold_of(self, label: str) -> float:
        return float(self.thresholds.get(label, self.threshold))

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["thresholds"]:
            d.pop("thresholds")
        return d

    @classmethod
    def from_dict(cls, d: dict | None, **overrides) -> "OperatingPoint":
        """From artifact metadata (unknown keys ignored), with ``overrides`` (None: keep) on top."""
        known = {"threshold", "smooth_ms", "refractory_ms", "hop_ms", "thresholds"}
        kw = {k: v for k, v in (d or {}).items() if k in known}
        kw.update({k: v for k, v in overrides.items() if v is not None})
        kw["thresholds"] = dict(kw.get("thresholds") or {})
        return cls(**kw)


DEFAULT = OperatingPoint()


def operating_point_of(model, **overrides) -> OperatingPoint:
    """The operating point a model ships with (metadata ``postprocessing``), else the defaults; flags override."""
    meta = getattr(model, "meta", None)  # a local Session; a RemoteModel has the server's copy
    pp = getattr(meta, "postprocessing", None) or getattr(model, "postprocessing", None) or {}
    try:
        op = OperatingPoint.from_dict(pp)
    except (ConfigError, TypeError) as e:
        name = getattr(getattr(model, "path", None), "name", model)
        raise ModelError(f"{name}: its postprocessing metadata is unusable ({e}); recalibrate or fix the sidecar") from None
    return OperatingPoint.from_dict(op.to_dict(), **overrides)


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


def is_keyword(label: str) -> bool:
    # Speech Commands convention: "_silence_", "_unknown_" (and "_noise_" in streams) are not keywords.
    return not (label.startswith("_") and label.endswith("_"))


class PostProcessor:
    """Smoothing, threshold and suppression over a stream of posterior vectors, one hop at a time."""

    def __init__(self, labels: list[str], keywords: list[int], op: OperatingPoint):
        self.labels, self.kw_idx, self.op = list(labels), np.asarray(keywords, int), op
        self.smooth_n = max(1, int(round(op.smooth_ms / op.hop_ms)))
        self.refractory_s = op.refractory_ms / 1000.0
        self.thr = np.array([op.threshold_of(self.labels[k]) for k in self.kw_idx], np.float64)
        self._history: list[np.ndarray] = []
        self.reset()

    def reset(self) -> None:
        self._history = []
        self._last_fire = -math.inf
        self._last: int | None = None  # position in kw_idx of the keyword that fired last, until it fades

    def decide(self, t: float, smoothed: np.ndarray) -> Detection | None:
        """The rule, on one hop's smoothed posteriors (all classes)."""
        s = smoothed[self.kw_idx].astype(np.float64)
        if self._last is not None and s[self._last] < self.thr[self._last]:
            self._last = None  # that keyword has faded: it may fire again
        # The best keyword relative to its own threshold (one threshold: simply the best keyword).
        j = int(np.argmax(s - self.thr))
        if s[j] >= self.thr[j] and t - self._last_fire >= self.refractory_s - 1e-9 and j != self._last:
            self._last_fire, self._last = t, j
            k = int(self.kw_idx[j])
            return Detection(self.labels[k], float(t), float(s[j]), k)
        return None

    def quiet(self) -> None:
        """A hop where no keyword reaches its threshold: only the fading matters (see :func:`detect`)."""
        self._last = None

    def push(self, t: float, probs: np.ndarray) -> Detection | None:
        self._history.append(np.asarray(probs, np.float64).reshape(-1))
        if len(self._history) > self.smooth_n:
            self._history.pop(0)
        acc = np.zeros_like(self._history[0])
        for row in self._history:  # oldest first, exactly as smooth() adds them: same bits, same ties
            acc = acc + row
        return self.decide(t, acc / len(self._history))


def smooth(P: np.ndarray, n: int) -> np.ndarray:
    """Causal moving average over ``n`` hops (fewer at the start), added in the order PostProcessor.push
    adds them, so a posterior exactly at a threshold crosses it in both (a running sum would not)."""
    P = np.asarray(P, np.float64)
    acc = np.zeros_like(P)
    for k in range(min(n, len(P)) - 1, -1, -1):  # row i gets P[i-k], the oldest first
        acc[k:] += P[:len(P) - k]
    return acc / np.minimum(np.arange(1, len(P) + 1), n)[:, None]


def detect(times: np.ndarray, P: np.ndarray, labels: list[str], keywords: list[int], op: OperatingPoint,
           smoothed: np.ndarray | None = None) -> list[Detection]:
    """Detections of a whole stream's posteriors ``P`` [hops, classes] at ``times`` (the same rule as
    PostProcessor.push; only hops where some keyword reaches its threshold are visited)."""
    pp = PostProcessor(labels, keywords, op)
    S = smooth(P, pp.smooth_n) if smoothed is None else smoothed
    hot = np.flatnonzero((S[:, pp.kw_idx] >= pp.thr[None, :] - 1e-12).any(axis=1))
    out, prev = [], -2
    for i in hot:
        if i != prev + 1:
            pp.quiet()
        d = pp.decide(float(times[i]), S[i])
        if d is not None:
            out.append(d)
        prev = i
    return out


# -- streams and their truth --------------------------------------------------------------------
@dataclass
class Event:
    label: str
    start: float
    end: float
    speaker: str = ""  # who speaks it (events' "speaker", or "voice" as the built-in streams write it)


def speaker_of(event: dict) -> str:
    """The speaker of an event dict: its "speaker", else its "voice" without the built-in streams' tempo/pitch
    variant and accent ("flite:awb~2", "espeak:m3~1 (en-sc+m3)" -> "flite:awb", "espeak:m3"); "" if neither."""
    who = event.get("speaker")
    if who is None:
        who = re.sub(r"~\d+$", "", str(event.get("voice") or "").split(" (")[0])
    return str(who)[:200]


def check_events(items, where: str, labels: list[str] | None = None, duration: float | None = None) -> list[Event]:
    """Events from a list of dicts; unknown keyword labels, negative times, ends before starts, events past the
    stream's end and overlapping keyword events are DataErrors naming the event."""
    if not isinstance(items, list):
        raise DataError(f"{where}: expected a list of events or {{\"events\": [...]}}; received {type(items).__name__}")
    out = []
    for i, e in enumerate(items):
        try:
            ev = Event(str(e["label"]), float(e["start"]), float(e["end"]), speaker_of(e))
        except (TypeError, KeyError, ValueError, AttributeError):
            raise DataError(f"{where}: event {i} needs 'label', 'start' and 'end' (seconds); received {e!r}") from None
        if not (math.isfinite(ev.start) and math.isfinite(ev.end)) or ev.start < 0:
            raise DataError(f"{where}: event {i} ({ev.label}) has a negative or non-finite time: start {ev.start}, end {ev.end}")
        if ev.end < ev.start:
            raise DataError(f"{where}: event {i} ({ev.label}) ends ({ev.end}) before it starts ({ev.start})")
        if duration is not None and ev.start > duration + 1e-3:
            raise DataError(f"{where}: event {i} ({ev.label}) starts at {ev.start} s, after the stream's end ({duration:.3f} s)")
        if labels is not None and is_keyword(ev.label) and ev.label not in labels:
            raise DataError(f"{where}: event {i} has label {ev.label!r}, not one of the model's keywords "
                            f"({', '.join(l for l in labels if is_keyword(l))}); non-keyword speech is '_unknown_'")
        out.append(ev)
    kws = sorted((e for e in out if is_keyword(e.label)), key=lambda e: e.start)
    for a, b in zip(kws, kws[1:]):
        if b.start < a.end:
            raise DataError(f"{where}: keyword events overlap: {a.label} {a.start}-{a.end} s and {b.label} "
                            f"{b.start}-{b.end} s; one keyword at a time")
    return out


def load_events(path, duration: float | None = None, what: str = "events file") -> list[Event]:
    """Events from JSON ``{"events": [{"label", "start", "end"}, ...]}`` or a bare list (seconds), checked."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise DataError(f"No such {what}: {p}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"Can't read {what} {p} as JSON: {e}") from None
    return check_events(doc.get("events") if isinstance(doc, dict) else doc, str(p), duration=duration)


@dataclass
class Stream:
    """A recording (float32 mono at ``sample_rate``) and its keyword events (none: a negative stream)."""

    name: str
    audio: np.ndarray
    events: list[Event]
    sample_rate: int = 16000
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.audio.shape[0] / self.sample_rate

    @property
    def keywords(self) -> list[Event]:
        return [e for e in self.events if is_keyword(e.label)]

    @classmethod
    def from_files(cls, wav, events=None, sample_rate: int = 16000) -> "Stream":
        """Read a WAV (resampled to ``sample_rate`` and mixed to mono, with a note) and its events JSON
        (``{"events": [{"label", "start", "end"}]}`` or a bare list; None: a negative-only stream)."""
        from ..features.wav import read_wav

        p = Path(wav)
        if not p.is_file():
            raise DataError(f"No such WAV file: {p}" if not p.exists() else f"{p} is a folder; give a WAV file")
        notes = []
        try:
            import wave

            with wave.open(str(p), "rb") as w:
                ch, sr = w.getnchannels(), w.getframerate()
        except (wave.Error, EOFError, OSError) as e:
            raise DataError(f"Can't read WAV file {p}: {e}") from None
        if ch != 1 or sr != sample_rate:
            notes.append(f"{p.name}: {sr} Hz, {ch} channel(s) -> resampled to {sample_rate} Hz mono")
        audio = read_wav(p, sample_rate)
        evs: list[Event] = []
        if events is not None:
            evs = load_events(events, duration=audio.shape[0] / sample_rate)
        return cls(p.stem, audio, evs, sample_rate, notes)


def load_streams(paths, events=None, sample_rate: int = 16000) -> list[Stream]:
    """Streams from WAV files and folders. ``events``: the events file of a single WAV. In a folder each
    ``X.wav`` with an ``X.json`` beside it is a keyword stream, every other WAV a negative recording."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if events is not None and (len(paths) != 1 or paths[0].is_dir()):
        raise ConfigError("An events file goes with one WAV stream; for a folder put X.json beside each X.wav")
    out = []
    for p in paths:
        if p.is_dir():
            wavs = sorted(p.glob("*.wav"))
            if not wavs:
                raise DataError(f"{p} holds no .wav files")
            for w in wavs:
                j = w.with_suffix(".json")
                out.append(Stream.from_files(w, j if j.exists() else None, sample_rate))
        else:
            out.append(Stream.from_files(p, events, sample_rate))
    return out


# -- posteriors through the runtime -------------------------------------------------------------
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


def open_spotter_model(model, device: str = "cpu", threads: int | None = None):
    """A runtime Session of a keyword-spotting model (a path or a Session); a clear ModelError otherwise."""
    from . import model_kind

    if isinstance(model, (str, Path)):
        from ..runtime import load

        model = load(model, device=device, threads=threads)
    if model_kind(model) != "audio":
        raise ModelError(f"{getattr(model, 'path', model)} is not a keyword-spotting model (no audio preprocessing "
                         "metadata); stream evaluation needs one (e.g. edgekit train ds_cnn_s -d keywords, then export)")
    return model


def keyword_indices(labels: list[str], keywords: list[str] | None = None) -> list[int]:
    if keywords:
        unknown = [k for k in keywords if k not in labels]
        if unknown:
            raise ConfigError(f"Unknown keyword(s) {', '.join(map(repr, unknown))}. The model's labels: {', '.join(labels)}")
        idx = [labels.index(k) for k in keywords]
    else:
        idx = [i for i, lab in enumerate(labels) if is_keyword(lab)]
    if not idx:
        raise ModelError(f"The model has no keyword classes to detect (labels: {', '.join(labels)})")
    return idx


def posteriors(session, audio: np.ndarray, hop_ms: float = HOP_MS) -> tuple[np.ndarray, np.ndarray, dict]:
    """(times [hops], posteriors [hops, classes], cost) of a whole recording: the windows the streaming spotter
    classifies (its front-end's frames equal the batch front-end's on the whole stream, so they are computed
    at once and cut), in batches where the model takes them."""
    import time

    src = _LocalPosteriors(session, hop_ms)  # the spotter's own hop and window arithmetic and checks
    fe, sr = src.frontend, src.sample_rate
    if audio.shape[0] < fe.clip_samples:
        raise DataError(f"The stream is {audio.shape[0] / sr:.3f} s long, shorter than one "
                        f"{src.window_s:g}-s window of the model; nothing to classify")
    t0 = time.perf_counter()
    n_frames, chunk = fe.num_frames(audio.shape[0]), 4096
    feats = np.concatenate([fe.frames_to_features(fe.frame(audio[j * fe.frame_step:
                                                                 (min(j + chunk, n_frames) - 1) * fe.frame_step + fe.frame_length]))
                            for j in range(0, n_frames, chunk)])
    ends = np.arange(fe.clip_samples, audio.shape[0] + 1, src.hop_samples)
    last = 1 + (ends - fe.frame_length) // fe.frame_step  # frames complete when each window ends
    win = fe.num_frames()
    x = np.stack([feats[k - win:k] for k in last]).reshape((len(ends),) + src._shape[1:])
    batch = 32 if session.inputs[0].shape[0] in (None, -1) else 1  # 32: the fastest here (LiteRT, OpenVINO)
    rows = []
    for i in range(0, len(x), batch):
        out = np.asarray(session.predict(x[i:i + batch]))
        rows.extend(probabilities(out[j:j + 1]).reshape(-1) for j in range(out.shape[0]))
    sec = time.perf_counter() - t0
    cost = {"hops": len(rows), "hop_ms": src.hop_ms, "processing_s": round(sec, 4),
            "ms_per_hop": round(1000 * sec / max(len(rows), 1), 4),
            "real_time_factor": round(sec / (audio.shape[0] / sr), 5)}
    return ends / sr, np.asarray(rows, np.float32), cost


# -- matching and metrics -----------------------------------------------------------------------
def match(detections: list[Detection], events: list[Event], tolerance_s: float = TOLERANCE_S) -> dict:
    """Hits (with latency from the word's end), misses and false alarms of one stream (see module docs)."""
    kw = sorted((e for e in events if is_keyword(e.label)), key=lambda e: e.start)
    matched: set[int] = set()
    hits, fas = [], []
    for d in sorted(detections, key=lambda d: d.time):
        best = None
        for i, e in enumerate(kw):
            if i not in matched and e.label == d.label and e.start <= d.time <= e.end + tolerance_s:
                best = i
                break  # events are in time order: the earliest open one
        if best is None:
            fas.append(d)
        else:
            matched.add(best)
            hits.append((d, kw[best]))
    misses = [e for i, e in enumerate(kw) if i not in matched]
    return {"hits": hits, "misses": misses, "false_alarms": fas, "keywords": kw}


def per_speaker(matches: list[dict], streams: list[Stream], tolerance_s: float = TOLERANCE_S) -> list[dict]:
    """Recall and false alarms per speaker, worst recall first: keyword events by who speaks them; a false alarm
    counts against the speech event it falls in (up to ``tolerance_s`` after its end, the latest to start), with
    FA/h over that speaker's minutes of speech. Empty when no event names a speaker."""
    rows: dict[str, dict] = {}

    def row(who):
        return rows.setdefault(who, {"speaker": who, "events": 0, "hits": 0, "speech_min": 0.0, "false_alarms": 0})

    for m, s in zip(matches, streams):
        spoken = sorted((e for e in s.events if e.speaker and e.label != "_noise_"), key=lambda e: e.start)
        for e in spoken:
            row(e.speaker)["speech_min"] += (e.end - e.start) / 60
        for e in m["keywords"]:
            if e.speaker:
                row(e.speaker)["events"] += 1
        for _, e in m["hits"]:
            if e.speaker:
                row(e.speaker)["hits"] += 1
        for d in m["false_alarms"]:
            near = [e for e in spoken if e.start <= d.time <= e.end + tolerance_s]
            if near:
                row(near[-1].speaker)["false_alarms"] += 1
    out = []
    for r in rows.values():
        r["recall"] = round(r["hits"] / r["events"], 4) if r["events"] else None
        r["fa_per_hour"] = round(r["false_alarms"] / (r["speech_min"] / 60), 3) if r["speech_min"] else None
        r["speech_min"] = round(r["speech_min"], 2)
        out.append(r)
    return sorted(out, key=lambda r: (1.0 if r["recall"] is None else r["recall"], -r["false_alarms"], r["speaker"]))


def _summary(matches: list[dict], seconds: float, keywords: list[str]) -> dict:
    n = sum(len(m["keywords"]) for m in matches)
    hits = [h for m in matches for h in m["hits"]]
    fas = [d for m in matches for d in m["false_alarms"]]
    hours = seconds / 3600.0
    lat = np.array([d.time - e.end for d, e in hits]) if hits else np.zeros(0)
    per = []
    for k in keywords:
        nk = sum(1 for m in matches for e in m["keywords"] if e.label == k)
        hk = sum(1 for d, _ in hits if d.label == k)
        fk = sum(1 for d in fas if d.label == k)
        per.append({"keyword": k, "events": nk, "hits": hk, "recall": round(hk / nk, 4) if nk else None,
                    "false_alarms": fk, "fa_per_hour": round(fk / hours, 3) if hours else None})
    return {"keywords": n, "hits": len(hits), "misses": n - len(hits), "false_alarms": len(fas),
            "recall": round(len(hits) / n, 4) if n else None,
            "false_reject_rate": round(1 - len(hits) / n, 4) if n else None,
            "fa_per_hour": round(len(fas) / hours, 3) if hours else None, "hours": round(hours, 4),
            "latency_s": {"mean": round(float(lat.mean()), 3), "p50": round(float(np.median(lat)), 3),
                          "p95": round(float(np.percentile(lat, 95)), 3)} if lat.size else None,
            "per_keyword": per}


class _Scored:
    """A model's posteriors on a set of streams, computed once; scored under any operating point."""

    def __init__(self, model, streams: list[Stream], hop_ms: float = 100.0, keywords: list[str] | None = None,
                 device: str = "cpu", threads: int | None = None, quiet: bool = True):
        from . import model_labels

        self.session = open_spotter_model(model, device, threads)
        if not streams:
            raise ConfigError("No streams to evaluate on")
        self.streams = streams
        names = list((self.session.meta.labels if self.session.meta is not None else None) or [])
        for s in streams:  # before any work: a bad events file fails fast
            check_events([asdict(e) for e in s.events], s.name, names or None)
        self.runs, costs = [], []
        for i, s in enumerate(streams):
            sr = int((self.session.meta.preprocessing or {}).get("sample_rate", 16000))
            if s.sample_rate != sr:
                raise DataError(f"Stream {s.name} is at {s.sample_rate} Hz; the model takes {sr} Hz")
            t, P, cost = posteriors(self.session, s.audio, hop_ms)
            self.runs.append((t, P))
            costs.append(cost)
            if not quiet:
                print(f"  stream {i + 1}/{len(streams)} {s.name}: {s.seconds / 60:.1f} min, {cost['ms_per_hop']} ms/hop",
                      file=sys.stderr, flush=True)
        self.hop_ms = costs[0]["hop_ms"]
        self.labels = model_labels(self.session, self.runs[0][1].shape[1])
        self.kw = keyword_indices(self.labels, keywords)
        self.keyword_labels = [self.labels[k] for k in self.kw]
        if not names:
            for s in streams:
                check_events([asdict(e) for e in s.events], s.name, self.labels)
        self.seconds = sum(s.seconds for s in streams)
        proc = sum(c["processing_s"] for c in costs)
        hops = sum(c["hops"] for c in costs)
        self.cost = {"hops": hops, "hop_ms": self.hop_ms, "ms_per_hop": round(1000 * proc / max(hops, 1), 4),
                     "real_time_factor": round(proc / self.seconds, 5)}
        self._smoothed: dict = {}

    def detections(self, op: OperatingPoint) -> list[list[Detection]]:
        op = replace(op, hop_ms=self.hop_ms)
        n = max(1, int(round(op.smooth_ms / op.hop_ms)))
        out = []
        for i, (t, P) in enumerate(self.runs):
            if (i, n) not in self._smoothed:
                self._smoothed[i, n] = smooth(P, n)
            out.append(detect(t, P, self.labels, self.kw, op, self._smoothed[i, n]))
        return out

    def score(self, op: OperatingPoint, tolerance_s: float = TOLERANCE_S) -> tuple[dict, list[dict]]:
        ms = [match(d, s.events, tolerance_s) for d, s in zip(self.detections(op), self.streams)]
        return _summary(ms, self.seconds, self.keyword_labels), ms

    def counts(self, op: OperatingPoint, tolerance_s: float = TOLERANCE_S) -> tuple[int, int, int]:
        """(hits, keywords, false alarms) at ``op``: the sweep's inner loop."""
        h = n = f = 0
        for d, s in zip(self.detections(op), self.streams):
            m = match(d, s.events, tolerance_s)
            h, n, f = h + len(m["hits"]), n + len(m["keywords"]), f + len(m["false_alarms"])
        return h, n, f


def det_curve(scored: "_Scored", op: OperatingPoint, thresholds=DET_THRESHOLDS) -> list[dict]:
    """Recall and FA/h over thresholds (smoothing and refractory time of ``op``)."""
    out = []
    hours = scored.seconds / 3600.0
    for thr in thresholds:
        h, n, f = scored.counts(replace(op, threshold=float(thr), thresholds={}))
        out.append({"threshold": float(thr), "recall": round(h / n, 4) if n else None,
                    "fa_per_hour": round(f / hours, 3), "false_alarms": f})
    return out


def evaluate_streams(model, streams: list[Stream], op: OperatingPoint | None = None, *, keywords=None,
                     tolerance_s: float = TOLERANCE_S, device: str = "cpu", threads: int | None = None,
                     det: bool = True, quiet: bool = True, **overrides) -> dict:
    """Recall, false rejects, false alarms, FA/h, per keyword, latency, cost and a DET curve of ``model`` on
    ``streams`` at ``op`` (default: the model's calibrated operating point, ``overrides`` on top)."""
    sc = model if isinstance(model, _Scored) else _Scored(model, streams, overrides.get("hop_ms") or 100.0, keywords,
                                                         device, threads, quiet)
    if op is None:
        op = operating_point_of(sc.session, **overrides)
    op = replace(op, hop_ms=sc.hop_ms)
    summary, ms = sc.score(op, tolerance_s)
    pp = getattr(sc.session.meta, "postprocessing", None) or {}
    out = {"model": str(getattr(sc.session, "path", "")), "operating_point": op.to_dict(),
           "calibrated": bool(pp), "tolerance_s": tolerance_s,
           "streams": [{"name": s.name, "seconds": round(s.seconds, 2), "keywords": len(m["keywords"]),
                        "hits": len(m["hits"]), "false_alarms": len(m["false_alarms"]),
                        "false_alarm_list": [d.to_dict() for d in m["false_alarms"]],
                        "miss_list": [asdict(e) for e in m["misses"]]} for s, m in zip(sc.streams, ms)],
           "notes": [n for s in sc.streams for n in s.notes], **summary, "cost": sc.cost}
    speakers = per_speaker(ms, sc.streams, tolerance_s)
    if speakers:
        out["per_speaker"] = speakers
    if det:
        out["det_curve"] = det_curve(sc, op)
    return out


# -- calibration --------------------------------------------------------------------------------
def sweep(scored: "_Scored", target_fa_per_hour: float = 1.0, thresholds=DET_THRESHOLDS, smooth_grid=SMOOTH_GRID,
          refractory_grid=REFRACTORY_GRID) -> tuple[OperatingPoint, dict, list[dict]]:
    """The operating point with the most recall at FA/h <= target (ties: fewer false alarms, then the middle
    of the threshold run that ties, which leaves room on both sides); (point, its figures, every row)."""
    hours = scored.seconds / 3600.0
    rows = []
    for sm in smooth_grid:
        for rf in refractory_grid:
            for thr in thresholds:
                op = OperatingPoint(float(thr), float(sm), float(rf), scored.hop_ms)
                h, n, f = scored.counts(op)
                rows.append({"threshold": float(thr), "smooth_ms": sm, "refractory_ms": rf, "hits": h, "keywords": n,
                             "false_alarms": f, "recall": h / n if n else 0.0, "fa_per_hour": f / hours})
    ok = [r for r in rows if r["fa_per_hour"] <= target_fa_per_hour + 1e-9]
    if not ok:  # nothing meets the target: the fewest false alarms, then the most recall
        best = min(rows, key=lambda r: (r["false_alarms"], -r["hits"], -r["threshold"]))
        met = False
    else:
        top = max(ok, key=lambda r: (r["hits"], -r["false_alarms"]))
        tie = [r for r in ok if r["hits"] == top["hits"] and r["false_alarms"] == top["false_alarms"]]
        # The (smoothing, refractory) with the widest run of tying thresholds, and the middle of that run.
        groups: dict = {}
        for r in tie:
            groups.setdefault((r["smooth_ms"], r["refractory_ms"]), []).append(r)
        run = max(groups.values(), key=lambda g: (len(g), -g[0]["smooth_ms"]))
        best = run[len(run) // 2]
        met = True
    op = OperatingPoint(best["threshold"], best["smooth_ms"], best["refractory_ms"], scored.hop_ms)
    return op, {**{k: round(v, 4) if isinstance(v, float) else v for k, v in best.items()}, "target_met": met}, rows


def per_keyword(scored: "_Scored", op: OperatingPoint, margin: float = 0.05, step: float = 0.05) -> OperatingPoint:
    """Lower each keyword's threshold below the global one as far as it adds no false alarm on the calibration
    streams, plus ``margin`` back up (a keyword that never fires on speech needs less); kept only if the
    combination still has no more false alarms and more hits than ``op``."""
    h0, _, f0 = scored.counts(op)
    ths = {}
    for k in scored.keyword_labels:
        best = op.threshold
        t = round(op.threshold - step, 4)
        while t >= 0.3 - 1e-9:
            h, _, f = scored.counts(replace(op, thresholds={**ths, k: t}))
            if f > f0:
                break
            best = t
            t = round(t - step, 4)
        if best < op.threshold:
            ths[k] = round(min(op.threshold, best + margin), 4)
    if not ths:
        return op
    cand = replace(op, thresholds=ths)
    h, _, f = scored.counts(cand)
    return cand if f <= f0 and h > h0 else op


def calibrate(artifact_path, streams: list[Stream], target_fa_per_hour: float = 1.0, *, keywords=None,
              write: bool = True, quiet: bool = True, data: dict | None = None, per_keyword_thresholds: bool = False,
              **grid) -> dict:
    """Sweep threshold, smoothing and refractory time of ``artifact_path`` on calibration ``streams``, pick the
    most recall at <= ``target_fa_per_hour`` and (``write``) record it in the artifact's sidecar metadata as
    ``postprocessing``: the spotter, ``edgekit demo mic``, serve and a deployed device then use it without flags.
    Returns {"operating_point", "calibration": figures, "sidecar"}."""
    from ..artifact import read_meta, write_meta

    if not (isinstance(target_fa_per_hour, (int, float)) and target_fa_per_hour >= 0):
        raise ConfigError(f"target_fa_per_hour must be a number >= 0; received {target_fa_per_hour!r}")
    if not any(s.keywords for s in streams):
        raise DataError("Calibration needs keyword streams (a WAV with its events) beside the negative ones: "
                        "none of the given streams holds a keyword event")
    sc = _Scored(artifact_path, streams, keywords=keywords, quiet=quiet)
    op, fig, _ = sweep(sc, target_fa_per_hour, **grid)
    if per_keyword_thresholds and fig["target_met"]:
        op = per_keyword(sc, op)
        h, n, f = sc.counts(op)
        fig.update(recall=round(h / n, 4) if n else 0.0, fa_per_hour=round(f / (sc.seconds / 3600), 4))
    info = {"target_fa_per_hour": target_fa_per_hour, "recall": fig["recall"], "fa_per_hour": fig["fa_per_hour"],
            "target_met": fig["target_met"], "keywords": fig["keywords"], "hours": round(sc.seconds / 3600, 4),
            "streams": len(streams), **({"data": data} if data else {})}
    out = {"operating_point": op.to_dict(), "calibration": info, "sidecar": None}
    speakers = per_speaker(sc.score(op)[1], sc.streams)
    if speakers:  # who the point is set by (not in the metadata)
        out["per_speaker"] = speakers
    if write:
        meta = read_meta(artifact_path)
        if meta is None:
            raise ModelError(f"{artifact_path} has no metadata to record the operating point in")
        meta.postprocessing = {**op.to_dict(), "calibration": info}
        out["sidecar"] = str(write_meta(artifact_path, meta))
    return out


def stream_recall_at_fa(artifact_path, streams: list[Stream], target_fa_per_hour: float = 1.0,
                        calibration_streams: list[Stream] | None = None) -> tuple[float, float]:
    """The judge for keyword streams: (recall, FA/h) of ``artifact_path`` on ``streams`` at the operating point
    calibrated on ``calibration_streams`` for ``target_fa_per_hour`` (None: the artifact's own point)."""
    if calibration_streams is not None:
        op = OperatingPoint.from_dict(calibrate(artifact_path, calibration_streams, target_fa_per_hour,
                                                write=False)["operating_point"])
    else:
        op = None
    r = evaluate_streams(artifact_path, streams, op, det=False)
    return float(r["recall"] or 0.0), float(r["fa_per_hour"])


def calibrate_artifacts(paths, calibration: list[Stream], test: list[Stream] | None = None,
                        target_fa_per_hour: float = 1.0, say=None) -> list[dict]:
    """Calibrate each artifact on ``calibration`` (written into its metadata) and, given ``test`` streams, measure
    it there at its own operating point: one row per artifact for a run report."""
    rows = []
    for p in paths:
        c = calibrate(p, calibration, target_fa_per_hour)
        op, cal = c["operating_point"], c["calibration"]
        from ..artifact import read_meta

        meta = read_meta(p)
        row = {"artifact": Path(p).name, "format": meta.format,
               "precision": (meta.quantization or {}).get("precision", "float32"), "threshold": op["threshold"], "smooth_ms": op["smooth_ms"],
               "refractory_ms": op["refractory_ms"], "calibration_recall": cal["recall"],
               "calibration_fa_per_hour": cal["fa_per_hour"]}
        if test:
            r = evaluate_streams(p, test, det=False)
            row.update(recall=r["recall"], fa_per_hour=r["fa_per_hour"], false_alarms=r["false_alarms"],
                       keywords=r["keywords"], hours=r["hours"], ms_per_hop=r["cost"]["ms_per_hop"])
        rows.append(row)
        if say:
            say(f"  {row['artifact']}: threshold {op['threshold']}, smooth {op['smooth_ms']:g} ms" +
                (f"; test recall {row['recall']} at {row['fa_per_hour']} FA/h" if test else ""))
    return rows
