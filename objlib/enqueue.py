"""``objlib enqueue``: every catalogue row that needs work becomes one task per file version.

The store is made sure of first (``store.ensure_store``: bound both ways, through the
shared throttle), then rows whose task was lost are recovered and the pending rows are handed
to tasks (``objlib.tasks``). Twice is harmless: a row is queued under one task id, and only
that task can claim it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from objlib import tasks
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.errors import CatalogError
from objlib.recovery import RecoverSummary
from objlib.settings import Settings
from objlib.store import ensure_store

__all__ = ["EnqueueSummary", "enqueue", "ensure_store", "queue_depth"]


@dataclass
class EnqueueSummary:
    store: str | None
    enqueued: list[str]
    recovered: RecoverSummary
    retried_failed: int
    remaining: int  # pending rows left out by --limit
    dry_run: bool

    def to_json(self) -> dict:
        """The stable ``objlib enqueue --json`` shape (a test pins the keys)."""
        r = self.recovered
        return {"store": self.store, "dry_run": self.dry_run, "enqueued": len(self.enqueued),
                "remaining": self.remaining, "retried_failed": self.retried_failed,
                "recovered": {"requeued": len(r.requeued), "polls": len(r.polls),
                              "removals": r.removals, "superseded": r.superseded}}


def enqueue(settings: Settings, *, limit: int | None = None, dry_run: bool = False,
            retry_failed: bool = False, gemini=None, now: float | None = None) -> EnqueueSummary:
    """Every row that needs work becomes one task per file version (twice is harmless).
    ``now`` (tests) stamps everything; by default each row's ``queued_at`` is read when it is
    queued, not when the command began (the SDK's import and the store's lookup, seconds on a
    busy machine, come before)."""
    stamp = now
    now = time.time() if now is None else now
    if not settings.library_db.exists():
        raise CatalogError(f"no catalogue in {settings.home} yet: run `objlib scan LIBRARY` "
                           "first (or point --home / OBJLIB_HOME at the right folder)")
    catalog = open_catalog(settings)
    try:
        store = catalog.get_meta("store")
        if not dry_run:
            store = ensure_store(settings, catalog, gemini)
        retried = 0
        if retry_failed:
            retried = (len(catalog.query("SELECT id FROM files WHERE state=?", (lc.FAILED,)))
                       if dry_run else lc.retry_failed(catalog, now))
        recovered = tasks.recover(settings, catalog, dry_run=dry_run, now=now)
        pending = catalog.query("SELECT id, version, path FROM files WHERE state=? ORDER BY id",
                                (lc.PENDING,))
        chosen = pending if limit is None else pending[:limit]
        enqueued = ([row["path"] for row in chosen] if dry_run
                    else tasks.send_uploads(settings, catalog, chosen, stamp))
        return EnqueueSummary(store=store, enqueued=enqueued, recovered=recovered,
                              retried_failed=retried, remaining=len(pending) - len(chosen),
                              dry_run=dry_run)
    finally:
        catalog.close()


def queue_depth(settings: Settings) -> tuple[int, int]:
    """(waiting, scheduled) read straight from the queue."""
    return tasks.queue_for(settings).depth()
