"""The catalogue as the tests look at it."""

from __future__ import annotations

import time

from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog


def file_states(settings) -> dict[str, int]:
    """Rows per state (states with no row left out)."""
    catalog = open_catalog(settings)
    try:
        return {r[0]: r[1] for r in catalog.query(
            "SELECT state, count(*) FROM files GROUP BY state")}
    finally:
        catalog.close()


def queued(ctx, file_id: int = 1, task_id: str = "task-1"):
    """The row handed to a task (as enqueue does), for the in-process pipeline tests."""
    row = lc.get(ctx.catalog, file_id)
    assert lc.mark_queued(ctx.catalog, row.id, row.version, task_id, time.time())
    return lc.get(ctx.catalog, file_id)


def move(catalog, file_id: int, to: str, now: float) -> None:
    """Walk a pending row through the real lifecycle up to state ``to``, all at ``now``."""
    task = f"task-{file_id}"
    steps = {
        lc.QUEUED: lambda: lc.mark_queued(catalog, file_id, 1, task, now),
        lc.UPLOADING: lambda: lc.claim(catalog, file_id, 1, task, now, 300.0, "host:1"),
        lc.IMPORTING: lambda: lc.record_operation(catalog, file_id, 1, task, f"op/{file_id}",
                                                  now, now + 900, 300.0),
        lc.INDEXED: lambda: lc.mark_indexed(catalog, file_id, 1, f"doc/{file_id}", now),
    }
    if to == lc.FAILED:
        move(catalog, file_id, lc.UPLOADING, now)
        assert lc.mark_failed(catalog, file_id, 1, "permanent", "refused", now)
        return
    for state in steps:
        assert steps[state](), f"{file_id} -> {state}"
        if state == to:
            return


def row_of(settings, path: str) -> lc.FileRow:
    catalog = open_catalog(settings)
    try:
        return lc.by_path(catalog, path)
    finally:
        catalog.close()
