"""edgekit bench"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError
from ..limits import MAX_THREADS
from ._common import COUNT, POSITIVE_FLOAT, POSITIVE_INT, emit, json_option, parse_int_list, quiet_option, split_csv

COLUMNS = ["model", "backend", "device", "threads", "batch", "size_kb", "load_ms", "first_ms", "min_ms", "p50_ms",
           "p90_ms", "p99_ms", "max_ms", "throughput", "peak_rss_mb"]


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--device", "devices", default="cpu", show_default=True,
              help="Comma-separated devices: cpu, gpu, npu, auto or backend-specific names.")
@click.option("--threads", default=None, help="Comma-separated thread counts to compare, e.g. 1,2 (default: backend's).")
@click.option("--batch", default=1, show_default=True, type=POSITIVE_INT, help="Items per run.")
@click.option("--warmup", default=10, show_default=True, type=COUNT, help="Untimed runs before measuring.")
@click.option("--runs", default=100, show_default=True, type=POSITIVE_INT, help="Timed runs.")
@click.option("--duration", default=None, type=POSITIVE_FLOAT, help="Time budget in seconds per configuration (replaces --runs).")
@click.option("--isolate/--no-isolate", default=True, show_default=True,
              help="Measure each configuration in a fresh process (clean load time and peak RSS).")
@json_option
@quiet_option
def bench(models, devices, threads, batch, warmup, runs, duration, isolate, json_path, quiet):
    """Benchmark MODELS: load time, first inference, latency min/p50/p90/p99/max, throughput, peak RSS, size.

    One table compares every model, device and thread count under the same protocol.
    """
    from ..runtime.bench import benchmark

    from ..artifact import model_format

    for m in models:  # a FIFO or a device in place of a model: refused before any load reads it
        if m.exists():
            model_format(m)
    devs = split_csv(devices)
    if not devs:
        raise ConfigError("--device needs at least one device name")
    thr = parse_int_list(threads, "--threads", MAX_THREADS) or [None]
    say = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    results = benchmark(models, devs, thr, batch=batch, warmup=warmup, runs=runs, duration=duration,
                        isolate=isolate, progress=say)
    rows = []
    for r in results:
        row = r.row()
        row["model"] = Path(r.model).name
        row["size_kb"] = r.size_bytes / 1024
        row["threads"] = r.threads or "default"
        rows.append(row)
    emit(rows, json_path, columns=COLUMNS, payload=[r.row() for r in results],
         headers={"throughput": "items/s", "size_kb": "size_kb"})
