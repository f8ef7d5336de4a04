"""The queue: huey and the tasks. The only module in objlib that imports huey. Glue only:
each task calls one pipeline step and turns "not now" into a re-schedule. Run the workers with:

    huey_consumer objlib.tasks.huey -w 7            # threads (recommended flags: see workers/)

``make_huey(settings)`` builds the queue of one home (its huey, its tasks); ``queue_for``
keeps one per process and settings. The module-level ``huey`` that ``huey_consumer`` loads is
the queue of ``Settings.load()``, read at its first use: importing this module touches no
file. Around them, the queue's side of the commands: handing rows to tasks
(``send_uploads``), crash recovery (``recover``, deciding with ``objlib.recovery``),
reconcile with the live tasks (``reconcile``), the queue's depth, and the in-process consumer
of ``objlib upload``.

Task arguments are catalogue ids, never paths, objects or secrets (DESIGN invariant 9).
"""

from __future__ import annotations

import copy
import fcntl
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import TYPE_CHECKING

from huey import SqliteHuey, crontab
from huey.consumer import Consumer
from huey.exceptions import RetryTask
from huey.storage import SqliteStorage
from huey.utils import normalize_time

from objlib import log, recovery
from objlib.catalog import Catalog, open_catalog
from objlib.catalog import lifecycle as lc
from objlib.errors import CatalogError, ConfigError, ObjlibError, QueueError
from objlib.lane import WAIT_BUDGET_S, WAIT_MAX_S, lane
from objlib.lane import configure as lane_configure
from objlib.recovery import LiveTasks, RecoverSummary
from objlib.settings import Settings
from objlib.throttle import Deferred

if TYPE_CHECKING:  # pipeline and reconcile import google.genai (slow): `status` needs neither
    from objlib import pipeline
    from objlib.reconcile import Report

QUEUE_NAME = "objlib"

# Work already started goes before work not started yet (huey runs higher priority first):
# polls, removals and re-scheduled steps finish files instead of waiting behind new uploads.
_AHEAD = 10
# Unexpected exceptions (a bug, a catalogue locked for too long) are retried by huey a few
# times; if they persist the row's lease runs out and recovery hands it to a new task.
_UNEXPECTED = dict(retries=3, retry_delay=5, retry_backoff=2.0)


# ---------------------------------------------------------------------------- the queue


class _QueueStorage(SqliteStorage):
    """huey's SQLite storage, touching no file until it is used: the home and the tables are
    made with the first connection (huey makes the tables in ``__init__``), from the settings
    of its queue, which are read then."""

    filename: str | None

    def __init__(self, name: str = QUEUE_NAME, *, settings: Callable[[], Settings], **kwargs):
        super().__init__(name, filename=None, create_tables=False, **kwargs)
        self._settings = settings

    def _create_connection(self) -> sqlite3.Connection:
        if self.filename is None:
            settings = self._settings().ensure_home()
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

    def enqueue_many(self, items: list[tuple[bytes, float | None]]) -> None:
        """Several tasks (serialized, with their priority) in one transaction: the INSERT of
        huey's own ``enqueue``, which commits each task alone. huey's API has no batch
        (``Huey.enqueue`` of a group enqueues its tasks one by one)."""
        with self.db(commit=True) as curs:
            curs.executemany("insert into task (queue, data, priority) values (?, ?, ?)",
                             [(self.name, self.to_blob(data), priority or 0)
                              for data, priority in items])


