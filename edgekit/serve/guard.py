"""The connection guard: uvicorn's httptools protocol with the limits a server facing careless or hostile
clients needs. uvicorn itself bounds only the idle time between keep-alive requests.

Without these, one client could hold a connection for ever by dribbling its headers a byte at a time, or by
never sending the body it announced; could send megabytes of headers; and since every such socket counts
against ``--max-connections``, 70 of them starved every real request with 503s. Here:

* header deadline: the request line and headers must arrive within ``header_timeout_s`` of the connection
  opening (or of the previous response ending) → 408 and close; a connection that sent nothing is closed;
* header size: counted as the bytes arrive, so memory stays bounded → 431 and close;
* body deadline: the whole body within ``body_timeout_s`` of the headers → 408 and close. The app's
  pending ``receive()`` sees a disconnect, so its own answer is dropped and only this one is sent;
* fair eviction: when the connection limit is reached, the connections that have waited longest without a
  whole request (idle keep-alive, or still sending headers) are closed to make room, so a client that sends
  its request promptly is served while slow ones are shed. uvicorn's 503 remains for the case where the
  limit is filled by requests actually being processed;
* drain: on shutdown a request whose body has stalled is answered 503 at once, and one still uploading gets
  until its body deadline or the drain timeout, instead of holding the drain until uvicorn cancels it (which
  answered 500 and logged a CancelledError traceback).
"""

from __future__ import annotations

import heapq
import json
import time

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .errors import REFUSED


# After answering a request whose bytes are still arriving, keep reading (and dropping) them this long before
# closing: closing at once makes the client's kernel reset the connection, and the answer is lost with it.
LINGER_S = 2.0


class _Refuse(Exception):
    """Raised inside a parser callback to stop parsing; the reply is in ``protocol._refusal``."""


def protocol_for(cfg) -> type:
    """A protocol class carrying ``cfg``'s limits (uvicorn builds one instance per connection)."""
    return type("EdgekitHttpProtocol", (GuardedProtocol,), {
        "header_timeout_s": float(cfg.header_timeout_s), "body_timeout_s": float(cfg.body_timeout_s),
        "max_header_bytes": int(cfg.max_header_kb * 1024), "drain_timeout_s": float(cfg.drain_timeout_s)})


