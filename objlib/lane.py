"""The control lane: a few threads per worker process that send the short calls which finish
a step, so that the worker that started it goes back to uploading at once.

Why. At field latencies a file's remote work is an upload (start 0.25 s + bytes 1 s), an
importFile (0.5 s) and one operations.get (0.25 s). With every call on the worker that took
the task, a worker is held 2 s a file, and N workers index at most N / 2 files a second.
The uploads are the work that N bounds (the seed's design held its ``Semaphore(N)`` around
them too); the importFile and the operation polls are short control calls that wait on the
service, not on this machine. Here they run beside the uploads: a worker is held 1.25 s a
file, and N workers index N / 1.25 files a second (measured in docs/architecture.md).

What it is. A bounded ``ThreadPoolExecutor`` (``THREADS``), made lazily in the process that
uses it (after fork), that takes work only while a thread is free: when every lane thread is
busy the worker sends the call itself, as it did before the lane, so the lane never holds a
backlog that the queue cannot see. It knows nothing of huey or of the
catalogue: ``objlib.tasks`` hands it the rest of a task, and decides what follows (the
chained poll, a re-schedule of the same task). Durability does not depend on it: a row whose
step is in the lane stays leased by this process, so if the process dies its rows are
resumed by recovery like any other in-flight row; at a normal exit the interpreter lets the
calls in the lane finish before it ends (``concurrent.futures`` joins its threads).

Short waits are the lane's too. A step that meets a transient failure (a 429, a 503) or
waits for its rate-limit slot is to send its request again after a short delay. Handed back
to the queue, that delay grows by a scheduler tick and the wait for a free worker (0.85 s at
the median, 1.4 s at P95 in a field run; the step runs again from its start on a worker). A
lane thread that can spare it waits the delay out itself (``Lane.wait``) and runs the step
again at once: at most ``WAIT_MAX_S`` per wait and ``WAIT_BUDGET_S`` per step; a longer wait
(a quota's retry delay, an open circuit breaker) goes back to the queue's schedule as before.
Politeness is unchanged: the delay is the one the step asked for (the service's retry delay,
else the backoff), and the request sent again passes the shared rate limiter and circuit
breaker like any other.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

THREADS = 14  # control calls in flight per process beside its uploads, unless configured
WAIT_MAX_S = 3.0  # a lane thread waits out a delay this short itself ...
WAIT_BUDGET_S = 6.0  # ... up to this much in all for one step; longer: the queue's schedule

_lock = threading.Lock()
_lane: tuple[int, Lane] | None = None
_threads = THREADS


class Lane:
    def __init__(self, threads: int = THREADS, sleep: Callable[[float], None] = time.sleep):
        self.threads = threads
        self.sleep = sleep
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="objlib-lane")
        self._idle = threading.Condition()
        self._busy = 0

    def try_submit(self, fn: Callable[[], object]) -> Future | None:
        """Run ``fn`` on a free lane thread; None (nothing submitted) when every thread is
        busy: the caller then does the work itself. Nothing ever queues in the lane, so
        work is never out of sight of the huey queue for longer than it runs."""
        with self._idle:
            if self._busy >= self.threads:
                return None
            self._busy += 1
        try:
            future = self._pool.submit(fn)
        except RuntimeError:  # the interpreter is shutting down: the caller does it
            self._done(None)
            return None
        future.add_done_callback(self._done)
        return future

    def wait(self, delay_s: float) -> None:
        """A lane thread waits out a short delay (see the module docstring)."""
        self.sleep(max(0.0, delay_s))

    def _done(self, _future: Future | None) -> None:
        with self._idle:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    @property
    def busy(self) -> int:
        """Work submitted and not finished yet."""
        with self._idle:
            return self._busy

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is in the lane; True if it emptied in time."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout=timeout_s)


PER_WORKER = 2  # lane threads per worker (see ``configure``)


def configure(workers: int) -> None:
    """The lane's size for this process, set where the workers are made: ``PER_WORKER``
    control calls in flight per worker (``huey_consumer -w N`` in thread mode: 2N; two per
    worker process in process mode). The calls arrive in bursts (the scheduler moves due
    looks once a second; uploads end together); with one thread per worker, 10-12 % of the
    imports of a field-scale run found the lane full and went back on their worker. With N
    uploads and 2N short calls, objlib has at most 3N requests in flight, fewer than the
    seed's design at the same N (N in its semaphore + 20 polls). Takes effect for a lane not
    made yet."""
    global _threads
    with _lock:
        _threads = max(1, int(workers)) * PER_WORKER


def lane() -> Lane:
    """This process's lane (made at first use, never at import; a forked child makes its own)."""
    global _lane
    with _lock:
        if _lane is None or _lane[0] != os.getpid():
            _lane = (os.getpid(), Lane(_threads))
        return _lane[1]