class ObjlibHuey(SqliteHuey):
    """One home's queue: huey, with objlib's tasks registered on it (``upload_and_import``,
    ``poll_import``, ``remove_document``, ``settle_superseded`` and the periodic
    ``recover_stuck``, ``reconcile_store`` and ``sync_library``), the settings it serves,
    and the per-process context its tasks use. Building one touches no file."""

    storage_class = _QueueStorage

    def __init__(self, settings: Settings | Callable[[], Settings]):
        self._settings_source = settings if callable(settings) else (lambda: settings)
        self._settings: Settings | None = None
        self._lock = threading.Lock()
        self._running: dict[str, object] = {}  # tasks dequeued or executing here right now
        self._handoff = threading.Lock()  # a dequeue and a reading of the live tasks
        self._continuing: dict[str, object] = {}  # tasks whose step goes on in the lane
        self._context: tuple[int, pipeline.Context] | None = None
        self._catalog: tuple[int, Catalog] | None = None
        self._started = False
        super().__init__(QUEUE_NAME, results=False, settings=lambda: self.settings)
        _register_tasks(self)

    @property
    def settings(self) -> Settings:
        """The settings this queue serves (the lazy consumer queue reads them at first use)."""
        if self._settings is None:
            self._settings = self._settings_source()
        return self._settings

    def create_consumer(self, **options):
        """``huey_consumer`` first checks the home it would serve and refuses to start with
        one line, not a traceback, when that home cannot be served."""
        try:
            settings = self.settings
            check_home(self)
        except ObjlibError as err:
            raise SystemExit(f"objlib: the consumer cannot start: {err}") from None
        log.configure_worker()
        _import_the_steps()
        log.get_logger("objlib.worker").info("consumer serving", home=str(settings.home),
                                             pid=os.getpid())
        # the lane sends the calls that follow an upload: two per worker of a process
        # (objlib.lane; worker processes each have one worker)
        threaded = options.get("worker_type", "thread") in ("thread", "greenlet")
        lane_configure(options.get("workers", 1) if threaded else 1)
        return super().create_consumer(**options)

    def dequeue(self):
        """A task taken off the queue is in no queue until it runs: it counts as running here
        from the moment it leaves the queue (a reading of the live tasks waits for the
        hand-off), so that recovery never gives its row to a second task."""
        with self._handoff:
            task = super().dequeue()
            if task is not None:
                with self._lock:
                    self._running[task.id] = task
        return task

    def execute(self, task, timestamp=None):
        """Every line logged while the task runs (huey's own included) names it. The task
        counts as running here until it returns (by then, a retry or a not-yet-due task is
        back in the queue or the schedule)."""
        with self._lock:
            self._running[task.id] = task
        try:
            with log.bind_task(task.id, task.name):
                return super().execute(task, timestamp)
        finally:
            with self._lock:
                if self._running.get(task.id) is task:  # not a retry a worker has taken since
                    del self._running[task.id]

    # ------------------------------------------------------------ per-process state

    def context(self) -> pipeline.Context:
        """The tasks' context in this process, built lazily after fork (never at import)."""
        with self._lock:
            if self._context is None or self._context[0] != os.getpid():
                from objlib import pipeline

                self._context = (os.getpid(), pipeline.build_context(self.settings))
            return self._context[1]

    def catalog(self) -> Catalog:
        """The catalogue alone (recovery needs no API client, hence no key)."""
        with self._lock:
            if self._catalog is None or self._catalog[0] != os.getpid():
                self._catalog = (os.getpid(), open_catalog(self.settings))
            return self._catalog[1]

    def continuing(self, task, in_lane: bool) -> None:
        """``task``'s step goes on (or no longer) in this process's lane (``objlib.lane``)."""
        with self._lock:
            if in_lane:
                self._continuing[task.id] = task
            else:
                self._continuing.pop(task.id, None)

    def running_here(self) -> list:
        with self._lock:
            return list(self._running.values()) + list(self._continuing.values())

    def freeze_writes(self) -> None:
        """An immediate stop (``objlib upload``, Ctrl+C twice): the steps still running in
        this process write nothing more to the catalogue (their rows stay resumable), so the
        run's summary stays true until the process ends."""
        with self._lock:
            if self._context is not None and self._context[0] == os.getpid():
                self._context[1].catalog.freeze()
            if self._catalog is not None and self._catalog[0] == os.getpid():
                self._catalog[1].freeze()

    def first_start(self) -> bool:
        """True for the first worker started in this process."""
        with self._lock:
            first, self._started = not self._started, True
            return first

    # ------------------------------------------------------------ what the queue holds

    def live_tasks(self) -> LiveTasks:
        """Every task in the queue or the schedule (chained successors included), and those
        this process is running (they are in neither, yet alive)."""
        live = LiveTasks()
        with self._handoff, queue_errors(self.settings):
            pending, scheduled = self.pending(), self.scheduled()
            running = self.running_here()
        live.waiting, live.scheduled = len(pending), len(scheduled)
        for task in pending + scheduled + running:
            live.add(task)
        return live

    def depth(self) -> tuple[int, int]:
        """(waiting, scheduled)."""
        with queue_errors(self.settings):
            return self.pending_count(), self.scheduled_count()

    def send(self, task) -> None:
        with queue_errors(self.settings):
            self.enqueue(task)

    def send_many(self, tasks: list) -> None:
        """What ``send`` does for each task (huey's ``enqueue``: the expiry resolved, the
        task serialized), with one queue.db transaction for all. No ENQUEUED signal: objlib's
        one receiver (``track``) ignores it, and sending it cost ~5 % of a 20,000-file
        enqueue's CPU."""
        if self._immediate:
            for task in tasks:
                self.send(task)
            return
        items = []
        for task in tasks:
            if task.expires:
                task.resolve_expires(self.utc)
            items.append((self.serialize_task(task), task.priority))
        if items:
            with queue_errors(self.settings):
                self.storage.enqueue_many(items)

    def upload_task(self, file_id: int, version: int,
                    ids: tuple[str, str] | tuple[None, None] = (None, None)):
        """The upload of one file version with its chained poll (not yet sent: its id is
        recorded in the row first); ``ids``: the two tasks' ids (``task_ids``), else huey
        makes them."""
        upload_id, poll_id = ids
        return self.upload_and_import.s(file_id, version, id=upload_id).then(
            self.poll_import.s(id=poll_id))


def task_ids(n: int) -> list[str]:
    """``n`` task ids in the form of huey's own (random UUIDs, version 4) from one read of
    the system's randomness. huey makes each with ``uuid.uuid4()``: a system call and a
    UUID object a task, ~30 % of a 20,000-file enqueue's CPU here (40,000 tasks)."""
    out = []
    for h in bytes.hex(os.urandom(16 * n), " ", 16).split(" "):
        variant = "89ab"[int(h[16], 16) & 3]
        out.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}")
    return out


def _import_the_steps() -> None:
    """A consumer imports the pipeline (and with it google.genai, ~1 s of CPU) once, before
    its workers start: process workers are forked with it, instead of each importing it
    anew (7 at once starved a loaded machine for seconds). This module imports it lazily
    only so that ``objlib status`` can read the queue without it."""
    from objlib import pipeline, reconcile  # noqa: F401


_queues: dict[tuple[int, Settings], ObjlibHuey] = {}
_queues_lock = threading.Lock()


def make_huey(settings: Settings) -> ObjlibHuey:
    """A new queue for ``settings`` (its file is ``settings.queue_db``, opened at first use)."""
    return ObjlibHuey(settings)


_KEPT_QUEUES = 8  # a process serves one home; the tests' processes go through hundreds


def queue_for(settings: Settings) -> ObjlibHuey:
    """This process's queue for ``settings`` (one per process and settings: the home and
    every tunable), so that commands and in-process workers of one home share it. Past
    ``_KEPT_QUEUES``, the least recently asked for closes its queue.db connection (huey opens
    it again if that queue is still used)."""
    key = (os.getpid(), settings)
    with _queues_lock:
        q = _queues.pop(key, None) or make_huey(settings)
        _queues[key] = q  # the most recent last
        while len(_queues) > _KEPT_QUEUES:
            _queues.pop(next(iter(_queues))).storage.close()
        return q


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


def check_home(queue: ObjlibHuey) -> None:
    """The home a consumer serves is a folder it can write, with a catalogue made by
    ``objlib scan`` and a usable queue; otherwise an ObjlibError saying what to do."""
    settings = queue.settings
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
        row = queue.storage.sql("PRAGMA quick_check", results=True)
        if row[0][0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row[0][0]}")


# ---------------------------------------------------------------------------- the tasks


def _register_tasks(q: ObjlibHuey) -> None:
    """objlib's tasks on ``q`` (their names, ``objlib.tasks.<name>``, are what queue.db
    holds: they must not change)."""

    def task(name: str, step, **options):
        return q.task(context=True, name=name, **_UNEXPECTED, **options)(_rescheduling(q, step))

    q.upload_and_import = task("upload_and_import", _upload_and_import)
    q.poll_import = task("poll_import", _poll_import, priority=_AHEAD)
    q.remove_document = task("remove_document", _remove_document, priority=_AHEAD)
    q.settle_superseded = task("settle_superseded", _settle_superseded, priority=_AHEAD)
    q.recover_stuck = q.periodic_task(crontab(minute="*"), name="recover_stuck")(
        _reporting(q, _recover_stuck))
    q.reconcile_store = q.periodic_task(crontab(minute="*"), name="reconcile_store")(
        _reporting(q, _reconcile_store))
    q.sync_library = q.periodic_task(crontab(minute="*"), name="sync_library")(
        _reporting(q, _sync_library))
    q.on_startup(name="objlib_worker_started")(lambda: _worker_started(q))


