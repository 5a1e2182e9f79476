"""Server settings, validated once so a bad flag is one clear error before anything loads."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from ..limits import MAX_THREADS


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000  # 0: any free port (the ready line says which)
    device: str = "cpu"
    threads: int | None = None
    max_batch_size: int = 8  # rows per run for models with a dynamic batch dimension; 1 disables batching
    max_queue_delay_ms: float = 0.0  # extra wait for a batch to fill; 0 batches only what is already queued
    max_queue: int = 64  # requests waiting per model version before 503
    # A request that finds no other in progress runs its model on the event loop's thread, without the hop to
    # the model thread and back, if the model has lately run one request within this; 0: always the model thread.
    inline_max_ms: float = 5.0
    timeout_ms: float = 10000.0  # per request: queue + run
    max_body_mb: float = 64.0
    # JSON tensors cost ~10x their text in Python objects while parsed; big tensors belong in the binary
    # extension (Inference-Header-Content-Length), which is read straight into arrays. 413 above this.
    max_json_mb: float = 8.0
    max_image_mp: float = 25.0  # classify: decoded megapixels (width x height / 1e6); 413 above, checked before decoding
    max_header_kb: float = 32.0  # request line + headers; 431 above
    max_connections: int = 1024  # open connections; when full, the one idle or stuck in its headers longest goes
    # A body must average at least this since its headers (after a 2 s grace; guard.py), or 408: without it a
    # byte every 0.5 s held a connection until the body deadline. 0 turns the check off.
    min_body_rate_kb: float = 1.0
    header_timeout_s: float = 10.0  # a connection must deliver its request line + headers within this; 408 after
    body_timeout_s: float = 60.0  # ... and then its whole body within this, no pause over header_timeout_s; 408 after
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    drain_timeout_s: float = 30.0  # graceful shutdown: how long in-flight requests may take to finish
    versions: str = "all"  # or "latest"
    access_log: bool = False
    log_level: str = "warning"

    # name -> (upper bound, integer?, zero allowed?[, lower bound]). Every number is finite and bounded, so a
    # typo such as `--max-body-mb inf` is one clear error here instead of an OverflowError deep inside the server.
    LIMITS = {
        "max_batch_size": (65536, True, False),
        "max_queue_delay_ms": (60_000, False, True),
        "max_queue": (1_000_000, True, False),
        "inline_max_ms": (1000, False, True),
        "timeout_ms": (86_400_000, False, False),
        "max_body_mb": (16384, False, False),
        "max_json_mb": (16384, False, False),
        "max_image_mp": (1000, False, False),
        "max_header_kb": (1024, False, False, 1),  # a request line and a Host header need a few hundred bytes
        "min_body_rate_kb": (1_000_000, False, True),
        "max_connections": (1_000_000, True, False),
        "header_timeout_s": (3600, False, False),
        "body_timeout_s": (86400, False, False),
        "keep_alive_s": (3600, False, False),
        "drain_timeout_s": (86400, False, True),
        "threads": (MAX_THREADS, True, False),
    }

    def validate(self) -> "ServeConfig":
        host = self.host
        if not isinstance(host, str) or not host.strip() or host != host.strip() or any(c in host for c in " \t\r\n/"):
            # "" would listen on every interface (an unset $HOST); say so rather than expose the server.
            raise ConfigError(f"host must be an address to listen on, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 "
                              f"(all interfaces); received {host!r}")
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535 (0: any free port); received {self.port!r}")
        for name, (top, integer, zero_ok, *least) in self.LIMITS.items():
            v = getattr(self, name)
            if v is None and name == "threads":
                continue
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  and (v >= 0 if zero_ok else v > 0) and v <= top and (not integer or float(v).is_integer())
                  and (not least or v >= least[0]))
            if not ok:
                kind = ("a non-negative" if zero_ok else "a positive") + (" integer" if integer else " number")
                low = f"{least[0]:g}" if least else "0" if zero_ok else ("1" if integer else "above 0")
                raise ConfigError(f"{name.replace('_', '-')} must be {kind}; received {v!r} "
                                  f"(allowed: {low} to {top:,})")
        if self.versions not in ("all", "latest"):
            raise ConfigError(f"Unknown versions policy {self.versions!r}. Available: all, latest")
        levels = ("critical", "error", "warning", "info", "debug")
        if self.log_level not in levels:
            raise ConfigError(f"Unknown log level {self.log_level!r}. Available: {', '.join(levels)}")
        return self
