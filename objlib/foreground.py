"""``objlib upload``: the whole job in one foreground command, on top of the durable queue.

It is the same pipeline as ``objlib enqueue`` + ``huey_consumer objlib.tasks.huey``: the
rows that need work are enqueued by ``queue.enqueue`` (recorded as one run, ``objlib.runs``),
and huey's own ``Consumer`` runs the same tasks in this process on ``concurrency`` worker
threads while the run's progress is shown, read from the catalogue. Consumers already running
elsewhere share the work (the conditional claims keep it single), and everything stays
resumable the way the queue is: tasks not started stay in ``queue.db``; a row cut off in
flight holds a lease owned by this process (``host:pid``), which recovery hands to a new task
as soon as this process is gone.

Ctrl+C once: the workers take no new task, the steps in flight get ``shutdown_timeout_s`` to
finish, the run is closed as ``interrupted``. Twice (or SIGTERM): closed as ``aborted`` at
once; the caller ends the process without waiting for the worker threads (``exit_now``).

    result = upload(settings, concurrency=7, batch_size=150, console=Console())
    console.print(summary_panel(result)); exit_now(result) or sys.exit(result.exit_code)
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from huey.consumer import Consumer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                           TextColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from objlib import log, runs, status
from objlib.catalog.lifecycle import IN_FLIGHT, PENDING, SKIPPED
from objlib.lane import configure as lane_configure, lane
from objlib.pipeline import process_owner
from objlib.queue import QUEUED_GRACE_S, bind, enqueue, recover
from objlib.settings import Settings
from objlib.store import default_store_name

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
PLAN_ROWS = 20
_SNAPSHOT_EVERY_S = 1.0  # the library-wide snapshot (breaker, rate, queue) is read this often
_RECOVER_EVERY_S = 60.0  # rows whose task was lost are handed to a new one this often,
_FIRST_RECOVER_S = 2 * QUEUED_GRACE_S  # the first time soon (the enqueue's recovery spares
                                       # rows queued in the last QUEUED_GRACE_S)
_STEP_STYLE = {runs.STEP_UPLOADING: "cyan", runs.STEP_ACTIVATING: "yellow",
               runs.STEP_IMPORTING: "magenta", runs.STEP_INDEXING: "blue"}


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
    catalog = status.existing_catalog(settings)
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


def plan_view(p: Plan):
    head = Text.assemble(("would upload ", ""), (f"{p.uploads}", "bold"), " file(s) to ",
                         (p.store, "bold"),
                         "" if p.store_known else " (created on the first real run)")
    notes = [f"and follow {p.polls} import(s) already started"] if p.polls else []
    notes.append(f"{p.skipped} file(s) skipped as not eligible (objlib failures --skipped)")
    notes.append("dry run: nothing was changed")
    table = Table(title=f"the first {len(p.first)} in upload order" if p.first else None,
                  title_justify="left")
    table.add_column("path", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("metadata quality")
    for f in p.first:
        table.add_row(f["path"], f"{f['size']:,}" if f["size"] is not None else "-", f["quality"])
    parts = [head] + ([table] if p.first else []) + [Text(n, style="dim") for n in notes]
    return Group(*parts)


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


class _ForegroundConsumer(Consumer):
    """huey's consumer, minus its signal handlers: this process's Ctrl+C belongs to the run."""

    def _set_signal_handlers(self) -> None:
        pass

    def threads(self) -> list:
        return [t for _, t in self.worker_threads] + [self.scheduler]

    def alive(self) -> int:
        """Threads still working: workers, the scheduler, and the lane's calls in flight
        (the importFile or operation look a worker handed on is a step in flight too)."""
        return sum(t.is_alive() for t in self.threads()) + lane().busy


def start_workers(settings: Settings, concurrency: int) -> _ForegroundConsumer:
    """``concurrency`` worker threads and a scheduler (every 1 s) for this home's queue,
    started; polling the queue at most every 0.5 s when idle. No periodic tasks: they would
    be left in the queue at every stop; the run's watcher calls the recovery itself."""
    tasks = bind(settings)
    lane_configure(concurrency)  # the calls that follow the uploads: see objlib.lane
    consumer = _ForegroundConsumer(tasks.huey, workers=concurrency, worker_type="thread",
                                   periodic=False, max_delay=0.5, scheduler_interval=1)
    consumer.start()
    return consumer


def removals_waiting(settings: Settings) -> bool:
    """A document removal is ready in the queue (a replaced version's old document, say):
    the run lets its workers send it before it stops."""
    return any(t.name == "remove_document" for t in bind(settings).huey.pending())