def _rescheduling(q: ObjlibHuey, step, *, in_lane: bool = False):
    """A step that must wait raises Deferred; huey re-schedules the same task (same id,
    same chain) with that delay, ahead of new work. No worker ever sleeps on a remote
    operation. A short wait to send a request again is timed by the lane instead
    (``_timed_in_lane``), unless the step runs there already (``in_lane``: the lane waits
    itself, ``_waiting_out``)."""

    @functools.wraps(step)
    def run(*args, task=None, **kwargs):
        try:
            return step(q, *args, task=task, **kwargs)
        except Deferred as d:
            task.priority = max(task.priority or 0, _AHEAD)
            if not in_lane and _timed_in_lane(q, task, d):
                return None
            raise RetryTask(str(d), delay=max(d.delay_s, 0.0)) from None
        except ConfigError as err:
            # e.g. no GEMINI_API_KEY in the workers' environment, or a key the service
            # refused: an operator's fix, not the file's fault. Nothing is failed; the work
            # waits until the consumer is restarted with the setting right.
            log.get_logger("objlib.worker").error("cannot work: fix the setting and restart",
                                                   error=str(err))
            raise RetryTask(str(err), delay=q.settings.operator_wait_s) from None
        except (CatalogError, QueueError) as err:
            # a read-only, locked, damaged or missing database is the operator's to fix, not
            # the file's: nothing is failed, and the task tries again (on a fresh connection)
            # until the fix is in
            wait_s = q.settings.operator_wait_s
            log.get_logger("objlib.worker").error("cannot work: the database cannot be used",
                                                   error=str(err), retry_in_s=wait_s)
            raise RetryTask(str(err), delay=wait_s) from None

    return run


def _reporting(q: ObjlibHuey, job):
    """A periodic task that meets a database it cannot use says so in one line (no
    traceback); it runs again a minute later anyway."""

    @functools.wraps(job)
    def run():
        try:
            return job(q)
        except (CatalogError, QueueError) as err:
            log.get_logger("objlib.worker").error("skipped: the database cannot be used",
                                                   task=job.__name__.lstrip("_"),
                                                   error=str(err))
            return None

    return run


def _hand_off(q: ObjlibHuey, task, rest, then) -> bool:
    """Finish ``task``'s step on the control lane (``objlib.lane``) while this worker takes
    the next task. ``rest()`` runs there; its value goes to ``then(value, successor)``; a
    wait it raises (Deferred, an operator's error) re-schedules the same task (same id, same
    chain, as RetryTask would), and an unexpected error is retried like huey's own retries.
    False (nothing handed off) when no lane thread is free: the caller does it itself."""
    successor = task.on_complete

    def run():
        try:
            try:
                value = _rescheduling(q, lambda _q, task=None: _waiting_out(rest),
                                      in_lane=True)(task=task)
            except RetryTask as wait:
                _again(q, task, successor, wait.delay or 0.0)
            except Exception:  # noqa: BLE001 — as huey does for a task: log, retry a few
                log.get_logger("objlib.worker").exception("step failed in the lane",
                                                           task=task.id)
                if task.retries:
                    task.retries -= 1
                    _again(q, task, successor, task.retry_delay or 0.0)
            else:
                then(value, successor)
        except Exception:  # noqa: BLE001 — e.g. queue.db locked for too long: the row stays
            # leased by this process, and recovery resumes it once the lease ends
            log.get_logger("objlib.worker").exception("could not queue what follows a step",
                                                       task=task.id)
        finally:
            q.continuing(task, False)

    task.on_complete = None  # the lane enqueues it when the step is done, not huey
    q.continuing(task, True)
    if lane().try_submit(lambda: _bound(task, run)) is None:
        q.continuing(task, False)
        task.on_complete = successor
        return False
    return True


def _waiting_out(rest):
    """``rest()`` on a lane thread, run again on it after each short wait it asks for (a
    ``resend`` Deferred of at most ``lane.WAIT_MAX_S``, ``lane.WAIT_BUDGET_S`` in all): the
    step sends its request again as soon as its delay is over, instead of a scheduler tick
    and a free worker later. A longer wait is raised on (to the queue's schedule)."""
    budget_s = WAIT_BUDGET_S
    while True:
        try:
            return rest()
        except Deferred as d:
            if not d.resend or d.delay_s > min(WAIT_MAX_S, budget_s):
                raise
            budget_s -= d.delay_s
            log.get_logger("objlib.worker").info("waiting in the lane", reason=d.reason,
                                                 delay_s=round(d.delay_s, 3))
            lane().wait(d.delay_s)


