"""Seeing the pipeline: one snapshot of the catalogue, huey's queue and the shared throttle,
and its stable JSON shape. The views (``objlib.views.status``) turn a snapshot into a Rich
view, a live ``--watch`` view and a plain line.

    snap = snapshot(settings)            # -> Snapshot (read-only; ``now`` for tests)
    to_json(snap)                        # the stable shape documented in docs/status.md

The snapshot only reads. The catalogue is read in one read transaction, so every count is
from the same moment while workers write (WAL: readers never wait for writers). The queue and
the throttle are read through read-only connections, and only if their files exist: status
creates nothing. Every query is served by an index of catalogue migration 1 (``files(state,
state_changed_at)``, ``history(at, to_state)``, ``errors(at)``), so a 100,000-row catalogue
answers in milliseconds (``scripts/bench_status.py``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from objlib import runs
from objlib.catalog import Catalog
from objlib.catalog.lifecycle import (
    ELIGIBLE,
    FAILED,
    IMPORTING,
    IN_FLIGHT,
    INDEXED,
    STATES,
    UPLOADING,
)
from objlib.catalog.read import existing_catalog, read_transaction
from objlib.errors import ObjlibError
from objlib.settings import Settings
from objlib.store import lost_at as store_lost_at
from objlib.throttle import Throttle, ThrottleState

WINDOWS_S = (60, 300, 900)  # throughput over the last 1, 5 and 15 minutes
ETA_WINDOW_S = 300  # the ETA follows the rate of the last 5 minutes ...
ETA_MIN_SPAN_S = 15.0  # ... measured over at least 15 s (one lucky row is not a rate)
ERRORS_WINDOW_S = 3600
WORKER_STATES = (UPLOADING, IMPORTING, INDEXED, FAILED)  # history rows only a worker writes


# ---------------------------------------------------------------------------- the snapshot


@dataclass(frozen=True)
class Snapshot:
    generated_at: float
    home: str
    files: dict[str, int]  # every state, 0 included
    oldest_in_flight_age_s: dict[str, float | None]  # queued/uploading/importing
    waiting: int  # tasks in huey's queue
    scheduled: int  # tasks in huey's schedule (polls, deferred steps, retries)
    indexed_in: dict[int, int]  # window_s -> rows that reached `indexed` within it
    first_recent_indexed_at: float | None  # the first of those of the last ETA_WINDOW_S
    throttle: ThrottleState
    errors_by_class: dict[str, int]  # the last ERRORS_WINDOW_S
    last_reconcile: dict | str | None
    last_activity_at: float | None
    latest_run: dict | None = None  # the last `objlib upload` run (objlib.runs.latest_run)
    store: str | None = None  # the store the catalogue mirrors into (None: not created yet)
    store_lost_at: float | None = None  # when the store was found gone (objlib.store)

    @property
    def eligible(self) -> int:
        return sum(self.files[s] for s in ELIGIBLE)

    @property
    def remaining(self) -> int:
        """Eligible rows not indexed and not failed: the work still to do."""
        return self.eligible - self.files[INDEXED] - self.files[FAILED]

    @property
    def percent(self) -> float:
        """Indexed share of the eligible files; 0 while the store is gone (its documents
        went with it, whatever the rows say)."""
        if self.store_lost_at is not None:
            return 0.0
        return 100.0 * self.files[INDEXED] / self.eligible if self.eligible else 100.0

    @property
    def done(self) -> bool:
        """Nothing pending and nothing in flight (never while the store is gone)."""
        return self.remaining == 0 and self.store_lost_at is None

    @property
    def eta_s(self) -> float | None:
        return eta_s(self.remaining, self.indexed_in[ETA_WINDOW_S],
                     self.first_recent_indexed_at, self.generated_at)

    @property
    def throughput_per_min(self) -> dict[str, float]:
        return {f"indexed_per_min_{w // 60}m": round(n * 60.0 / w, 2)
                for w, n in sorted(self.indexed_in.items())}


def snapshot(settings: Settings, now: float | None = None) -> Snapshot:
    """Read the catalogue, the queue and the throttle as they are ``now`` (epoch seconds)."""
    now = time.time() if now is None else now
    catalog = existing_catalog(settings)
    try:
        facts = _CatalogueFacts.read(catalog, now)
    finally:
        catalog.close()
    waiting, scheduled = queue_depth(settings.queue_db)
    throttle, last_request_at = throttle_state(settings, now)
    activity = [t for t in (facts.last_history_at, facts.last_error_at, last_request_at)
                if t is not None]
    return Snapshot(
        generated_at=now, home=str(settings.home), files=facts.files,
        oldest_in_flight_age_s={s: None if facts.oldest.get(s) is None
                                else round(max(0.0, now - facts.oldest[s]), 3)
                                for s in IN_FLIGHT},
        waiting=waiting, scheduled=scheduled, indexed_in=facts.indexed_in,
        first_recent_indexed_at=facts.first_recent_indexed_at,
        throttle=throttle, errors_by_class=facts.errors_by_class,
        last_reconcile=_parsed(facts.last_reconcile),
        last_activity_at=max(activity) if activity else None, latest_run=facts.latest_run,
        store=facts.store, store_lost_at=facts.store_lost_at)


def eta_s(remaining: int, recent_indexed: int, first_recent_at: float | None,
          now: float) -> float | None:
    """Seconds until ``remaining`` rows are done at the recent rate: the rows indexed in the
    last ETA_WINDOW_S over the time since the first of them (at least ETA_MIN_SPAN_S).
    0 when nothing remains; None when nothing was indexed lately."""
    if remaining <= 0:
        return 0.0
    if recent_indexed <= 0 or first_recent_at is None:
        return None
    span_s = min(float(ETA_WINDOW_S), max(ETA_MIN_SPAN_S, now - first_recent_at))
    return round(remaining * span_s / recent_indexed, 1)


@dataclass
class _CatalogueFacts:
    files: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    oldest: dict[str, float] = field(default_factory=dict)  # state -> min(state_changed_at)
    indexed_in: dict[int, int] = field(default_factory=dict)
    first_recent_indexed_at: float | None = None
    errors_by_class: dict[str, int] = field(default_factory=dict)
    last_history_at: float | None = None
    last_error_at: float | None = None
    last_reconcile: str | None = None
    latest_run: dict | None = None
    store: str | None = None
    store_lost_at: float | None = None

    @classmethod
    def read(cls, catalog: Catalog, now: float) -> _CatalogueFacts:
        facts = cls()
        with read_transaction(catalog) as cat:
            # each state's rows counted on the index files(state, ...), except the indexed
            # ones, most of a long-lived catalogue: the total minus the others (the count of
            # a whole table reads pages, not rows: 37 -> 9 ms at 100,000 rows)
            total = cat.query("SELECT COUNT(*) FROM files")[0][0]
            for state in STATES:
                count, oldest = cat.query(
                    "SELECT COUNT(*), MIN(state_changed_at) FROM files WHERE state=?"
                    if state != INDEXED else
                    "SELECT 0, MIN(state_changed_at) FROM files WHERE state=?", (state,))[0]
                facts.files[state] = count
                if oldest is not None:
                    facts.oldest[state] = oldest
            facts.files[INDEXED] = total - sum(facts.files.values())
            since = [now - w for w in WINDOWS_S]
            counts = cat.query(
                f"SELECT {', '.join('COALESCE(SUM(at >= ?), 0)' for _ in WINDOWS_S)}, "
                "MIN(CASE WHEN at >= ? THEN at END) FROM history WHERE at >= ? AND to_state=?",
                (*since, now - ETA_WINDOW_S, min(since), INDEXED))[0]
            facts.indexed_in = dict(zip(WINDOWS_S, tuple(counts)[:-1], strict=True))
            facts.first_recent_indexed_at = counts[-1]
            facts.errors_by_class = {r[0]: r[1] for r in cat.query(
                "SELECT error_class, COUNT(*) FROM errors WHERE at >= ? GROUP BY error_class "
                "ORDER BY COUNT(*) DESC, error_class", (now - ERRORS_WINDOW_S,))}
            worker_states = ",".join("?" * len(WORKER_STATES))
            facts.last_history_at = _scalar(cat.query(
                f"SELECT at FROM history WHERE to_state IN ({worker_states}) "
                "ORDER BY at DESC LIMIT 1", WORKER_STATES))
            facts.last_error_at = _scalar(cat.query("SELECT MAX(at) FROM errors"))
            facts.last_reconcile = cat.get_meta("last_reconcile")
            facts.store = cat.get_meta("store")
            facts.store_lost_at = store_lost_at(cat)
            facts.latest_run = runs.latest_run(cat, now=now)
        return facts


def _scalar(rows) -> float | None:
    return rows[0][0] if rows else None


def _parsed(value: str | None) -> dict | str | None:
    """The reconcile record as written (a JSON object); its raw text if it is not JSON."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


