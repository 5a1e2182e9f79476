"""Dynamic batching on one worker thread per model version.

The event loop validates a request, appends a Job to a bounded queue (full → Overloaded at once, so
memory stays flat under overload) and awaits a future. The worker takes the oldest job, waits up to
``max_delay_s`` for compatible jobs to fill ``max_batch_size`` rows, runs one concatenated batch and
hands each caller its slice. One lock per session serialises calls, which the LiteRT interpreter
needs (it is not thread-safe).

One exception, for latency: a request that finds the server otherwise idle (no other request in
progress, nothing queued, the worker idle) runs on the event loop's own thread, if the model has
lately run one job within ``inline_max_s``. The hand-off to the worker and back costs two thread
wake-ups (0.08 + 0.10 ms timed inside the server at concurrency 1 on a 2-core machine, MobileNetV3-Small at
1.9 ms a run), and the worker reads a tensor the loop's core has just received (0.1-0.2 ms more per run,
measured in process). With the aligned body buffer (guard.body_buffer), benchmarks/serve_bench.py's
concurrency-1 p50 went from 2.58 to 2.38 ms against the previous server in the same rounds. The loop is
blocked for at most about ``inline_max_s`` (health probes and timers wait that long); with another
request in progress the worker runs the model, so reading and inference overlap as before.
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
                 batchable: bool = True, metrics=None, labels: tuple = (), inline_max_s: float = 0.0):
        self.session = session
        self.max_batch = max(1, int(max_batch_size)) if batchable else 1
        self.max_delay = max(0.0, float(max_delay_s))
        self.max_queue = int(max_queue)
        self.metrics = metrics
        self.labels = labels
        self._q: deque[Job] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._busy = 0  # jobs taken by the worker (or run inline) and not yet answered
        self._run_lock = threading.Lock()  # one session call at a time, the worker's or an inline one
        # Inline runs need a model known to be quick (a recent run of one job), and no batching delay to honour.
        self.inline_max_s = float(inline_max_s) if self.max_delay == 0 else 0.0
        self.last_run_s = None  # a moving average of one job's run time
        self._thread = threading.Thread(target=self._loop, name=f"edgekit-batcher-{'-'.join(labels)}", daemon=True)
        self._thread.start()

    # -- event-loop side ---------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._q)

    @property
    def pending(self) -> int:
        return len(self._q) + self._busy

    def submit(self, feed: dict, rows: int, key, deadline: float, outputs=None, alone: bool = False) -> asyncio.Future:
        """A future for the job's outputs. ``alone``: no other request is in progress on this server, so the
        job may run here, on the loop's thread (the module doc says when); the future is then done on return."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        job = Job(feed, rows, key, fut, loop, deadline, outputs)
        with self._cv:
            if self._stopping:
                raise ShuttingDown("The server is shutting down")
            inline = (alone and not self._q and not self._busy and self.last_run_s is not None
                      and self.last_run_s <= self.inline_max_s and self._run_lock.acquire(blocking=False))
            if not inline:
                # Waiting means behind a run: with the worker idle, the head of the queue is as good as running
                # (it is taken the moment the worker wakes), so how many are served does not depend on how fast
                # the worker thread wins the GIL back after a burst begins.
                if len(self._q) - (1 if self._q and not self._busy else 0) >= self.max_queue:
                    raise Overloaded(f"Queue full ({self.max_queue} requests waiting); retry later")
                self._q.append(job)
                self._cv.notify()
                return fut
            self._busy = 1
        try:
            self._process([job], inline=True)
        finally:
            self._busy = 0
            self._run_lock.release()
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
                with self._run_lock:
                    self._process(jobs)
            finally:
                self._busy = 0

    def _process(self, jobs: list[Job], inline: bool = False):
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
        if len(live) == 1:
            took = done - now
            self.last_run_s = took if self.last_run_s is None else 0.8 * self.last_run_s + 0.2 * took
        if m is not None:
            if inline:
                m.inline_runs.inc(self.labels)
            m.inference_seconds.observe(done - now, self.labels)
            m.batch_size.observe(sum(j.rows for j in live), self.labels)
        if inline:  # on the loop's thread: the caller finds its future done
            _deliver_all([(j.future, part) for j, part in zip(live, parts)])
            return
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