def _timed_in_lane(q: ObjlibHuey, task, deferred: Deferred) -> bool:
    """A worker's step that must wait a moment before it sends its request again (its
    upload met a 429 or a 503, or waits for its rate-limit slot): a lane thread times the
    wait and puts the same task back in the queue when it is over, so it runs again then,
    not at the first scheduler tick after it; the worker takes other work meanwhile (the
    upload itself stays on a worker). False (nothing done) for a longer wait, a wait for the
    service's own progress, or a full lane."""
    if task is None or not deferred.resend or deferred.delay_s > WAIT_MAX_S:
        return False

    def due():
        lane().wait(deferred.delay_s)
        raise Deferred(0.0, deferred.reason)  # the same task, queued now (``_hand_off``)

    return _hand_off(q, task, due, lambda _value, _successor: None)


def _bound(task, run) -> None:
    """The lane's part of a task logs under the task's id, as its worker's part does."""
    with log.bind_task(task.id, task.name):
        run()


def _again(q: ObjlibHuey, task, successor, delay_s: float) -> None:
    """The same task (a copy: huey may still be finishing the original's run) back in the
    queue, or in the schedule after ``delay_s``."""
    again = copy.copy(task)
    again.on_complete = successor
    if delay_s > 0:
        again.eta = normalize_time(delay=delay_s, utc=q.utc)
        q.add_schedule(again)
    else:
        again.eta = None
        q.enqueue(again)


def _upload_and_import(q: ObjlibHuey, file_id: int, version: int, task=None):
    """The upload on this worker; the importFile on the lane when a lane thread is free (the
    worker then takes the next file), else here."""
    from objlib import pipeline

    ctx = q.context()
    started = pipeline.upload(ctx, file_id, version, task.id)
    if isinstance(started, pipeline.ImportReady):
        ready = started

        def then(started: bool, successor) -> None:
            if started:
                _poll_after_import(q, ctx, file_id, version, successor)

        if _hand_off(q, task, lambda: pipeline.start_import(ctx, ready, task.id), then):
            return None
        started = pipeline.start_import(ctx, ready, task.id)
    if started:
        _first_look_in(q, task, pipeline.first_look_s(ctx))
        return (file_id, version)  # becomes the chained poll_import's arguments
    return None


def _poll_after_import(q: ObjlibHuey, ctx: pipeline.Context, file_id: int, version: int,
                      successor) -> None:
    """The import started on the lane: its chained poll_import (made afresh if the task had
    none) goes into the schedule for the first look."""
    from objlib import pipeline

    poll = successor if successor is not None else q.poll_import.s()
    poll.extend_data((file_id, version))
    poll.eta = normalize_time(delay=pipeline.first_look_s(ctx), utc=q.utc)
    q.add_schedule(poll)


def _first_look_in(q: ObjlibHuey, task, delay_s: float) -> None:
    """The chained poll_import is due when the import is expected to be done: huey puts a
    successor with an eta in its schedule (a worker that dequeues it early hands it to the
    schedule without running it), so the poll's first run is its only one when the import
    is done by then, and no run is spent just to wait."""
    if task.on_complete is not None:
        task.on_complete.eta = normalize_time(delay=delay_s, utc=q.utc)


def _poll_import(q: ObjlibHuey, file_id: int | None = None, version: int | None = None,
                 task=None):
    """One look at the import's operation, on the lane when a lane thread is free."""
    if file_id is None or version is None:  # the upload step stopped early: nothing to follow
        return None
    from objlib import pipeline

    ctx = q.context()

    def then(removals: list[int], _successor) -> None:
        for removal_id in removals:
            q.remove_document(removal_id)

    look = functools.partial(pipeline.poll_import, ctx, file_id, version, task.id)
    if not _hand_off(q, task, look, then):
        then(look(), None)
    return None


def _remove_document(q: ObjlibHuey, removal_id: int, task=None):
    from objlib import pipeline

    pipeline.remove_document(q.context(), removal_id, task.id)


def _settle_superseded(q: ObjlibHuey, superseded_id: int, task=None):
    """The document of an import whose version was replaced meanwhile: found, then removed."""
    from objlib import pipeline

    for removal_id in pipeline.settle_superseded(q.context(), superseded_id, task.id):
        q.remove_document(removal_id)


def _recover_stuck(q: ObjlibHuey):
    """Once a minute (on the consumer that runs periodic tasks): resume rows whose task was
    lost with a killed worker, and re-send lost document removals."""
    recover(q.settings, q.catalog(), queue=q)


def _reconcile_store(q: ObjlibHuey):
    """Off by default: with ``reconcile_every_minutes = N`` in config.toml, the consumer that
    runs periodic tasks reconciles the store with the catalogue (and fixes drift) every N
    minutes, counted from the last reconcile of any kind. The config is read anew each time."""
    from objlib import reconcile as rc

    settings = Settings.load(q.settings.home)
    if rc.due(settings, q.catalog()):
        reconcile(settings, catalog=q.catalog(), fix=True, queue=q)


def _sync_library(q: ObjlibHuey):
    """Off by default: with ``sync_every_minutes = N`` in config.toml, the consumer that runs
    periodic tasks re-scans the library and enqueues what changed every N minutes. The config
    is read anew each time."""
    from objlib import sync

    settings = Settings.load(q.settings.home)
    catalog = q.catalog()
    sync.run_if_due(settings, catalog,
                    enqueue=lambda now: len(_enqueue_pending(settings, catalog, now, q)))


def _enqueue_pending(settings: Settings, catalog: Catalog, now: float,
                     q: ObjlibHuey) -> list[str]:
    """What ``objlib enqueue`` does, from a consumer (its running tasks count as live): the
    store made sure of, stuck rows recovered, every pending row handed to a task."""
    from objlib.store import ensure_store

    ensure_store(settings, catalog, None)
    recover(settings, catalog, now=now, queue=q)
    return send_pending(settings, catalog, now, queue=q)


def _worker_started(q: ObjlibHuey):
    """The first worker in the process resumes what a previous consumer left behind (its
    dead workers' rows are recovered at once, not after a lease)."""
    if q.first_start():
        q.recover_stuck.call_local()


huey = ObjlibHuey(Settings.load)
"""The queue ``huey_consumer objlib.tasks.huey`` serves: the home of ``Settings.load()``
(``OBJLIB_HOME`` or ./data), read when the consumer starts, not at import."""


# ---------------------------------------------------------------------------- handing out


SEND_BATCH = 500  # rows handed to tasks per catalogue transaction and per queue transaction


def send_uploads(settings: Settings, catalog: Catalog, rows: Iterable, now: float | None, *,
                 queue: ObjlibHuey | None = None) -> list[str]:
    """Each pending row (``id``, ``version``, ``path``) becomes one upload task; the paths
    handed out. The rows first: ``SEND_BATCH`` rows are marked queued, each with its task id,
    in one catalogue transaction, then those tasks go into the queue in one queue
    transaction. If the send fails (or the process dies in between), recovery finds queued
    rows with no task (after ``recovery.QUEUED_GRACE_S``) and hands them to new ones.
    ``now`` (tests) stamps every row; by default a batch's ``queued_at`` is read from the
    clock when it is queued."""
    q = queue or queue_for(settings)
    rows, sent = list(rows), []
    for start in range(0, len(rows), SEND_BATCH):
        batch = rows[start:start + SEND_BATCH]
        ids = iter(task_ids(2 * len(batch)))
        tasks = {row["id"]: q.upload_task(row["id"], row["version"], (next(ids), next(ids)))
                 for row in batch}
        stamp = time.time() if now is None else now
        won = lc.mark_queued_many(catalog, [(row["id"], row["version"], tasks[row["id"]].id)
                                            for row in batch], stamp)
        q.send_many([tasks[row["id"]] for row in batch if row["id"] in won])
        sent += [row["path"] for row in batch if row["id"] in won]
    return sent


def send_pending(settings: Settings, catalog: Catalog, now: float, *,
                 queue: ObjlibHuey | None = None) -> list[str]:
    """Every pending row becomes an upload task; the paths handed out."""
    rows = catalog.query("SELECT id, version, path FROM files WHERE state=? ORDER BY id",
                         (lc.PENDING,))
    return send_uploads(settings, catalog, rows, now, queue=queue)


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
            now: float | None = None, queue: ObjlibHuey | None = None) -> RecoverSummary:
    """Hand every stuck in-flight row to a new task; re-send lost removals; settle the
    superseded imports no task follows. The decisions are ``recovery.plan``'s; tasks this
    process is running count as live."""
    q = queue or queue_for(settings)
    with _exclusive(settings) as mine, queue_errors(settings):
        if not mine:
            return RecoverSummary()
        now = time.time() if now is None else now
        marks = ",".join("?" * len(lc.IN_FLIGHT))
        rows = map(lc.FileRow.from_row,
                   catalog.query(f"SELECT * FROM files WHERE state IN ({marks})", lc.IN_FLIGHT))
        todo = recovery.plan(rows, lc.open_removals(catalog), lc.open_superseded(catalog),
                             q.live_tasks(), now)
        summary = RecoverSummary(removals=len(todo.removals), superseded=len(todo.settles))
        for row in todo.polls:
            if dry_run or lc.requeue(catalog, row, None, now, "poll lost"):
                summary.polls.append(row.path)
                if not dry_run:
                    q.send(q.poll_import.s(row.id, row.version))
        for row in todo.uploads:
            task = q.upload_task(row.id, row.version)
            if dry_run or lc.requeue(catalog, row, task.id, now, f"task lost while {row.state}"):
                summary.requeued.append(row.path)
                if not dry_run:
                    q.send(task)
        if not dry_run:
            for removal_id in todo.removals:
                q.send(q.remove_document.s(removal_id))
            for superseded_id in todo.settles:
                q.send(q.settle_superseded.s(superseded_id))
    if summary.requeued or summary.polls:
        log.get_logger("objlib.queue").warning("recovered stuck rows",
                                               requeued=len(summary.requeued),
                                               polls=len(summary.polls))
    return summary


def reconcile(settings: Settings, *, fix: bool = False, catalog: Catalog | None = None,
              queue: ObjlibHuey | None = None, **options) -> Report:
    """``reconcile.reconcile`` with this home's live tasks (a row a task holds is not stuck);
    with ``fix``, the rows it reset go to new upload tasks and the stuck rows to recovery.
    ``options``: those of ``reconcile.reconcile``."""
    from objlib import reconcile as rc

    q = queue or queue_for(settings)
    own_catalog = catalog is None
    if own_catalog:
        rc.require_catalogue(settings)
    catalog = catalog or open_catalog(settings)
    try:
        report = rc.reconcile(settings, fix=fix, catalog=catalog, live_tasks=q.live_tasks,
                              **options)
        if fix and report.needs_requeue:
            sent = (send_pending(settings, catalog, report.at, queue=q)
                    if report.reset or report.recreated else [])
            recovered = recover(settings, catalog, now=report.at, queue=q)
            rc.record_requeued(catalog, report, sent,
                               set(recovered.requeued) | set(recovered.polls))
        return report
    finally:
        if own_catalog:
            catalog.close()


# ---------------------------------------------------------------------------- in-process


class ForegroundConsumer(Consumer):
    """huey's consumer in the command's process (``objlib upload``), minus its signal
    handlers: this process's Ctrl+C belongs to the run."""

    def _set_signal_handlers(self) -> None:
        pass

    def threads(self) -> list:
        return [t for _, t in self.worker_threads] + [self.scheduler]

    def alive(self) -> int:
        """Threads still working: workers, the scheduler, and the lane's calls in flight
        (the importFile or operation look a worker handed on is a step in flight too)."""
        return sum(t.is_alive() for t in self.threads()) + lane().busy

    def ask_to_stop(self) -> None:
        """No new task; the steps in flight go on."""
        self.stop_flag.set()


def start_consumer(settings: Settings, concurrency: int) -> ForegroundConsumer:
    """``concurrency`` worker threads and a scheduler (every 1 s) for this home's queue,
    started; polling the queue at most every 0.5 s when idle. No periodic tasks: they would
    be left in the queue at every stop; the run's watcher calls the recovery itself."""
    _import_the_steps()
    lane_configure(concurrency)  # the calls that follow the uploads: see objlib.lane
    consumer = ForegroundConsumer(queue_for(settings), workers=concurrency, worker_type="thread",
                                  periodic=False, max_delay=0.5, scheduler_interval=1)
    consumer.start()
    return consumer


def removals_waiting(settings: Settings) -> bool:
    """A document removal is ready in the queue (a replaced version's old document, say)."""
    q = queue_for(settings)
    with queue_errors(settings):
        return any(t.name == "remove_document" for t in q.pending())