# ---------------------------------------------------------------------------- queue, throttle


def _read_only_uri(path: Path) -> str:
    return f"{path.absolute().as_uri()}?mode=ro"


def _read_side_file(path: Path, read, empty):
    """``read()`` from the queue or the throttle file: ``empty`` while the file or its tables
    do not exist yet (no worker started); a clear error if it is not a usable SQLite file."""
    if not path.is_file():
        return empty
    try:
        return read()
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):
            return empty
        raise ObjlibError(f"cannot read {path} ({exc}); move it away if it is not objlib's") \
            from exc


QUEUE_NAME = "objlib"  # objlib.tasks.QUEUE_NAME (tests/test_status.py keeps them equal)


def queue_depth(path: Path) -> tuple[int, int]:
    """(waiting, scheduled) counted in huey's own tables (``task``, ``schedule``: its
    SqliteStorage's layout, rows of objlib's queue) through a read-only connection; (0, 0)
    with no queue file. Not through huey: importing it, and ``objlib.tasks``, cost a new
    ``status`` process ~35 ms; a test checks the counts against huey's own."""

    def read() -> tuple[int, int]:
        with closing(sqlite3.connect(_read_only_uri(path), uri=True, timeout=5.0)) as conn:
            return tuple(conn.execute(
                "SELECT (SELECT COUNT(*) FROM task WHERE queue=?), "
                "(SELECT COUNT(*) FROM schedule WHERE queue=?)",
                (QUEUE_NAME, QUEUE_NAME)).fetchone())

    return _read_side_file(path, read, (0, 0))


