"""Dynamic batching on one worker thread per model version.

The event loop never runs a model: it validates a request, appends a Job to a bounded queue
(full → Overloaded at once, so memory stays flat under overload) and awaits a future. The worker
takes the oldest job, waits up to ``max_delay_s`` for compatible jobs to fill ``max_batch_size``
rows, runs one concatenated batch and hands each caller its slice. One thread per session also
serialises calls, which the LiteRT interpreter needs (it is not thread-safe).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque


from ..errors import EdgekitError
from .errors import Overloaded, ShuttingDown, Timeout


class Job:
    __slots__ = ("feed", "rows", "key", "future", "loop", "deadline", "enqueued", "started", "outputs")

    def __init__(self, feed, rows, key, future, loop, deadline, outputs=None):
        self.feed = feed
        self.rows = rows
        self.key = key
        self.future = future
        self.loop = loop
        self.deadline = deadline
        self.enqueued = time.perf_counter()
        self.started = 0.0
        self.outputs = outputs


def _deliver(fut: asyncio.Future, value, exc):
    if fut.done():  # the caller gave up (timeout / disconnect)
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


def _deliver_all(pairs):
    for fut, value in pairs:
        _deliver(fut, value, None)


class Batcher:
    def __init__(self, session, *, max_batch_size: int = 8, max_delay_s: float = 0.0, max_queue: int = 64,
                 batchable: bool = True, metrics=None, labels: tuple = ()):
        self.session = session
        self.max_batch = max(1, int(max_batch_size)) if batchable else 1
        self.max_delay = max(0.0, float(max_delay_s))
        self.max_queue = int(max_queue)
        self.metrics = metrics
        self.labels = labels
        self._q: deque[Job] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._busy = 0  # jobs taken by the worker and not yet answered
        self._thread = threading.Thread(target=self._loop, name=f"edgekit-batcher-{'-'.join(labels)}", daemon=True)
        self._thread.start()

    # -- event-loop side ---------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._q)

    @property
    def pending(self) -> int:
        return len(self._q) + self._busy

    def submit(self, feed: dict, rows: int, key, deadline: float, outputs=None) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._cv:
            if self._stopping:
                raise ShuttingDown("The server is shutting down")
            if len(self._q) >= self.max_queue:
                raise Overloaded(f"Queue full ({self.max_queue} requests waiting); retry later")
            self._q.append(Job(feed, rows, key, fut, loop, deadline, outputs))
            self._cv.notify()
        return fut

    def stop(self, timeout: float | None = None) -> bool:
        """Finish every queued job, then end the worker. True if it ended in time."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- worker side -------------------------------------------------------------------------
    def _take(self) -> list[Job] | None:
        with self._cv:
            while not self._q:
                if self._stopping:
                    return None
                self._cv.wait()
            first = self._q[0]
            if self.max_batch > 1 and self.max_delay > 0 and not self._stopping:
                until = first.enqueued + self.max_delay
                while self._compatible_rows(first.key) < self.max_batch:
                    left = until - time.perf_counter()
                    if left <= 0 or self._stopping:
                        break
                    self._cv.wait(left)
            jobs, rows, keep = [], 0, deque()
            while self._q:
                j = self._q.popleft()
                if not jobs or (j.key == first.key and rows + j.rows <= self.max_batch):
                    jobs.append(j)
                    rows += j.rows
                else:
                    keep.append(j)
                if rows >= self.max_batch:
                    break
            keep.extend(self._q)
            self._q = keep
            self._busy = len(jobs)
            return jobs

    def _compatible_rows(self, key) -> int:
        return sum(j.rows for j in self._q if j.key == key)

    def _loop(self):
        while True:
            jobs = self._take()
            if jobs is None:
                return
            try:
                self._process(jobs)
            finally:
                self._busy = 0

    def _process(self, jobs: list[Job]):
        now = time.perf_counter()
        live = []
        for j in jobs:
            if j.future.done():
                continue  # caller already timed out or went away
            if now > j.deadline:
                self._finish(j, None, Timeout("Timed out waiting in the queue"))
                continue
            j.started = now
            live.append(j)
        if not live:
            return
        m = self.metrics
        if m is not None:
            for j in live:
                m.queue_seconds.observe(now - j.enqueued, self.labels)
        outputs = live[0].outputs if all(j.outputs == live[0].outputs for j in live) else None
        try:
            res = self.session.run_rows([j.feed for j in live], outputs=outputs)
            if len(live) == 1:
                parts = [res]
            else:
                parts, off = [], 0
                for j in live:
                    parts.append({k: v[off:off + j.rows] for k, v in res.items()})
                    off += j.rows
        except Exception as e:  # noqa: BLE001 - reported per job below
            if len(live) > 1:
                # Never let one job fail its neighbours: run each alone so only the bad one errors.
                for j in live:
                    self._process([j])
                return
            self._finish(live[0], None, e if isinstance(e, EdgekitError) else RuntimeError(f"{type(e).__name__}: {e}"))
            return
        done = time.perf_counter()
        if m is not None:
            m.inference_seconds.observe(done - now, self.labels)
            m.batch_size.observe(sum(j.rows for j in live), self.labels)
        # One wake-up of the event loop for the whole batch (each call_soon_threadsafe writes to its self-pipe).
        loops = {j.loop for j in live}
        if len(loops) == 1:
            try:
                live[0].loop.call_soon_threadsafe(_deliver_all, [(j.future, part) for j, part in zip(live, parts)])
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass
        else:
            for j, part in zip(live, parts):
                self._finish(j, part, None)

    @staticmethod
    def _finish(job: Job, value, exc):
        try:
            job.loop.call_soon_threadsafe(_deliver, job.future, value, exc)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass
