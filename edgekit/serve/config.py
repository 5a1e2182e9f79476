"""Server settings, validated once so a bad flag is one clear error before anything loads."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000  # 0: any free port (the ready line says which)
    device: str = "cpu"
    threads: int | None = None
    max_batch_size: int = 8  # rows per run for models with a dynamic batch dimension; 1 disables batching
    max_queue_delay_ms: float = 0.0  # extra wait for a batch to fill; 0 batches only what is already queued
    max_queue: int = 64  # requests waiting per model version before 503
    timeout_ms: float = 10000.0  # per request: queue + run
    max_body_mb: float = 64.0
    max_connections: int = 1024  # uvicorn answers 503 beyond this many concurrent connections+requests
    drain_timeout_s: float = 30.0  # graceful shutdown: how long in-flight requests may take to finish
    versions: str = "all"  # or "latest"
    access_log: bool = False
    log_level: str = "warning"

    def validate(self) -> "ServeConfig":
        def positive(name, integer=False, zero_ok=False):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (v >= 0 if zero_ok else v > 0)
            if integer:
                ok = ok and float(v).is_integer()
            if not ok:
                kind = "a non-negative" if zero_ok else "a positive"
                raise ConfigError(f"{name.replace('_', '-')} must be {kind} {'integer' if integer else 'number'}; "
                                  f"received {v!r}")

        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535; received {self.port!r}")
        positive("max_batch_size", integer=True)
        positive("max_queue_delay_ms", zero_ok=True)
        positive("max_queue", integer=True)
        positive("timeout_ms")
        positive("max_body_mb")
        positive("max_connections", integer=True)
        positive("drain_timeout_s", zero_ok=True)
        if self.threads is not None:
            positive("threads", integer=True)
        if self.versions not in ("all", "latest"):
            raise ConfigError(f"Unknown versions policy {self.versions!r}. Available: all, latest")
        levels = ("critical", "error", "warning", "info", "debug")
        if self.log_level not in levels:
            raise ConfigError(f"Unknown log level {self.log_level!r}. Available: {', '.join(levels)}")
        return self