class _ThrottleReader(Throttle):
    """The shared throttle through a read-only connection (Throttle's own creates tables)."""

    @cached_property
    def conn(self) -> sqlite3.Connection:
        return sqlite3.connect(_read_only_uri(self.path), uri=True, timeout=5.0)

    def close(self) -> None:
        if "conn" in self.__dict__:
            self.__dict__.pop("conn").close()


def throttle_state(settings: Settings, now: float) -> tuple[ThrottleState, float | None]:
    """The breaker and the current rate-limit window, and when the last request was made;
    a closed breaker and no requests when no worker has made a request yet."""
    idle = ThrottleState(breaker="closed", breaker_open_for_s=0.0, breaker_trips=0,
                         requests_last_60s=0, throttled_last_60s=0,
                         limit_per_minute=settings.rate_limit_per_minute)
    reader = _ThrottleReader(settings.throttle_db, settings)
    try:
        return _read_side_file(settings.throttle_db,
                               lambda: (reader.state(now), reader.last_request_at()), (idle, None))
    finally:
        reader.close()


# ---------------------------------------------------------------------------- JSON


def to_json(snap: Snapshot) -> dict:
    """The stable ``status --json`` shape (in docs/status.md; a test pins the keys).
    Times are epoch seconds, durations seconds, rates rows per minute."""
    t = snap.throttle
    return {
        "generated_at": snap.generated_at,
        "home": snap.home,
        "store": {"name": snap.store, "lost_at": snap.store_lost_at},
        "files": dict(snap.files),
        "oldest_in_flight_age_s": dict(snap.oldest_in_flight_age_s),
        "queue": {"waiting": snap.waiting, "scheduled": snap.scheduled},
        "progress": {"indexed": snap.files[INDEXED], "eligible": snap.eligible,
                     "failed": snap.files[FAILED], "remaining": snap.remaining,
                     "percent": round(snap.percent, 2), "done": snap.done},
        "throughput": snap.throughput_per_min,
        "eta_seconds": snap.eta_s,
        "breaker": {"state": t.breaker, "open_for_s": round(t.breaker_open_for_s, 1),
                    "trips": t.breaker_trips},
        "rate_limit": {"requests_last_60s": t.requests_last_60s,
                       "throttled_last_60s": t.throttled_last_60s,
                       "limit_per_minute": t.limit_per_minute,
                       "adaptive_per_minute": rounded_per_minute(t.adaptive_per_minute)},
        "errors": {"window_s": ERRORS_WINDOW_S, "total": sum(snap.errors_by_class.values()),
                   "by_class": dict(snap.errors_by_class)},
        "last_reconcile": snap.last_reconcile,
        "last_activity_at": snap.last_activity_at,
        "latest_run": snap.latest_run,
    }


def rounded_per_minute(per_minute: float | None) -> int | None:
    return None if per_minute is None else max(1, round(per_minute))
