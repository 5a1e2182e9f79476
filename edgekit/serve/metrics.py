"""Prometheus metrics in the text exposition format, hand-written so the server needs no extra package.

Counters and histograms are keyed by a tuple of label values; a lock per metric keeps the
batcher threads and the event loop from losing increments.
"""

from __future__ import annotations

import threading
from bisect import bisect_left

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _esc(v) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names, values, extra: str = "") -> str:
    parts = [f'{n}="{_esc(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v) -> str:
    if isinstance(v, float):
        if v == float("inf"):
            return "+Inf"
        return repr(v)
    return str(v)


class Counter:
    kind = "counter"

    def __init__(self, name, help, labelnames=()):
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)
        self._v: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def inc(self, labels=(), by=1):
        with self._lock:
            self._v[labels] = self._v.get(labels, 0) + by

    def value(self, labels=()):
        return self._v.get(labels, 0)

    def render(self):
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        with self._lock:
            items = sorted(self._v.items())
        for k, v in items:
            yield f"{self.name}{_labels(self.labelnames, k)} {_num(v)}"


class Gauge:
    """Read at scrape time from a callback, so it can never drift from the truth."""

    kind = "gauge"

    def __init__(self, name, help, labelnames, collect):
        self.name, self.help, self.labelnames, self.collect = name, help, tuple(labelnames), collect

    def render(self):
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        for k, v in self.collect():
            yield f"{self.name}{_labels(self.labelnames, k)} {_num(v)}"


class Histogram:
    kind = "histogram"

    def __init__(self, name, help, labelnames=(), buckets=LATENCY_BUCKETS):
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)
        self.buckets = tuple(buckets)
        self._v: dict[tuple, list] = {}  # labels -> [per-bucket counts..., +Inf count, sum]
        self._lock = threading.Lock()

    def observe(self, value, labels=()):
        with self._lock:
            row = self._v.get(labels)
            if row is None:
                row = self._v[labels] = [0] * (len(self.buckets) + 1) + [0.0]
            row[bisect_left(self.buckets, value)] += 1  # the first bucket with value <= bound; +Inf past the end
            row[-1] += value

    def count(self, labels=()):
        row = self._v.get(labels)
        return sum(row[:-1]) if row else 0

    def render(self):
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        with self._lock:
            items = sorted((k, list(r)) for k, r in self._v.items())
        for k, row in items:
            cum = 0
            for b, c in zip(self.buckets + (float("inf"),), row[:-1]):
                cum += c
                le = "+Inf" if b == float("inf") else _num(float(b))
                lab = _labels(self.labelnames, k, 'le="' + le + '"')
                yield f"{self.name}_bucket{lab} {cum}"
            yield f"{self.name}_sum{_labels(self.labelnames, k)} {_num(float(row[-1]))}"
            yield f"{self.name}_count{_labels(self.labelnames, k)} {cum}"


class Metrics:
    """Everything ``/metrics`` shows."""

    def __init__(self):
        mv = ("model", "version")
        self.requests = Counter("edgekit_requests_total", "HTTP requests by endpoint and status code.",
                                ("model", "version", "endpoint", "code"))
        self.errors = Counter("edgekit_errors_total", "Failed requests by reason.",
                              ("model", "version", "reason"))
        self.request_seconds = Histogram("edgekit_request_duration_seconds",
                                         "End-to-end inference request latency (parse, queue, run, encode).", mv)
        self.queue_seconds = Histogram("edgekit_queue_duration_seconds", "Time requests wait for the worker.", mv)
        self.inference_seconds = Histogram("edgekit_inference_duration_seconds", "Model run time per batch.", mv)
        self.batch_size = Histogram("edgekit_batch_size", "Rows per executed batch.", mv, BATCH_BUCKETS)
        self.inline_runs = Counter("edgekit_inline_runs_total", "Runs done on the event loop (the server was "
                                   "otherwise idle and the model quick: --inline-max-ms), not on the model thread.", mv)
        self.inflight = 0
        self._all = [self.requests, self.errors, self.request_seconds, self.queue_seconds,
                     self.inference_seconds, self.batch_size, self.inline_runs,
                     Gauge("edgekit_inflight_requests", "Inference requests being handled now.", (),
                           lambda: [((), self.inflight)])]

    def attach(self, repo) -> None:
        """Gauges read from the repository at scrape time: queue depth and readiness per model version."""
        mv = ("model", "version")
        self._all += [
            Gauge("edgekit_queue_depth", "Requests waiting in the batching queue.", mv,
                  lambda: [((m.name, m.version), m.batcher.depth) for m in repo.models]),
            Gauge("edgekit_model_ready", "1 when the model version is loaded and serving.", mv,
                  lambda: [((m.name, m.version), 1) for m in repo.models]),
        ]

    def render(self) -> str:
        lines = []
        for m in self._all:
            lines.extend(m.render())
        return "\n".join(lines) + "\n"
