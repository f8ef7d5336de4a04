"""Turning catalogue rows into huey tasks, and recovering rows whose task was lost.

huey delivers at most once: a worker killed mid-task loses it, and a ``.then()`` successor
is lost if the worker dies before it is enqueued. So the catalogue decides what is live: a
row in flight is alive if the task that owns it is still in the queue or the schedule, or if
a living worker holds its lease. Everything else is stuck and is handed to a new task.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from objlib.catalog import Catalog, open_catalog
from objlib.catalog import lifecycle as lc
from objlib.errors import CatalogError, QueueError
from objlib.store import ensure_store
from objlib.log import get_logger
from objlib.settings import Settings

log = get_logger("objlib.queue")

QUEUED_GRACE_S = 5.0  # a queued row's task may be between dequeue and claim this long


def bind(settings: Settings):
    """objlib.tasks.huey, pointed at this settings' queue file (tests and --home change it)."""
    with queue_errors(settings):
        from objlib import tasks

        wanted = {"filename": str(settings.ensure_home().queue_db),
                  "timeout": settings.busy_timeout_s}
        if any(tasks.huey.storage_kwargs.get(k) != v for k, v in wanted.items()):
            tasks.huey.storage.close()
            tasks.huey.storage_kwargs.update(wanted)
            tasks.huey.storage = tasks.huey.create_storage()
        return tasks


@contextmanager
def queue_errors(settings: Settings):
    """huey's SQLite errors as a clear QueueError (the catalogue keeps everything needed).
    Only huey's: the catalogue's own errors arrive here already as CatalogError (Catalog
    translates every SQLite error it meets), so a damaged library.db is never blamed on
    queue.db."""
    path = settings.queue_db
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
        raise QueueError(f"{path} is locked by another writer for more than "
                         f"{settings.busy_timeout_s:g} s; nothing is lost — run the command "
                         "again when it is free") from exc
    except sqlite3.DatabaseError as exc:
        raise QueueError(f"{path} is not a usable queue ({exc}). The catalogue is the source "
                         "of truth: move the file away and run `objlib enqueue` to rebuild "
                         "the queue") from exc


@dataclass
class LiveTasks:
    """What the queue holds right now, by what each task is for."""

    task_ids: set[str] = field(default_factory=set)
    uploads: set[tuple[int, int]] = field(default_factory=set)
    polls: set[tuple[int, int]] = field(default_factory=set)
    removals: set[int] = field(default_factory=set)
    settles: set[int] = field(default_factory=set)
    waiting: int = 0
    scheduled: int = 0

    def add(self, task) -> None:
        while task is not None:
            self.task_ids.add(task.id)
            name = task.name.rsplit(".", 1)[-1]
            if name == "upload_and_import":
                self.uploads.add(tuple(task.args[:2]))
            elif name == "poll_import" and task.args:
                self.polls.add(tuple(task.args[:2]))
            elif name == "remove_document":
                self.removals.add(task.args[0])
            elif name == "settle_superseded":
                self.settles.add(task.args[0])
            task = task.on_complete


def live_tasks(huey) -> LiveTasks:
    live = LiveTasks()
    pending, scheduled = huey.pending(), huey.scheduled()
    live.waiting, live.scheduled = len(pending), len(scheduled)
    for task in pending + scheduled:
        live.add(task)
    return live