def _log_to_file(settings: Settings) -> Path:
    """Worker logs (JSON lines, structlog and huey's own) go to OBJLIB_HOME/logs/upload.log,
    not over the progress view."""
    path = settings.home / "logs" / "upload.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 — lives as long as the process
    log.configure(json=True, stream=stream)
    huey_log = logging.getLogger("huey")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    huey_log.handlers = [handler]
    huey_log.setLevel(logging.INFO)
    huey_log.propagate = False
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


def upload(settings: Settings, *, concurrency: int = 7, batch_size: int = 150,
           console: Console | None = None, shutdown_timeout_s: float = 30.0,
           refresh_s: float = 0.5, plain_every_s: float = 5.0) -> RunResult:
    """Enqueue what needs work as one run, work it off in this process with live progress
    (plain lines when ``console`` is not a terminal), stop the workers, close the run."""
    console = console or Console()
    catalog = status.existing_catalog(settings)
    log_path = _log_to_file(settings)
    with Interrupts() as interrupts:
        files = runs.work_to_do(catalog)
        enqueued = enqueue(settings)
        run_id = runs.start(catalog, files, now=time.time(), owner=process_owner(),
                            store=enqueued.store, concurrency=concurrency, batch_size=batch_size)
        view = (LiveView if console.is_terminal else PlainView)(
            console, run_id, catalog.get_meta("store_display_name") or enqueued.store,
            concurrency, batch_size, plain_every_s)
        watcher = _Watcher(settings, catalog, run_id, batch_size, view, interrupts, refresh_s)
        stopped = True
        with view:
            if not interrupts.count:  # a Ctrl+C during the enqueue: no worker is started
                consumer = start_workers(settings, concurrency)
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
                recover(self.settings, self.catalog, running=bind(self.settings).running_here())
                next_recovery = time.monotonic() + _RECOVER_EVERY_S
            p = self.show()
            if p.done and not removals_waiting(self.settings):
                return
            self.interrupts.wait(self.refresh_s)

    def stop(self, consumer: _ForegroundConsumer, timeout_s: float) -> bool:
        """No new task; wait (showing progress) up to ``timeout_s`` for the steps in flight,
        unless an immediate stop is asked for. True if every worker thread ended."""
        consumer.stop_flag.set()
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
            bind(self.settings).freeze_writes()  # they change nothing the summary counts
            return False
        return True


def exit_now(result: RunResult) -> None:
    """After the summary: if worker threads are still running (an immediate stop), end the
    process at once with the run's exit code; their rows are recovered by the next run."""
    if not result.workers_stopped:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(result.exit_code)


# ---------------------------------------------------------------------------- views


def _rate(p: runs.Progress, started: float) -> float:
    elapsed = time.monotonic() - started
    return p.indexed / elapsed if elapsed > 0 else 0.0


def _health(snap: status.Snapshot) -> str:
    return (f"breaker {status.breaker_text(snap.throttle)} · {status.rate_text(snap.throttle)} · "
            f"queue {snap.waiting} waiting, {snap.scheduled} scheduled")


def _steps_text(p: runs.Progress) -> str:
    return ", ".join(f"{step} {n}" for step, n in p.steps.items() if n) or "none"


class LiveView:
    """On a terminal: the run (bar, count, percentage, ETA), the current batch, one line per
    file in flight with its step, then breaker, rate and queue; redrawn in place."""

    def __init__(self, console: Console, run_id: int, store: str, concurrency: int,
                 batch_size: int, _plain_every_s: float = 0.0):
        self.console, self.run_id, self.store = console, run_id, store
        self.concurrency = concurrency
        self.started = time.monotonic()
        self.bars = Progress(TextColumn("{task.description}", style="bold"),
                             BarColumn(bar_width=40), MofNCompleteColumn(), TaskProgressColumn(),
                             TextColumn("ETA"), TimeRemainingColumn(),
                             TextColumn("{task.fields[extra]}"),
                             console=console, auto_refresh=False)
        self.run_bar = self.bars.add_task("run  ", total=None, extra="")
        self.batch_bar = self.bars.add_task("batch", total=None, extra="")
        self._batch = -1
        self.live = Live(console=console, auto_refresh=False, transient=True)

    def __enter__(self) -> LiveView:
        self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        self.live.stop()

    def show(self, p: runs.Progress, snap: status.Snapshot, note: str | None) -> None:
        extra = f"{p.indexed} indexed · {p.failed} failed · {_rate(p, self.started):.1f} files/s"
        self.bars.update(self.run_bar, total=p.total, completed=p.settled, extra=extra)
        label = f"batch {p.batch_index + 1}/{p.batches}"
        if p.batch_index != self._batch:
            self.bars.reset(self.batch_bar, total=p.batch_total, completed=p.batch_settled,
                            description=label)
            self._batch = p.batch_index
        self.bars.update(self.batch_bar, total=p.batch_total, completed=p.batch_settled,
                         extra=f"{p.batch_size} files per batch, in enqueue order")
        self.live.update(self.render(p, snap, note), refresh=True)

    def render(self, p: runs.Progress, snap: status.Snapshot, note: str | None):
        title = Text.assemble(("objlib upload", "bold"), f" · run {self.run_id} · store ",
                              (self.store, "bold"), f" · {self.concurrency} workers")
        flying = Table.grid(padding=(0, 2))
        flying.add_column(width=14)
        flying.add_column(overflow="ellipsis", no_wrap=True)
        for f in p.in_flight:
            flying.add_row(Text(f.step, style=_STEP_STYLE[f.step]), f.path)
        shown, total = len(p.in_flight), sum(p.steps.values())
        more = f" (showing {shown})" if total > shown else ""
        head = Text(f"in flight {total}{more}: {_steps_text(p)} · queued {p.queued}", style="dim")
        library = (f"library {snap.files['indexed']}/{snap.eligible} indexed "
                   f"({snap.percent:.1f}%), {snap.files['failed']} failed")
        hint = note or "Ctrl+C: stop after the steps in flight (resumable) · twice: at once"
        return Group(title, self.bars, head, flying, Text(_health(snap), style="dim"),
                     Text(library, style="dim"), Text(hint, style="yellow" if note else "dim"))


