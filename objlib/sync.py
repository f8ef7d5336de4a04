"""Continuous sync: with ``sync_every_minutes = N`` in config.toml, the consumer that runs
periodic tasks re-scans the library the catalogue belongs to and enqueues what changed,
every N minutes — a library that changes stays mirrored without a cron job.

    run_if_due(settings, catalog, enqueue=..., now=...)  # the periodic task: None when not due
    sync(settings, catalog, enqueue=..., now=...)        # one scan + enqueue

``enqueue(now)`` hands the pending rows to tasks and says how many it handed out: the
queue's side is the caller's (``objlib.tasks``, whose consumer runs the periodic task), so
this module sits below the queue and imports neither huey nor ``objlib.tasks``.

One sync at a time across processes: the run is claimed by a conditional write of
``meta.last_sync`` (``outcome: running``, the time it started), and the next one is due
``sync_every_minutes`` after that start. A sync the deletion guard refuses (a drive that is
not mounted), or that meets any other problem a person must fix, records ``outcome: failed``
with the message and logs it; nothing is written to the catalogue by a refused scan, and
the next sync tries again after the interval.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from objlib.catalog import Catalog
from objlib.catalog import lifecycle as lc
from objlib.errors import CatalogError, ConfigError, ObjlibError, QueueError
from objlib.log import get_logger
from objlib.scan import scan_library
from objlib.scan.scanner import ROOT_KEY
from objlib.settings import Settings

log = get_logger("objlib.sync")

LAST_SYNC = "last_sync"
_DUE_SLACK_S = 1.0  # a periodic check a little early (the scheduler's tick) still counts


@dataclass(frozen=True)
class SyncResult:
    at: float
    outcome: str  # ok | failed
    changes: int = 0  # rows the scan wrote beyond a scanned_at stamp (new, changed, deleted, ...)
    enqueued: int = 0
    error: str | None = None

    def to_json(self) -> dict:
        return {"at": self.at, "outcome": self.outcome, "changes": self.changes,
                "enqueued": self.enqueued, "error": self.error}


def last_sync(catalog: Catalog) -> dict | None:
    return catalog.get_meta_json(LAST_SYNC)


def _is_due(settings: Settings, last: dict | None, now: float) -> bool:
    every_s = settings.sync_every_minutes * 60.0
    if every_s <= 0:
        return False
    at = last.get("at") if isinstance(last, dict) else None
    return not isinstance(at, (int, float)) or now - at >= every_s - _DUE_SLACK_S


def due(settings: Settings, catalog: Catalog, now: float | None = None) -> bool:
    """Whether a sync should start now (never while the setting is 0)."""
    return _is_due(settings, last_sync(catalog), time.time() if now is None else now)


def claim(settings: Settings, catalog: Catalog, now: float) -> bool:
    """True for the one caller that may sync now: the check and the record of the start in
    one write transaction, so two consumers never both win."""
    with catalog.write() as conn:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (LAST_SYNC,)).fetchone()
        try:
            last = json.loads(row[0]) if row else None
        except ValueError:
            last = None
        if not _is_due(settings, last, now):
            return False
        conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE "
                     "SET value=excluded.value",
                     (LAST_SYNC, json.dumps({"at": now, "outcome": "running"})))
        return True


def library_root(catalog: Catalog) -> str:
    root = catalog.get_meta(ROOT_KEY)
    if not root:
        raise ConfigError("the catalogue records no library folder yet: run `objlib scan "
                          "LIBRARY` once")
    return root


Enqueue = Callable[[float], int]  # hands the pending rows to tasks; how many it handed out


def sync(settings: Settings, catalog: Catalog, *, enqueue: Enqueue,
         now: float | None = None) -> SyncResult:
    """Scan the catalogue's library, then enqueue if anything waits (an unchanged library
    costs no API request)."""
    now = time.time() if now is None else now
    summary = scan_library(settings, library_root(catalog), now=now)
    pending = catalog.query("SELECT COUNT(*) FROM files WHERE state=?", (lc.PENDING,))[0][0]
    enqueued = enqueue(now) if pending else 0
    return SyncResult(at=now, outcome="ok", changes=summary.changes, enqueued=enqueued)


def run_if_due(settings: Settings, catalog: Catalog, *, enqueue: Enqueue,
               now: float | None = None) -> SyncResult | None:
    """The periodic task's body: sync when due and claimed; record and log the outcome.
    A catalogue or queue that cannot be used propagates (the task reports it); any other
    problem is the sync's outcome."""
    now = time.time() if now is None else now
    if not due(settings, catalog, now) or not claim(settings, catalog, now):
        return None  # the read first: with sync off, the minute's check writes nothing
    try:
        result = sync(settings, catalog, enqueue=enqueue, now=now)
    except (CatalogError, QueueError):
        raise
    except ObjlibError as err:
        result = SyncResult(at=now, outcome="failed", error=str(err))
        log.error("library sync failed", error=result.error)
    else:
        log.info("library synced", changes=result.changes, enqueued=result.enqueued)
    catalog.set_meta(LAST_SYNC, json.dumps(result.to_json()))
    return result