def owner_alive(owner: str | None) -> bool:
    """A lease owner (host:pid) on this host is alive if its process exists."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True  # cannot tell: trust the lease's expiry
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def is_stuck(row: lc.FileRow, live: LiveTasks, now: float) -> bool:
    key = (row.id, row.version)
    if row.task_id in live.task_ids or key in live.uploads or key in live.polls:
        return False
    if row.state == lc.QUEUED:
        return now - row.state_changed_at > QUEUED_GRACE_S
    leased = row.lease_until is not None and row.lease_until > now
    if not leased:
        return True
    return row.lease_owner is not None and not owner_alive(row.lease_owner)


@dataclass
class RecoverSummary:
    requeued: list[str] = field(default_factory=list)
    polls: list[str] = field(default_factory=list)
    removals: int = 0
    superseded: int = 0  # imports of replaced versions whose document is still to be found


@contextmanager
def _exclusive(settings: Settings):
    """One recovery at a time across processes (enqueue, periodic task, worker start-up);
    a second one at the same moment has nothing to add and is skipped."""
    with open(settings.ensure_home().home / "recover.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def recover(settings: Settings, catalog: Catalog, *, dry_run: bool = False,
            now: float | None = None, running=()) -> RecoverSummary:
    """Hand every stuck in-flight row to a new task; re-send lost removals. ``running``: tasks
    this process is executing (they are in no queue, yet alive)."""
    with _exclusive(settings) as mine, queue_errors(settings):
        if not mine:
            return RecoverSummary()
        return _recover(settings, catalog, dry_run=dry_run, now=now, running=running)


def _recover(settings: Settings, catalog: Catalog, *, dry_run: bool, now: float | None,
             running=()):
    tasks = bind(settings)
    now = time.time() if now is None else now
    live = live_tasks(tasks.huey)
    for task in running:
        live.add(task)
    summary = RecoverSummary()
    marks = ",".join("?" * len(lc.IN_FLIGHT))
    rows = catalog.query(f"SELECT * FROM files WHERE state IN ({marks})", lc.IN_FLIGHT)
    for row in map(lc.FileRow.from_row, rows):
        if not is_stuck(row, live, now):
            continue
        if row.state == lc.IMPORTING:
            if dry_run or lc.requeue(catalog, row, None, now, "poll lost"):
                summary.polls.append(row.path)
                if not dry_run:
                    tasks.huey.enqueue(tasks.poll_import.s(row.id, row.version))
            continue
        task = _upload_task(tasks, row.id, row.version)
        if dry_run or lc.requeue(catalog, row, task.id, now, f"task lost while {row.state}"):
            summary.requeued.append(row.path)
            if not dry_run:
                tasks.huey.enqueue(task)
    for removal in lc.open_removals(catalog):
        if removal.id not in live.removals:
            summary.removals += 1
            if not dry_run:
                tasks.huey.enqueue(tasks.remove_document.s(removal.id))
    for entry in lc.open_superseded(catalog):
        followed = (entry.file_id, entry.version)  # its upload task's chained poll settles it
        if entry.id not in live.settles and followed not in live.polls | live.uploads:
            summary.superseded += 1
            if not dry_run:
                tasks.huey.enqueue(tasks.settle_superseded.s(entry.id))
    if summary.requeued or summary.polls:
        log.warning("recovered stuck rows", requeued=len(summary.requeued),
                    polls=len(summary.polls))
    return summary


def _upload_task(tasks, file_id: int, version: int):
    return tasks.upload_and_import.s(file_id, version).then(tasks.poll_import)


@dataclass
class EnqueueSummary:
    store: str | None
    enqueued: list[str]
    recovered: RecoverSummary
    retried_failed: int
    remaining: int  # pending rows left out by --limit
    dry_run: bool


def enqueue(settings: Settings, *, limit: int | None = None, dry_run: bool = False,
            retry_failed: bool = False, gemini=None, now: float | None = None) -> EnqueueSummary:
    """Every row that needs work becomes one task per file version (twice is harmless).
    ``now`` (tests) stamps everything; by default each step reads the clock when it acts,
    so ``queued_at`` is when a row was queued, not when the command began (the SDK's
    import and the store's lookup, seconds on a busy machine, come before)."""
    if not settings.library_db.exists():
        raise CatalogError(f"no catalogue in {settings.home} yet: run `objlib scan LIBRARY` "
                           "first (or point --home / OBJLIB_HOME at the right folder)")
    catalog = open_catalog(settings)
    try:
        return _enqueue(settings, catalog, limit, dry_run, retry_failed, gemini, now)
    finally:
        catalog.close()


def _enqueue(settings, catalog, limit, dry_run, retry_failed, gemini, now) -> EnqueueSummary:
    store = catalog.get_meta("store")
    if not dry_run:
        store = ensure_store(settings, catalog, gemini)
    clock = (lambda: now) if now is not None else time.time
    now = clock()
    retried = 0
    if retry_failed:
        retried = (len(catalog.query("SELECT id FROM files WHERE state=?", (lc.FAILED,)))
                   if dry_run else lc.retry_failed(catalog, now))
    tasks = bind(settings)
    recovered = recover(settings, catalog, dry_run=dry_run, now=now)
    pending = catalog.query("SELECT id, version, path FROM files WHERE state=? ORDER BY id",
                            (lc.PENDING,))
    chosen = pending if limit is None else pending[:limit]
    enqueued = []
    with queue_errors(settings):
        for row in chosen:
            if dry_run:
                enqueued.append(row["path"])
                continue
            # the row first: if the enqueue below fails, recovery finds a queued row with no
            # task and hands it to a new one
            task = _upload_task(tasks, row["id"], row["version"])
            if lc.mark_queued(catalog, row["id"], row["version"], task.id, clock()):
                tasks.huey.enqueue(task)
                enqueued.append(row["path"])
    return EnqueueSummary(store=store, enqueued=enqueued, recovered=recovered,
                          retried_failed=retried, remaining=len(pending) - len(chosen),
                          dry_run=dry_run)


def queue_depth(settings: Settings) -> tuple[int, int]:
    """(waiting, scheduled) read straight from huey's storage."""
    tasks = bind(settings)
    with queue_errors(settings):
        return tasks.huey.pending_count(), tasks.huey.scheduled_count()