class GuardedProtocol(HttpToolsProtocol):
    header_timeout_s = 10.0
    body_timeout_s = 60.0
    max_header_bytes = 32 * 1024
    drain_timeout_s = 30.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._in_head = True  # the parser is waiting for (the rest of) a request line + headers
        self._head_bytes = 0
        self._waiting_since = time.monotonic()  # when it last had no request in progress
        self._timer = None  # the header or body deadline, whichever applies now
        self._body_deadline = None
        self._last_body_at = 0.0
        self._refusal = None
        self._discarding = False
        self._shutting_down = False
        self._stall_s = self.header_timeout_s  # the longest pause allowed inside a body

    # -- timers ------------------------------------------------------------------------------------
    def _arm(self, delay: float, status: int, reason: str, msg: str):
        self._disarm()
        self._timer = self.loop.call_later(max(0.0, delay), self._refuse, status, reason, msg)

    def _disarm(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm_header_deadline(self):
        self._waiting_since = time.monotonic()
        self._arm(self.header_timeout_s, 408, "header_timeout",
                  f"The request headers did not arrive within {self.header_timeout_s:g} s")

    # -- connection --------------------------------------------------------------------------------
    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm_header_deadline()
        limit = self.limit_concurrency
        if limit is not None and len(self.connections) > limit:
            self._evict(len(self.connections) - limit)

    def connection_lost(self, exc):
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        counting = self._in_head
        if counting:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still inside the headers after this chunk: what arrived so far is all header, so the cap holds
        # before the parser has buffered more than one read past it.
        if counting and self._in_head and self._head_bytes > self.max_header_bytes:
            self._refuse(431, "header_too_large", self._header_msg())

    def _header_msg(self) -> str:
        return f"The request line and headers are over the limit of {self.max_header_bytes} bytes"

    def _waiting(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _evict(self, n: int):
        """Close the ``n`` connections that have waited longest without a whole request (never this one)."""
        idle = [c for c in self.connections if c is not self and isinstance(c, GuardedProtocol)
                and c._waiting() and not c.transport.is_closing()]
        for c in heapq.nsmallest(n, idle, key=lambda c: c._waiting_since):
            self.connections.discard(c)  # free the slot now; connection_lost comes a loop turn later
            if c._head_bytes:
                c._refuse(503, "evicted", "The server is at its connection limit and this request was the slowest")
            else:
                c._disarm()
                c.transport.close()

    # -- parser callbacks ---------------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)
        if size > self.max_header_bytes:
            self._refusal = (431, "header_too_large", self._header_msg())
            raise _Refuse()
        self._in_head = False
        self._head_bytes = 0
        limit = self.limit_concurrency
        if limit is not None and len(self.connections) >= limit:
            self._evict(len(self.connections) - limit + 1)
        super().on_headers_complete()
        now = time.monotonic()
        self._body_deadline = now + self.body_timeout_s
        self._last_body_at = now
        self._arm_body_check()

    def _arm_body_check(self):
        """Until the body is in: 408 at the body deadline, or after a pause of ``_stall_s`` with no bytes."""
        self._disarm()
        wake = min(self._body_deadline, self._last_body_at + self._stall_s)
        self._timer = self.loop.call_later(max(0.0, wake - time.monotonic()), self._body_check)

    def _body_check(self):
        self._timer = None
        now = time.monotonic()
        status, reason = (503, "shutting_down") if self._shutting_down else (408, "body_timeout")
        why = " and the server is shutting down" if self._shutting_down else ""
        if now >= self._body_deadline:
            self._refuse(status, reason, f"The request body did not arrive in time{why}")
        elif now - self._last_body_at >= self._stall_s:
            self._refuse(status, reason, f"The request body stalled: no data for {self._stall_s:g} s{why}")
        else:
            self._arm_body_check()

    def on_body(self, body: bytes) -> None:
        self._last_body_at = time.monotonic()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._body_deadline = None
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._waiting() and self._body_deadline is None:
            self._arm_header_deadline()

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:  # our own callback stopped the parser
            self._refuse(*self._refusal)
        else:
            super().send_400_response(msg)

    def shutdown(self) -> None:
        if self._body_deadline is None or self._waiting():
            super().shutdown()
            return
        # The body is still coming: it may finish within what the drain allows, but a pause of a second now
        # means it is stalled, and it is answered 503 at once rather than holding the drain.
        self.cycle.keep_alive = False
        self._shutting_down = True
        self._stall_s = min(self._stall_s, 1.0)
        self._body_deadline = min(self._body_deadline, time.monotonic() + max(0.0, self.drain_timeout_s - 0.5))
        self._body_check()

    # -- answering from here -------------------------------------------------------------------------
    def _refuse(self, status: int, reason: str, msg: str) -> None:
        """Answer ``status`` (unless a response is already under way), cut the app's body read, close."""
        self._disarm()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        idle = self._waiting() and not self._head_bytes
        if cycle is not None and not cycle.response_complete:
            cycle.scope[REFUSED] = (status, reason)
            started = cycle.response_started
            cycle.disconnected = True  # the app's receive() returns http.disconnect; its send() is dropped
            cycle.message_event.set()
        else:
            started = False
        if started or idle:
            self.transport.close()
            return
        body = json.dumps({"error": msg}).encode()
        self.transport.write(b"".join([
            STATUS_LINE[status], b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body]))
        # Lingering close: send FIN, drop what still arrives for LINGER_S, then close. The connection no
        # longer counts against the limit.
        self.connections.discard(self)
        self._discarding = True
        try:
            self.transport.write_eof()
        except (NotImplementedError, OSError, RuntimeError):
            self.transport.close()
            return
        self._timer = self.loop.call_later(LINGER_S, self.transport.close)
