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
