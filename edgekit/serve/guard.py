"""The connection guard: uvicorn's httptools protocol with the limits a server facing careless or hostile
clients needs, and a body read that costs one copy. uvicorn itself bounds only the idle time between
keep-alive requests.

Without these, one client could hold a connection for ever by dribbling its headers a byte at a time, or by
never sending the body it announced; could send megabytes of headers; and since every such socket counts
against ``--max-connections``, 70 of them starved every real request with 503s. Here:

* header deadline: the request line and headers must arrive within ``header_timeout_s`` of the connection
  opening (or of the previous response ending) → 408 and close; a connection that sent nothing is closed;
* header size: counted as the bytes arrive, so memory stays bounded → 431 and close;
* body deadline and rate: the whole body within ``body_timeout_s`` of the headers, no pause longer than
  ``header_timeout_s``, and, after ``BODY_GRACE_S``, an average of at least ``min_body_rate`` bytes/s since
  the headers → 408 and close. (Without the rate, a byte every 0.5 s kept a socket for the whole body
  deadline, and 80 of them held a 60-connection server at 503 for 43 s.) The app's pending ``receive()``
  sees a disconnect, so its own answer is dropped and only this one is sent;
* fair eviction: when the connection limit is reached, the connections that have waited longest without a
  whole request (idle keep-alive, or still sending headers) are closed to make room, then uploads running
  below ``EVICTABLE_RATE`` (slowest first), so a client that sends its request promptly is served while
  slow ones are shed. uvicorn's 503 remains for the case where the limit is filled by requests actually
  being processed;
* probes first: health checks and /metrics are answered even when the connection table is full, so a
  supervisor never restarts a server that is only busy (they are cheap and never queue);
* drain: on shutdown a request whose body has stalled is answered 503 at once, and one still uploading gets
  until its body deadline or the drain timeout, instead of holding the drain until uvicorn cancels it (which
  answered 500 and logged a CancelledError traceback).

The body read (``_WholeBody``): uvicorn hands a body to the app in 64 KiB pieces, pausing and resuming the
socket and waking the app for each, and copies it three times on the way (parser, buffer, ``bytes()``) —
for a 600 KB image tensor that was most of the server's CPU per request. Here a body with a
Content-Length within the body limit goes, from the moment its headers are in, straight from the socket's
reads into one buffer of its announced size (what came in the same read as the headers, through the
parser), and the app is woken once when it is whole. Memory is taken only as bytes arrive; a request
answered before its body is in (404, 413) has the rest read and dropped. Chunked bodies and bodies over the
limit keep uvicorn's streaming read (the app refuses the latter with 413 before reading). The answer's
head and body leave in one write (``_OneWrite``).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import time

import httptools
import numpy as np
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from .errors import REFUSED


# After answering a request whose bytes are still arriving, keep reading (and dropping) them this long before
# closing: closing at once makes the client's kernel reset the connection, and the answer is lost with it.
LINGER_S = 2.0
# The minimum body rate applies from this long after the headers (TCP slow start, a first hiccup).
BODY_GRACE_S = 2.0
# With the connection table full, an upload that has run at least a second below this average rate may be
# closed to make room for a request that has arrived whole.
EVICTABLE_RATE = 64 * 1024
# Answered ahead of the connection limit (GET or HEAD only): cheap, never queued behind a model.
PROBE_PATHS = frozenset({b"/v2/health/live", b"/v2/health/ready", b"/metrics"})


# Where a binary tensor starts in the body buffer: a multiple of this (the tensor is read in place).
TENSOR_ALIGN = 64


def body_buffer(n: int, json_len: bytes | None) -> memoryview:
    """A buffer for an ``n``-byte body, not zero-filled (50 us for 600 KB: every byte is written before the app
    sees it, and pages are taken as bytes arrive). With the binary tensor extension, the tensor that follows the
    ``json_len``-byte JSON header starts on a TENSOR_ALIGN boundary: the model reads it in place, where a
    misaligned one cost a 224x224x3 float model 0.26 ms more per run (LiteRT, 1.92 -> 2.18 ms)."""
    try:
        head = int(json_len) if json_len is not None else 0
    except ValueError:
        head = 0  # the app refuses the header with its own message
    if not 0 < head < n:
        return memoryview(np.empty(n, np.uint8))
    raw = np.empty(n + TENSOR_ALIGN, np.uint8)
    skip = -(raw.ctypes.data + head) % TENSOR_ALIGN
    return memoryview(raw)[skip:skip + n]


class _Refuse(Exception):
    """Raised inside a parser callback to stop parsing; the reply is in ``protocol._refusal``."""


def protocol_for(cfg) -> type:
    """A protocol class carrying ``cfg``'s limits (uvicorn builds one instance per connection)."""
    return type("EdgekitHttpProtocol", (GuardedProtocol,), {
        "header_timeout_s": float(cfg.header_timeout_s), "body_timeout_s": float(cfg.body_timeout_s),
        "max_header_bytes": int(cfg.max_header_kb * 1024), "drain_timeout_s": float(cfg.drain_timeout_s),
        "max_body_bytes": int(cfg.max_body_mb * 1024 * 1024), "min_body_rate": float(cfg.min_body_rate_kb) * 1024})


