"""Benchmark sessions with one protocol for every backend (device side: no TensorFlow).

Each configuration (model × device × threads) runs in a fresh worker process by default, so
load time, first-inference time and peak RSS are those of a cold process, not of whatever ran
before. Timed runs follow warm-up; latency is per ``session.run`` call of ``batch`` items.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..artifact import model_size
from ..errors import ConfigError, EdgekitError, ModelError


@dataclass
class BenchConfig:
    model: str
    device: str = "cpu"
    threads: int | None = None
    batch: int = 1
    warmup: int = 10
    runs: int | None = 100
    duration: float | None = None  # seconds; overrides runs when set
    seed: int = 0

    def validate(self) -> "BenchConfig":
        if self.batch < 1:
            raise ConfigError(f"batch must be >= 1; received {self.batch}")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be >= 0; received {self.warmup}")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError(f"duration must be > 0 seconds; received {self.duration}")
        if self.duration is None and (self.runs is None or self.runs < 1):
            raise ConfigError(f"runs must be >= 1; received {self.runs}")
        if not Path(self.model).exists():
            raise ModelError(f"No such model file: {self.model}")
        return self


@dataclass
class BenchResult:
    model: str
    backend: str
    device: str
    threads: int | None
    batch: int
    format: str = ""
    precision: str = ""
    size_bytes: int = 0
    load_ms: float = 0.0
    first_ms: float = 0.0
    runs: int = 0
    min_ms: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    mean_ms: float = 0.0
    throughput: float = 0.0  # items per second
    peak_rss_mb: float = 0.0
    rss_before_mb: float = 0.0
    latencies_ms: list = field(default_factory=list, repr=False)

    def row(self) -> dict:
        d = asdict(self)
        d.pop("latencies_ms")
        return d


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def run_in_process(cfg: BenchConfig, keep_latencies: bool = False) -> BenchResult:
    """Measure one configuration in this process."""
    from . import load

    cfg.validate()
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    sess = load(cfg.model, device=cfg.device, threads=cfg.threads)
    load_ms = (time.perf_counter() - t0) * 1e3
    try:
        feed = sess.sample_input(batch=cfg.batch, seed=cfg.seed)
        run = sess.run
        t0 = time.perf_counter()
        run(feed)
        first_ms = (time.perf_counter() - t0) * 1e3
        for _ in range(cfg.warmup):
            run(feed)
        lat = []
        perf = time.perf_counter
        if cfg.duration is not None:
            end = perf() + cfg.duration
            while perf() < end or len(lat) < 5:
                t = perf()
                run(feed)
                lat.append(perf() - t)
        else:
            for _ in range(cfg.runs):
                t = perf()
                run(feed)
                lat.append(perf() - t)
        a = np.asarray(lat) * 1e3
        meta = sess.meta
        in_kinds = {t.dtype.kind for t in sess.inputs}
        precision = (meta.quantization or {}).get("precision") if meta and meta.quantization else None
        res = BenchResult(
            model=cfg.model, backend=sess.backend, device=sess.device, threads=cfg.threads, batch=cfg.batch,
            format=Path(cfg.model).suffix.lstrip("."), precision=precision or ("int8" if in_kinds & {"i", "u"} and any(
                t.quantized for t in sess.inputs) else "float32"),
            size_bytes=model_size(cfg.model), load_ms=load_ms, first_ms=first_ms, runs=len(a),
            min_ms=float(a.min()), p50_ms=float(np.percentile(a, 50)), p90_ms=float(np.percentile(a, 90)),
            p99_ms=float(np.percentile(a, 99)), max_ms=float(a.max()), mean_ms=float(a.mean()),
            throughput=float(cfg.batch * len(a) / a.sum() * 1e3), peak_rss_mb=_peak_rss_mb(), rss_before_mb=rss0,
            latencies_ms=a.tolist() if keep_latencies else [],
        )
    finally:
        sess.close()
    return res


def run_isolated(cfg: BenchConfig, timeout: float | None = None) -> BenchResult:
    """Measure one configuration in a fresh Python process (clean load time and peak RSS)."""
    cfg.validate()
    proc = subprocess.run([sys.executable, "-m", "edgekit.runtime.bench", json.dumps(asdict(cfg))],
                          capture_output=True, text=True, errors="replace", timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        err = (proc.stderr or "").strip().splitlines()
        raise EdgekitError(f"Benchmark worker for {cfg.model} failed: {err[-1] if err else 'no output'}")
    d = json.loads(lines[-1])
    if "error" in d:
        raise EdgekitError(d["error"])
    return BenchResult(**d)


def benchmark(models, devices=("cpu",), threads=(None,), batch: int = 1, warmup: int = 10, runs: int | None = 100,
              duration: float | None = None, isolate: bool = True, progress=None) -> list[BenchResult]:
    """Every model × device × thread count, same protocol. Configurations are checked before any run."""
    configs = [BenchConfig(str(m), d, t, batch, warmup, runs, duration).validate()
               for m in models for d in devices for t in threads]
    out = []
    for i, cfg in enumerate(configs, 1):
        if progress:
            progress(f"[{i}/{len(configs)}] {Path(cfg.model).name} device={cfg.device} threads={cfg.threads or 'default'}")
        out.append(run_isolated(cfg) if isolate else run_in_process(cfg))
    return out


def _worker(arg: str) -> None:
    cfg = BenchConfig(**json.loads(arg))
    try:
        res = run_in_process(cfg)
        print(json.dumps(asdict(res)))
    except EdgekitError as e:
        print(json.dumps({"error": str(e)}))


if __name__ == "__main__":  # worker entry point for run_isolated
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _worker(sys.argv[1])