class PlainView:
    """Without a terminal (pipes, CI): a plain line when a batch completes, when a note
    appears, and every ``every_s`` seconds otherwise; never a control sequence."""

    def __init__(self, console: Console, run_id: int, store: str, concurrency: int,
                 batch_size: int, every_s: float = 5.0):
        self.console, self.run_id, self.every_s = console, run_id, every_s
        self.started = time.monotonic()
        self._shown_at = -every_s
        self._last: tuple | None = None
        self.console.print(f"objlib upload: run {run_id}, store {store}, {concurrency} workers, "
                           f"batches of {batch_size}", highlight=False, soft_wrap=True)

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def show(self, p: runs.Progress, snap: status.Snapshot, note: str | None) -> None:
        key = (p.batch_index, p.done, note)
        due = time.monotonic() - self._shown_at >= self.every_s
        if key == self._last and not due:
            return
        self._last, self._shown_at = key, time.monotonic()
        self.console.print(self.line(p, snap, note), highlight=False, soft_wrap=True)

    def line(self, p: runs.Progress, snap: status.Snapshot, note: str | None) -> str:
        rate = _rate(p, self.started)
        remaining = p.total - p.settled
        eta = status.duration(remaining / rate) if rate > 0 else "-"
        percent = 100.0 * p.settled / p.total if p.total else 100.0
        return (f"{status.clock(time.time())} run {self.run_id}: {p.settled}/{p.total} done "
                f"({percent:.1f}%), {p.indexed} indexed, {p.failed} failed | "
                f"batch {p.batch_index + 1}/{p.batches}: {p.batch_settled}/{p.batch_total} | "
                f"in flight: {_steps_text(p)}; queued {p.queued} | {rate:.1f} files/s | "
                f"ETA {eta} | {_health(snap)}" + (f" | {note}" if note else ""))


# ---------------------------------------------------------------------------- summary


def summary_panel(result: RunResult) -> Panel:
    """What the run did: indexed, failed, skipped, retried, rate-limited, duration, files/s;
    for a run cut short, what is left and that it resumes."""
    run, lib = result.run, result.library
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    grid.add_column(style="dim")
    rows = [("indexed", run["indexed"], f"of {run['total']} in this run"),
            ("failed", run["failed"], "see `objlib failures`" if run["failed"] else ""),
            ("skipped", lib.files[SKIPPED], "not eligible: `objlib failures --skipped`"),
            ("retried", run["retried"], "transient errors retried"),
            ("rate-limited", run["rate_limited"], "429s met (deferred, not failed)"),
            ("duration", status.duration(run["duration_s"]), ""),
            ("files/s", f"{run['files_per_s'] or 0:.2f}", "indexed per second")]
    if run["open"]:
        rows.append(("not finished", run["open"], "resumable: run `objlib upload` again"))
    if run["left_over"]:
        rows.append(("left the run", run["left_over"], "changed, deleted or handed back; "
                                                         "the next run takes them"))
    rows.append(("library", f"{lib.files['indexed']}/{lib.eligible}",
                 f"indexed ({lib.percent:.1f}%)"))
    for name, value, note in rows:
        grid.add_row(name, str(value), note)
    grid.add_row("log", "", str(result.log_path))
    style = {runs.DONE: "green" if not run["failed"] else "red"}.get(run["outcome"], "yellow")
    return Panel(grid, title=f"objlib upload · run {run['id']} · {run['outcome']}",
                 title_align="left", border_style=style, expand=False)
