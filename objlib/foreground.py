"""``objlib upload``: the whole job in one foreground command, on top of the durable queue.

It is the same pipeline as ``objlib enqueue`` + ``huey_consumer objlib.tasks.huey``: the
rows that need work are enqueued by ``enqueue.enqueue`` (recorded as one run, ``objlib.runs``),
and huey's own ``Consumer`` (``tasks.start_consumer``) runs the same tasks in this process
on ``concurrency`` worker threads while the run's progress is shown, read from the
catalogue. Consumers already running elsewhere share the work (the conditional claims keep
it single), and everything stays resumable the way the queue is: tasks not started stay in
``queue.db``; a row cut off in flight holds a lease owned by this process (``host:pid``),
which recovery hands to a new task as soon as this process is gone.

Ctrl+C once: the workers take no new task, the steps in flight get ``shutdown_timeout_s`` to
finish, the run is closed as ``interrupted``. Twice (or SIGTERM): closed as ``aborted`` at
once; the caller ends the process without waiting for the worker threads (``exit_now``).

    result = upload(settings, concurrency=7, batch_size=150, view=progress_view(console))
    console.print(summary_panel(result)); exit_now(result) or sys.exit(result.exit_code)

The progress is shown by ``view`` (called once the run is known): ``progress_view`` and
``summary_panel`` are in ``objlib.views.upload``; this module decides, the views only draw.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from objlib import log, runs, status, tasks
from objlib.catalog.lifecycle import IN_FLIGHT, PENDING, SKIPPED
from objlib.catalog.read import existing_catalog
from objlib.enqueue import enqueue
from objlib.recovery import QUEUED_GRACE_S, process_owner
from objlib.settings import Settings
from objlib.store import default_store_name

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
PLAN_ROWS = 20
_SNAPSHOT_EVERY_S = 1.0  # the library-wide snapshot (breaker, rate, queue) is read this often
_RECOVER_EVERY_S = 60.0  # rows whose task was lost are handed to a new one this often,
_FIRST_RECOVER_S = 2 * QUEUED_GRACE_S  # the first time soon (the enqueue's recovery spares
                                       # rows queued in the last QUEUED_GRACE_S)


# ---------------------------------------------------------------------------- --dry-run


@dataclass(frozen=True)
class Plan:
    """What a run would take on, read from the catalogue only (nothing is written)."""

    uploads: int  # files that would be uploaded (pending, or in flight before the import)
    polls: int  # imports already started that the run would follow to the end
    first: list[dict]  # the first PLAN_ROWS uploads in enqueue order: path, size, quality
    store: str
    store_known: bool  # the catalogue records the store (otherwise created by the real run)
    skipped: int


def plan(settings: Settings) -> Plan:
    """The dry run: the files ``upload`` would take on, in the order it would, and nothing
    else — no store is created and neither the catalogue nor the queue is written."""
    catalog = existing_catalog(settings)
    try:
        order = {fid: i for i, (fid, _) in enumerate(runs.work_to_do(catalog))}
        rows = catalog.query(
            f"SELECT id, path, size, metadata_quality, state, import_requested_at FROM files "
            f"WHERE state IN ({','.join('?' * 4)})", (PENDING, *IN_FLIGHT))
        skipped = catalog.query("SELECT COUNT(*) FROM files WHERE state=?", (SKIPPED,))[0][0]
        store = catalog.get_meta("store")
        store_label = (store or settings.store_name
                       or f"{default_store_name(catalog)} (a store of this catalogue's own)")
    finally:
        catalog.close()
    rows = sorted(rows, key=lambda r: order.get(r["id"], len(order)))
    uploads = [r for r in rows if runs.step_of(r["state"], None, r["import_requested_at"])
               in (runs.STEP_UPLOADING, runs.STEP_ACTIVATING)]
    first = [{"path": r["path"], "size": r["size"], "quality": r["metadata_quality"] or "-"}
             for r in uploads[:PLAN_ROWS]]
    return Plan(uploads=len(uploads), polls=len(rows) - len(uploads), first=first,
                store=store_label, store_known=store is not None,
                skipped=skipped)


# ---------------------------------------------------------------------------- Ctrl+C


class Interrupts:
    """While a run is on, Ctrl+C is counted rather than raised: the first asks for a graceful
    stop, the second for an immediate one; SIGTERM asks for an immediate one. The previous
    handlers come back on exit. (Signal handlers can only be set in the main thread; in any
    other thread this does nothing and the caller stops only when the run is done.)"""

    def __init__(self):
        self.count = 0
        self.wake = threading.Event()
        self._previous: dict = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.count = 2 if signum == signal.SIGTERM else self.count + 1
        self.wake.set()

    def wait(self, timeout_s: float) -> None:
        self.wake.wait(timeout_s)
        self.wake.clear()

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# ---------------------------------------------------------------------------- the workers


def _log_to_file(settings: Settings) -> Path:
    """Worker logs (JSON lines, structlog's and huey's own in one stream) go to
    OBJLIB_HOME/logs/upload.log, not over the progress view."""
    path = settings.home / "logs" / "upload.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 — lives as long as the process
    log.configure(json=True, handlers=[logging.StreamHandler(stream)], quiet_huey=False)
    return path


# ---------------------------------------------------------------------------- the run


@dataclass
class RunResult:
    run: dict  # runs.get_run after the run was closed
    library: status.Snapshot  # the whole library, after the run
    log_path: Path
    workers_stopped: bool  # False: worker threads are still running (end the process at once)

    @property
    def exit_code(self) -> int:
        if self.run["outcome"] != runs.DONE:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.run["failed"] else EXIT_OK

    def to_json(self) -> dict:
        """The stable ``objlib upload --json`` shape (a test pins the keys): the run (as
        ``objlib status`` shows it), the whole library after it, the log, the exit code."""
        return {"exit_code": self.exit_code, "run": self.run,
                "library": status.to_json(self.library), "log_path": str(self.log_path)}


class ProgressView(Protocol):
    """What ``upload`` shows its progress on (``objlib.views.upload``): entered for the run,
    shown the run's progress and the library's snapshot, with a note while stopping."""

    def __enter__(self) -> ProgressView: ...

    def __exit__(self, *exc) -> None: ...

    def show(self, p: runs.Progress, snap: status.Snapshot, note: str | None) -> None: ...


# (run id, store, concurrency, batch size) -> the view for this run
MakeView = Callable[[int, str, int, int], ProgressView]


def upload(settings: Settings, *, view: MakeView, concurrency: int = 7, batch_size: int = 150,
           shutdown_timeout_s: float = 30.0, refresh_s: float = 0.5) -> RunResult:
    """Enqueue what needs work as one run, work it off in this process with its progress
    shown on ``view(run_id, store, concurrency, batch_size)``, stop the workers, close the
    run."""
    catalog = existing_catalog(settings)
    log_path = _log_to_file(settings)
    with Interrupts() as interrupts:
        files = runs.work_to_do(catalog)
        enqueued = enqueue(settings)
        assert enqueued.store is not None, "a real enqueue binds the store"
        run_id = runs.start(catalog, files, now=time.time(), owner=process_owner(),
                            store=enqueued.store, concurrency=concurrency, batch_size=batch_size)
        shown = view(run_id, catalog.get_meta("store_display_name") or enqueued.store,
                     concurrency, batch_size)
        watcher = _Watcher(settings, catalog, run_id, batch_size, shown, interrupts, refresh_s)
        stopped = True
        with shown:
            if not interrupts.count:  # a Ctrl+C during the enqueue: no worker is started
                consumer = tasks.start_consumer(settings, concurrency)
                try:
                    watcher.until_done_or_interrupted()
                finally:
                    stopped = watcher.stop(consumer, shutdown_timeout_s)
        outcome = (runs.DONE if not interrupts.count
                   else runs.INTERRUPTED if interrupts.count == 1 and stopped else runs.ABORTED)
        run = runs.finish(catalog, run_id, outcome, now=time.time())
    return RunResult(run=run, library=status.snapshot(settings), log_path=log_path,
                     workers_stopped=stopped)


class _Watcher:
    """Reads the run's progress (and, once a second, the library snapshot) and shows it."""

    def __init__(self, settings, catalog, run_id, batch_size, view, interrupts, refresh_s):
        self.settings, self.catalog, self.run_id = settings, catalog, run_id
        self.batch_size, self.view, self.interrupts = batch_size, view, interrupts
        self.refresh_s = refresh_s
        self._snap: status.Snapshot | None = None
        self._snap_at = 0.0

    def snapshot(self) -> status.Snapshot:
        if self._snap is None or time.monotonic() - self._snap_at >= _SNAPSHOT_EVERY_S:
            self._snap, self._snap_at = status.snapshot(self.settings), time.monotonic()
        return self._snap

    def show(self, note: str | None = None) -> runs.Progress:
        p = runs.progress(self.catalog, self.run_id, self.batch_size)
        self.view.show(p, self.snapshot(), note)
        return p

    def until_done_or_interrupted(self) -> None:
        next_recovery = time.monotonic() + _FIRST_RECOVER_S
        while not self.interrupts.count:
            if time.monotonic() >= next_recovery:
                # what the consumer's periodic task does; our own workers' tasks are alive
                tasks.recover(self.settings, self.catalog)
                next_recovery = time.monotonic() + _RECOVER_EVERY_S
            p = self.show()
            if p.done and not tasks.removals_waiting(self.settings):
                return
            self.interrupts.wait(self.refresh_s)

    def stop(self, consumer: tasks.ForegroundConsumer, timeout_s: float) -> bool:
        """No new task; wait (showing progress) up to ``timeout_s`` for the steps in flight,
        unless an immediate stop is asked for. True if every worker thread ended."""
        consumer.ask_to_stop()
        deadline = time.monotonic() + timeout_s
        shown_at = 0.0
        while consumer.alive() and self.interrupts.count < 2:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self.interrupts.count and time.monotonic() - shown_at >= self.refresh_s:
                self.show(f"stopping: letting the steps in flight finish ({left:.0f} s left) · "
                          "Ctrl+C again to stop at once")
                shown_at = time.monotonic()
            self.interrupts.wait(min(0.05, left))
        if consumer.alive():  # they are left running until the process ends: from now on
            tasks.queue_for(self.settings).freeze_writes()  # they change nothing it counts
            return False
        return True


def exit_now(result: RunResult) -> None:
    """After the summary: if worker threads are still running (an immediate stop), end the
    process at once with the run's exit code; their rows are recovered by the next run."""
    if not result.workers_stopped:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(result.exit_code)
