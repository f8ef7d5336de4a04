"""The huey tasks. Glue only: each task calls one pipeline step and turns "not now" into a
re-schedule. Run the workers with:

    huey_consumer objlib.tasks.huey -w 7            # threads (recommended flags: see workers/)

Task arguments are catalogue ids, never paths, objects or secrets (DESIGN invariant 9).
"""

from __future__ import annotations

import copy
import functools
import os
import sqlite3
import threading

import structlog
from huey import SqliteHuey, crontab
from huey.exceptions import RetryTask
from huey.signals import SIGNAL_EXECUTING
from huey.storage import SqliteStorage
from huey.utils import normalize_time

from objlib import log
from objlib import pipeline
from objlib.lane import configure as lane_configure, lane
from objlib.catalog import Catalog, open_catalog
from objlib.errors import CatalogError, ConfigError, ObjlibError, QueueError
from objlib.settings import Settings
from objlib.throttle import Deferred


class _QueueStorage(SqliteStorage):
    """huey's SQLite storage, touching no file until it is used: the tables are made with
    the first connection (huey makes them in ``__init__``), and without a file name it takes
    the queue of the home in force at that moment."""

    def __init__(self, name: str = "objlib", filename: str | None = None, **kwargs):
        super().__init__(name, filename=filename, create_tables=False, **kwargs)

    def _create_connection(self) -> sqlite3.Connection:
        if self.filename is None:
            settings = Settings.load()
            self.filename, self._timeout = str(settings.queue_db), settings.busy_timeout_s
        conn = super()._create_connection()
        try:
            # WAL with synchronous=NORMAL, like the catalogue and the throttle: a commit no
            # longer waits for an fsync (huey's default, FULL, cost ~5 ms per enqueue,
            # dequeue or schedule on an idle disk and seconds on a busy one, all behind
            # one lock). A crash of the process loses nothing; an OS crash may lose the
            # last tasks, and recovery re-creates them from the catalogue, which is the
            # source of truth and has never been more durable than NORMAL itself.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(self.begin_sql)
            for statement in self.ddl:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn


class _Huey(SqliteHuey):
    """objlib's queue. Importing this module creates nothing; ``huey_consumer`` (through
    ``create_consumer``) first checks the home it would serve and refuses to start with one
    line, not a traceback, when that home cannot be served."""

    storage_class = _QueueStorage

    def create_consumer(self, **options):
        try:
            settings = Settings.load()
            check_home(settings)
        except ObjlibError as err:
            raise SystemExit(f"objlib: the consumer cannot start: {err}") from None
        if not structlog.is_configured():
            log.configure(json=True)
        log.get_logger("objlib.worker").info("consumer serving", home=str(settings.home),
                                             pid=os.getpid())
        # the lane sends the calls that follow an upload: two per worker of a process
        # (objlib.lane; worker processes each have one worker)
        threaded = options.get("worker_type", "thread") in ("thread", "greenlet")
        lane_configure(options.get("workers", 1) if threaded else 1)
        return super().create_consumer(**options)


