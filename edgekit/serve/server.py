"""Start the server: load the repository, run uvicorn, say the URL once it accepts connections.

``serve()`` blocks (the CLI); ``ServerThread`` runs the same server in a background thread
(tests, benchmarks, embedding in an app). SIGTERM/SIGINT drain: uvicorn stops accepting, waits
up to ``drain_timeout_s`` for in-flight requests, then the batchers finish their queues.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

from ..errors import EdgekitError, MissingDependencyError
from .config import ServeConfig

# The worker thread releases the GIL inside the model and must win it back to return. With the
# default 5 ms switch interval a busy event loop made a 1.4 ms run take 6.9 ms; 0.5 ms keeps it ~1.6 ms.
SWITCH_INTERVAL_S = 0.0005


def build(sources, config: ServeConfig):
    """(app, repo, metrics) for the given model sources; raises EdgekitError on any bad input."""
    from .app import App
    from .metrics import Metrics
    from .repository import discover, load_repository

    config.validate()
    specs = discover(sources, config.versions)
    metrics = Metrics()
    repo = load_repository(specs, device=config.device, threads=config.threads,
                           max_batch_size=config.max_batch_size, max_delay_s=config.max_queue_delay_ms / 1000.0,
                           max_queue=config.max_queue, metrics=metrics, inline_max_s=config.inline_max_ms / 1000.0)
    metrics.attach(repo)
    return App(repo, config, metrics), repo, metrics


def _uvicorn():
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError("uvicorn", "serve", "edgekit serve") from None
    return uvicorn


def _make_server(app, config: ServeConfig, on_ready):
    uvicorn = _uvicorn()

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.should_exit or not self.servers:
                return
            sock = self.servers[0].sockets[0]
            host, port = sock.getsockname()[:2]
            self.bound = (host, port)
            if on_ready is not None:
                on_ready(f"http://{_url_host(host)}:{port}", app.repo.names())

        def handle_exit(self, sig, frame):
            app.draining = True  # /v2/health/ready turns 503 while in-flight requests finish
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal after draining, so the process would die "by SIGTERM";
            # a drained, orderly stop is a success: exit 0 (what systemd and scripts expect).
            if sig == signal.SIGTERM:
                self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]

    try:
        from .guard import protocol_for
    except ImportError:
        raise MissingDependencyError("httptools", "serve", "edgekit serve") from None
    # The guard bounds header size, header and body read time, and sheds the slowest connections when
    # max_connections is reached (guard.py says how); uvicorn bounds idle keep-alive time.
    ucfg = uvicorn.Config(app, host=config.host, port=config.port, lifespan="on", log_level=config.log_level,
                          access_log=config.access_log, timeout_graceful_shutdown=config.drain_timeout_s,
                          limit_concurrency=config.max_connections, server_header=False,
                          timeout_keep_alive=config.keep_alive_s, http=protocol_for(config), ws="none",
                          proxy_headers=False)  # nothing here reads the client address: no middleware per request
    server = _Server(ucfg)
    app.in_flight = server.server_state.tasks  # one task per request from its headers on (App._run reads it)
    return server


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(sources, config: ServeConfig | None = None, on_ready=None) -> None:
    """Serve until SIGINT/SIGTERM. ``on_ready(url, model_names)`` is called once connections are accepted."""
    config = config or ServeConfig()
    app, repo, _ = build(sources, config)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        server = _make_server(app, config, on_ready)
        try:
            server.run()
        except SystemExit:  # uvicorn exits this way when it can't bind
            server.started = False
        if not getattr(server, "started", False):
            raise EdgekitError(f"Could not listen on {config.host}:{config.port} (in use, or not allowed)")
    finally:
        repo.close(config.drain_timeout_s)


class ServerThread:
    """The server in a background thread: ``with ServerThread(["m.tflite"]) as s: httpx.get(s.url + ...)``."""

    def __init__(self, sources, config: ServeConfig | None = None, **overrides):
        cfg = config or ServeConfig(port=0)
        for k, v in overrides.items():
            setattr(cfg, k, v)
        self.config = cfg
        self.app, self.repo, self.metrics = build(sources, cfg)
        self.url: str | None = None
        self._ready = threading.Event()
        self._server = _make_server(self.app, cfg, self._on_ready)
        self._thread = threading.Thread(target=self._server.run, name="edgekit-serve", daemon=True)

    def _on_ready(self, url, names):
        self.url = url
        self._ready.set()

    def start(self, timeout: float = 30.0) -> "ServerThread":
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._thread.start()
        t0 = time.monotonic()
        while not self._ready.wait(0.05):
            if not self._thread.is_alive() or time.monotonic() - t0 > timeout:
                self.stop()
                raise EdgekitError(f"The server did not start on {self.config.host}:{self.config.port}")
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Graceful: stop accepting, let in-flight requests finish, drain the queues."""
        self.app.draining = True
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout if timeout is not None else self.config.drain_timeout_s + 10)
        self.repo.close(self.config.drain_timeout_s)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