class _Joined:
    """The transport as a cycle's send() sees it while the head waits: its first write goes out with the head."""

    __slots__ = ("t", "head")

    def __init__(self, transport, head: bytes):
        self.t, self.head = transport, head

    def write(self, data) -> None:
        head, self.head = self.head, None
        self.t.write(head + data if head else data)

    def flush(self) -> None:
        if self.head:
            head, self.head = self.head, None
            self.t.write(head)

    def close(self) -> None:
        self.flush()
        self.t.close()

    def __getattr__(self, name):
        return getattr(self.t, name)


class _Held:
    """Collects what uvicorn writes for http.response.start instead of sending it."""

    __slots__ = ("t", "data")

    def __init__(self, transport):
        self.t, self.data = transport, []

    def write(self, data) -> None:
        self.data.append(data)

    def __getattr__(self, name):
        return getattr(self.t, name)


class _OneWrite(RequestResponseCycle):
    """uvicorn's request cycle, but the status line and headers go out with the first body write: one send()
    per response instead of two. On loopback each send() also runs the receiver's TCP stack, and a client
    woken by the head alone must wait again for the body."""

    _head = None

    async def send(self, message):
        if message["type"] == "http.response.start" and not self.response_started and not self.disconnected:
            real = self.transport
            held = self.transport = _Held(real)
            try:
                await super().send(message)
            finally:
                self.transport = real
            self._head = b"".join(held.data)
            return
        head = self._head
        if head is None:
            await super().send(message)
            return
        self._head = None
        real = self.transport
        joined = self.transport = _Joined(real, head)
        try:
            await super().send(message)
        finally:
            self.transport = real
            if not self.disconnected:
                joined.flush()  # a HEAD answer or an empty chunk: nothing was written with it


class _WholeBody(_OneWrite):
    """A request cycle whose ``receive()`` returns the whole body in one message (see the module doc).

    The body is a memoryview of exactly Content-Length bytes (bytes-like, as the app reads it), filled by
    the socket's reads themselves (and, for what came with the headers, by the parser) from the moment the
    headers are in, so it is usually whole by the time the app asks."""

    async def receive(self):
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        while self.more_body and not self.disconnected and not self.response_complete:
            await self.message_event.wait()
            self.message_event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body, self.body = self.body, b""
        return {"type": "http.request", "body": body, "more_body": False}


# Reads outside a body buffer hold request heads (and chunked or over-limit bodies): 64 KiB, as uvicorn's
# own reads, so that little of a body that follows its headers goes through the parser (a copy more).
_READ_VIEW = memoryview(bytearray(64 * 1024))


class _Reads(asyncio.BufferedProtocol):
    """What the transport talks to: uvloop reads into a protocol's own buffer only for a BufferedProtocol that
    is not an asyncio.Protocol, which uvicorn's protocol is. Everything is handed on to the GuardedProtocol."""

    __slots__ = ("p",)

    def __init__(self, p: "GuardedProtocol"):
        self.p = p

    def get_buffer(self, sizehint: int):
        return self.p.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.p.buffer_updated(nbytes)

    def eof_received(self):
        return self.p.eof_received()

    def connection_lost(self, exc) -> None:
        self.p.connection_lost(exc)

    def pause_writing(self) -> None:
        self.p.pause_writing()

    def resume_writing(self) -> None:
        self.p.resume_writing()


class GuardedProtocol(HttpToolsProtocol):
    header_timeout_s = 10.0
    body_timeout_s = 60.0
    max_header_bytes = 32 * 1024
    drain_timeout_s = 30.0
    max_body_bytes = 64 << 20
    min_body_rate = 1024.0  # bytes/s, averaged since the headers; 0 turns the rate check off

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._in_head = True  # the parser is waiting for (the rest of) a request line + headers
        self._head_bytes = 0
        self._waiting_since = time.monotonic()  # when it last had no request in progress
        self._timer = None  # the header or body deadline, whichever applies now
        self._body_deadline = None  # set while a request's body is still to come
        self._body_t0 = 0.0
        self._body_got = 0
        self._last_body_at = 0.0
        self._buf = None  # the body buffer while bytes bypass the parser (_WholeBody)
        self._left = 0  # bytes of that body still to come
        self._refusal = None
        self._refused = False
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
        transport.set_protocol(_Reads(self))
        self._arm_header_deadline()
        limit = self.limit_concurrency
        if limit is not None and len(self.connections) > limit:
            self._evict(len(self.connections) - limit)

    def connection_lost(self, exc):
        self._disarm()
        self._buf = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._left:  # a _WholeBody read: the bytes go straight into the body buffer
            self._body_bytes(data)
            return
        counting = self._in_head
        if counting:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._refused:
            return
        # Still inside the headers after this chunk: what arrived so far is all header, so the cap holds
        # before the parser has buffered more than one read past it.
        if counting and self._in_head and self._head_bytes > self.max_header_bytes:
            self._refuse(431, "header_too_large", self._header_msg())
        elif self._body_deadline is not None and self._timer is None:
            self._arm_body_check()  # only a body that did not come whole with its headers needs a timer

    def _header_msg(self) -> str:
        return f"The request line and headers are over the limit of {self.max_header_bytes} bytes"

    def _waiting(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _rate(self, now: float) -> float:
        return self._body_got / max(now - self._body_t0, 1e-3)

    def _evict(self, n: int):
        """Close ``n`` connections to make room (never this one): those that have waited longest without a
        whole request, then slow uploads (slowest first)."""
        idle = [c for c in self.connections if c is not self and isinstance(c, GuardedProtocol)
                and c._waiting() and not c.transport.is_closing()]
        victims = heapq.nsmallest(n, idle, key=lambda c: c._waiting_since)
        if len(victims) < n:
            now = time.monotonic()
            slow = [c for c in self.connections if c is not self and isinstance(c, GuardedProtocol)
                    and c._body_deadline is not None and not c._waiting() and not c._refused
                    and now - c._body_t0 >= 1.0 and c._rate(now) < EVICTABLE_RATE]
            victims += heapq.nsmallest(n - len(victims), slow, key=lambda c: c._rate(now))
        for c in victims:
            self.connections.discard(c)  # free the slot now; connection_lost comes a loop turn later
            if c._head_bytes or c._body_deadline is not None:
                c._refuse(503, "evicted", "The server is at its connection limit and this request was the slowest")
            else:
                c._disarm()
                c.transport.close()

    def _is_probe(self) -> bool:
        return self.url.partition(b"?")[0] in PROBE_PATHS and self.parser.get_method() in (b"GET", b"HEAD")

    # -- parser callbacks ---------------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)
        if size > self.max_header_bytes:
            self._refusal = (431, "header_too_large", self._header_msg())
            raise _Refuse()
        self._in_head = False
        self._head_bytes = 0
        self._disarm()  # the header deadline is met; data_received arms the body's only if the body is not whole
        limit = self.limit_concurrency
        probe = limit is not None and self._is_probe()
        if probe:  # answered ahead of the table: uvicorn's own check must not see the limit
            self.limit_concurrency = None
        elif limit is not None and len(self.connections) >= limit:
            self._evict(len(self.connections) - limit + 1)
        try:
            super().on_headers_complete()
        finally:
            self.limit_concurrency = limit
        now = time.monotonic()
        self._body_deadline = now + self.body_timeout_s
        self._body_t0 = self._last_body_at = now
        self._body_got = 0
        length = chunked = json_len = None
        for k, v in self.headers:
            if k == b"content-length":
                length = v
            elif k == b"transfer-encoding":
                chunked = v
            elif k == b"inference-header-content-length":
                json_len = v
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            return
        cycle.__class__ = _OneWrite  # same object, same state: only send() (and receive() below) differ
        if length is not None and chunked is None:
            try:
                n = int(length)
            except ValueError:
                n = -1
            if 0 < n <= self.max_body_bytes:
                # From here on the body goes straight into one buffer of its size: what came with the headers
                # through on_body, the rest by the socket's reads into it (get_buffer).
                cycle.__class__ = _WholeBody
                self._buf = body_buffer(n, json_len)
                self._left = n

    def _body_done(self):
        """The body buffer is whole: it becomes the cycle's body (if that cycle still wants it)."""
        buf, self._buf = self._buf, None
        cycle = self.cycle
        if buf is not None and isinstance(cycle, _WholeBody):
            cycle.body = buf

    # With a body buffer open, the transport reads into it (asyncio.BufferedProtocol); otherwise into one
    # buffer shared by every connection, whose bytes the parser has consumed before the next read.
    def get_buffer(self, sizehint: int):
        if self._left:
            if self._buf is None:  # answered before its body was in: the rest is read and dropped
                return _READ_VIEW[:self._left]
            return self._buf[len(self._buf) - self._left:]
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        if self._left:
            self._body_in(nbytes)
        else:
            self.data_received(_READ_VIEW[:nbytes])

    def _body_bytes(self, data):
        """data_received while a body buffer is open (a transport that does not use get_buffer)."""
        n = min(len(data), self._left)
        if self._buf is not None:
            pos = len(self._buf) - self._left
            self._buf[pos:pos + n] = memoryview(data)[:n]
        rest = bytes(memoryview(data)[n:])
        self._body_in(n)
        if rest:
            self.data_received(rest)

    def _body_in(self, n: int):
        self._left -= n
        self._body_got += n
        self._last_body_at = time.monotonic()
        if self._left:
            return
        # Whole: the parser never saw these bytes, so the next request starts on a fresh one.
        self.parser = httptools.HttpRequestParser(self)
        try:
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        except AttributeError:  # httptools < 0.6.3
            pass
        self.on_message_complete()

    def _arm_body_check(self):
        """Until the body is in: 408 at the body deadline, after a pause of ``_stall_s`` with no bytes, or
        when (after the grace period) the average rate since the headers falls below ``min_body_rate``."""
        self._disarm()
        wake = min(self._body_deadline, self._last_body_at + self._stall_s)
        if self.min_body_rate > 0:
            wake = min(wake, self._body_t0 + max(BODY_GRACE_S, self._body_got / self.min_body_rate))
        self._timer = self.loop.call_later(max(0.0, wake - time.monotonic()), self._body_check)

    def _body_check(self):
        self._timer = None
        now = time.monotonic()
        status, reason = (503, "shutting_down") if self._shutting_down else (408, "body_timeout")
        why = " and the server is shutting down" if self._shutting_down else ""
        if self.flow.read_paused and now < self._body_deadline and not self._shutting_down:
            # We stopped reading (a pipelined request waits its turn): not the client's pause, so the stall and
            # rate clocks start again; the body deadline still holds.
            self._body_t0 = self._last_body_at = now
            self._body_got = 0
            self._arm_body_check()
            return
        elapsed = now - self._body_t0
        if now >= self._body_deadline:
            self._refuse(status, reason, f"The request body did not arrive in time{why}")
        elif now - self._last_body_at >= self._stall_s - 0.05:  # (timer slack: a stall due now is named as one)
            self._refuse(status, reason, f"The request body stalled: no data for {self._stall_s:g} s{why}")
        elif self.min_body_rate > 0 and elapsed >= BODY_GRACE_S and self._body_got < self.min_body_rate * elapsed:
            self._refuse(status, reason, f"The request body is too slow: {self._body_got} bytes in {elapsed:.1f} s; "
                                         f"the minimum is {self.min_body_rate / 1024:g} KiB/s{why}")
        else:
            self._arm_body_check()

    def on_body(self, body: bytes) -> None:
        self._last_body_at = time.monotonic()
        self._body_got += len(body)
        if self._left:  # the part of a buffered body that came in the same read as its headers
            n = len(body)
            if self._buf is not None:
                pos = len(self._buf) - self._left
                self._buf[pos:pos + n] = body
            self._left -= n
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_done()
        self._disarm()
        self._body_deadline = None
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._buf is not None and self.cycle is not None and self.cycle.response_complete:
            self._buf = None  # answered without its body (404, 413, ...): the rest is dropped as it arrives
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
    def _refuse(self, status: int, reason: str, msg: str) -> None:
        """Answer ``status`` (unless a response is already under way), cut the app's body read, close. Once:
        a second refusal (the parser's error after our own callback stopped it) would write after the FIN."""
        self._disarm()
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self._buf, self._left = None, 0
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