def check_home(settings: Settings) -> None:
    """The home a consumer serves is a folder it can write, with a catalogue made by
    ``objlib scan`` and a usable queue; otherwise an ObjlibError saying what to do."""
    from objlib.queue import bind, queue_errors

    home = settings.home
    where = ("from OBJLIB_HOME" if os.environ.get("OBJLIB_HOME")
             else "the default ./data: OBJLIB_HOME is not set")
    if home.exists() and not home.is_dir():
        raise ConfigError(f"{home} is not a folder ({where}); set OBJLIB_HOME to the folder "
                          "that holds library.db")
    if home.is_dir() and not os.access(home, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(f"{home} is a folder this user cannot write ({where}); fix its "
                          "permissions or run the consumer as its owner")
    if not settings.library_db.is_file():
        raise CatalogError(f"no catalogue in {home} ({where}): start the consumer with "
                           "OBJLIB_HOME=/path/to/the/home that `objlib scan` used (or run "
                           "`objlib scan LIBRARY` there first)")
    open_catalog(settings).close()
    with queue_errors(settings):
        row = bind(settings).huey.storage.sql("PRAGMA quick_check", results=True)
        if row[0][0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row[0][0]}")


huey = _Huey("objlib", results=False)

_lock = threading.Lock()
_context: tuple[int, pipeline.Context] | None = None
_catalog: tuple[int, Catalog] | None = None


def context() -> pipeline.Context:
    """The per-process context, built lazily after fork (never at import)."""
    global _context
    with _lock:
        if _context is None or _context[0] != os.getpid():
            _context = (os.getpid(), pipeline.build_context(Settings.load()))
        return _context[1]


def catalog() -> Catalog:
    """The catalogue alone (recovery needs no API client, hence no key)."""
    global _catalog
    with _lock:
        if _catalog is None or _catalog[0] != os.getpid():
            _catalog = (os.getpid(), open_catalog(Settings.load()))
        return _catalog[1]


def freeze_writes() -> None:
    """An immediate stop (``objlib upload``, Ctrl+C twice): the steps still running in this
    process write nothing more to the catalogue (their rows stay resumable), so the run's
    summary stays true until the process ends."""
    with _lock:
        if _context is not None and _context[0] == os.getpid():
            _context[1].catalog.freeze()
        if _catalog is not None and _catalog[0] == os.getpid():
            _catalog[1].freeze()


# Work already started goes before work not started yet (huey runs higher priority first):
# polls, removals and re-scheduled steps finish files instead of waiting behind new uploads.
_AHEAD = 10


def _rescheduling(fn):
    """A step that must wait raises Deferred; huey re-schedules the same task (same id,
    same chain) with that delay, ahead of new work. No worker ever sleeps on a remote
    operation."""

    @functools.wraps(fn)
    def wrapper(*args, task=None, **kwargs):
        try:
            return fn(*args, task=task, **kwargs)
        except Deferred as d:
            task.priority = max(task.priority or 0, _AHEAD)
            raise RetryTask(str(d), delay=max(d.delay_s, 0.0)) from None
        except ConfigError as err:
            # e.g. no GEMINI_API_KEY in the workers' environment, or a key the service
            # refused: an operator's fix, not the file's fault. Nothing is failed; the work
            # waits until the consumer is restarted with the setting right.
            log.get_logger("objlib.worker").error("cannot work: fix the setting and restart",
                                                   error=str(err))
            raise RetryTask(str(err), delay=_operator_wait_s()) from None
        except (CatalogError, QueueError) as err:
            # a read-only, locked, damaged or missing database is the operator's to fix, not
            # the file's: nothing is failed, and the task tries again (on a fresh connection)
            # until the fix is in
            wait_s = _operator_wait_s()
            log.get_logger("objlib.worker").error("cannot work: the database cannot be used",
                                                   error=str(err), retry_in_s=wait_s)
            raise RetryTask(str(err), delay=wait_s) from None

    return wrapper


def _operator_wait_s() -> float:
    """``operator_wait_s`` of the home in force (its config may be what needs the fix)."""
    try:
        return Settings.load().operator_wait_s
    except ConfigError:
        return Settings.operator_wait_s


def _reporting(fn):
    """A periodic task that meets a database it cannot use says so in one line (no
    traceback); it runs again a minute later anyway."""

    @functools.wraps(fn)
    def wrapper():
        try:
            return fn()
        except (CatalogError, QueueError) as err:
            log.get_logger("objlib.worker").error("skipped: the database cannot be used",
                                                   task=fn.__name__, error=str(err))
            return None

    return wrapper


_running: dict[str, object] = {}  # tasks executing in this process right now
_continuing: dict[str, object] = {}  # tasks whose step goes on in this process's lane


@huey.signal()
def _track_running(signal_name, task, *args, **kwargs):
    """Recovery in this process must not take a task that a worker here has dequeued but
    not yet started (it is in no queue and its lease may still name a dead process)."""
    with _lock:
        if signal_name == SIGNAL_EXECUTING:
            _running[task.id] = task
        else:
            _running.pop(task.id, None)


def running_here() -> list:
    with _lock:
        return list(_running.values()) + list(_continuing.values())


def _hand_off(task, rest, then) -> bool:
    """Finish ``task``'s step on the control lane (``objlib.lane``) while this worker takes
    the next task. ``rest()`` runs there; its value goes to ``then(value, successor)``; a
    wait it raises (Deferred, an operator's error) re-schedules the same task (same id, same
    chain, as RetryTask would), and an unexpected error is retried like huey's own retries.
    False (nothing handed off) when no lane thread is free: the caller does it itself."""
    successor = task.on_complete

    def run():
        try:
            try:
                value = _rescheduling(lambda task=None: rest())(task=task)
            except RetryTask as wait:
                _again(task, successor, wait.delay or 0.0)
            except Exception:  # noqa: BLE001 — as huey does for a task: log, retry a few
                log.get_logger("objlib.worker").exception("step failed in the lane",
                                                           task=task.id)
                if task.retries:
                    task.retries -= 1
                    _again(task, successor, task.retry_delay or 0.0)
            else:
                then(value, successor)
        except Exception:  # noqa: BLE001 — e.g. queue.db locked for too long: the row stays
            # leased by this process, and recovery resumes it once the lease ends
            log.get_logger("objlib.worker").exception("could not queue what follows a step",
                                                       task=task.id)
        finally:
            with _lock:
                _continuing.pop(task.id, None)

    task.on_complete = None  # the lane enqueues it when the step is done, not huey
    with _lock:
        _continuing[task.id] = task
    if lane().try_submit(run) is None:
        with _lock:
            _continuing.pop(task.id, None)
        task.on_complete = successor
        return False
    return True


def _again(task, successor, delay_s: float) -> None:
    """The same task (a copy: huey may still be finishing the original's run) back in the
    queue, or in the schedule after ``delay_s``."""
    again = copy.copy(task)
    again.on_complete = successor
    if delay_s > 0:
        again.eta = normalize_time(delay=delay_s, utc=huey.utc)
        huey.add_schedule(again)
    else:
        again.eta = None
        huey.enqueue(again)


# Unexpected exceptions (a bug, a catalogue locked for too long) are retried by huey a few
# times; if they persist the row's lease runs out and recovery hands it to a new task.
_UNEXPECTED = dict(retries=3, retry_delay=5, retry_backoff=2.0)


@huey.task(context=True, name="upload_and_import", **_UNEXPECTED)
@_rescheduling
def upload_and_import(file_id: int, version: int, task=None):
    """The upload on this worker; the importFile on the lane when a lane thread is free (the
    worker then takes the next file), else here."""
    ctx = context()
    started = pipeline.upload(ctx, file_id, version, task.id)
    if isinstance(started, pipeline.ImportReady):
        ready = started

        def then(started: bool, successor) -> None:
            if started:
                _poll_after_import(ctx, file_id, version, successor)

        if _hand_off(task, lambda: pipeline.start_import(ctx, ready, task.id), then):
            return None
        started = pipeline.start_import(ctx, ready, task.id)
    if started:
        _first_look_in(task, pipeline.first_look_s(ctx))
        return (file_id, version)  # becomes the chained poll_import's arguments
    return None


def _poll_after_import(ctx: pipeline.Context, file_id: int, version: int, successor) -> None:
    """The import started on the lane: its chained poll_import (made afresh if the task had
    none) goes into the schedule for the first look."""
    poll = successor if successor is not None else poll_import.s()
    poll.extend_data((file_id, version))
    poll.eta = normalize_time(delay=pipeline.first_look_s(ctx), utc=huey.utc)
    huey.add_schedule(poll)


def _first_look_in(task, delay_s: float) -> None:
    """The chained poll_import is due when the import is expected to be done: huey puts a
    successor with an eta in its schedule (a worker that dequeues it early hands it to the
    schedule without running it), so the poll's first run is its only one when the import
    is done by then, and no run is spent just to wait."""
    if task.on_complete is not None:
        task.on_complete.eta = normalize_time(delay=delay_s, utc=huey.utc)


@huey.task(context=True, name="poll_import", priority=_AHEAD, **_UNEXPECTED)
@_rescheduling
def poll_import(file_id: int | None = None, version: int | None = None, task=None):
    """One look at the import's operation, on the lane when a lane thread is free."""
    if file_id is None:  # the upload step stopped early: nothing to follow
        return None
    ctx = context()

    def then(removals: list[int], _successor) -> None:
        for removal_id in removals:
            remove_document(removal_id)

    look = functools.partial(pipeline.poll_import, ctx, file_id, version, task.id)
    if not _hand_off(task, look, then):
        then(look(), None)
    return None


@huey.task(context=True, name="remove_document", priority=_AHEAD, **_UNEXPECTED)
@_rescheduling
def remove_document(removal_id: int, task=None):
    pipeline.remove_document(context(), removal_id, task.id)


@huey.task(context=True, name="settle_superseded", priority=_AHEAD, **_UNEXPECTED)
@_rescheduling
def settle_superseded(superseded_id: int, task=None):
    """The document of an import whose version was replaced meanwhile: found, then removed."""
    for removal_id in pipeline.settle_superseded(context(), superseded_id, task.id):
        remove_document(removal_id)


@huey.periodic_task(crontab(minute="*"), name="recover_stuck")
@_reporting
def recover_stuck():
    """Once a minute (on the consumer that runs periodic tasks): resume rows whose task was
    lost with a killed worker, and re-send lost document removals."""
    from objlib.queue import recover

    recover(Settings.load(), catalog(), running=running_here())


@huey.on_startup()
def _worker_started():
    """Each worker: JSON logs; the first one in the process also resumes what a previous
    consumer left behind (its dead workers' rows are recovered at once, not after a lease)."""
    global _started
    with _lock:
        first, _started = not _started, True
    if not structlog.is_configured():
        log.configure(json=True)
    if first:
        recover_stuck.call_local()


_started = False


@huey.periodic_task(crontab(minute="*"), name="reconcile_store")
@_reporting
def reconcile_store():
    """Off by default: with ``reconcile_every_minutes = N`` in config.toml, the consumer that
    runs periodic tasks reconciles the store with the catalogue (and fixes drift) every N
    minutes, counted from the last reconcile of any kind."""
    from objlib import reconcile

    settings = Settings.load()
    if reconcile.due(settings, catalog()):
        reconcile.reconcile(settings, catalog=catalog(), fix=True)
