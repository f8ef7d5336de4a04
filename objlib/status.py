"""Seeing the pipeline: one snapshot of the catalogue, huey's queue and the shared throttle,
and its renderers — a JSON object, a Rich view, a live ``--watch`` view and a plain line.

    snap = snapshot(settings)            # -> Snapshot (read-only; ``now`` for tests)
    to_json(snap)                        # the stable shape documented in the README
    Console().print(render(snap))

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
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Iterator

from rich.columns import Columns
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from objlib import runs
from objlib.catalog import Catalog
from objlib.catalog.lifecycle import (DELETED, ELIGIBLE, FAILED, IMPORTING, IN_FLIGHT, INDEXED,
                                      PENDING, SKIPPED, STATES, UPLOADING)
from objlib.errors import CatalogError, ObjlibError
from objlib.settings import Settings
from objlib.store import lost_at as store_lost_at
from objlib.throttle import Throttle, ThrottleState

WINDOWS_S = (60, 300, 900)  # throughput over the last 1, 5 and 15 minutes
ETA_WINDOW_S = 300  # the ETA follows the rate of the last 5 minutes ...
ETA_MIN_SPAN_S = 15.0  # ... measured over at least 15 s (one lucky row is not a rate)
ERRORS_WINDOW_S = 3600
PLAIN_HEARTBEAT_S = 30.0  # --watch without a terminal: a line at least this often
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


def existing_catalog(settings: Settings) -> Catalog:
    """The catalogue, if a scan made one; a clear error (not an empty new file) otherwise."""
    if not settings.library_db.is_file():
        raise CatalogError(f"no catalogue in {settings.home} yet: run `objlib scan LIBRARY` "
                           "first (or point --home / OBJLIB_HOME at the right folder)")
    catalog = Catalog(settings.library_db)
    catalog.conn  # noqa: B018 — open now, so a bad file is reported before any query
    return catalog


@contextmanager
def read_transaction(catalog: Catalog) -> Iterator[Catalog]:
    """Every query inside sees the same moment of the catalogue (one WAL read snapshot)."""
    catalog.query("BEGIN")
    try:
        yield catalog
    finally:
        catalog.query("COMMIT")


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
            for row in cat.query("SELECT state, COUNT(*), MIN(state_changed_at) FROM files "
                                 "GROUP BY state"):
                facts.files[row[0]] = row[1]
                facts.oldest[row[0]] = row[2]
            since = [now - w for w in WINDOWS_S]
            counts = cat.query(
                f"SELECT {', '.join('COALESCE(SUM(at >= ?), 0)' for _ in WINDOWS_S)}, "
                "MIN(CASE WHEN at >= ? THEN at END) FROM history WHERE at >= ? AND to_state=?",
                (*since, now - ETA_WINDOW_S, min(since), INDEXED))[0]
            facts.indexed_in = dict(zip(WINDOWS_S, tuple(counts)[:-1]))
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


def queue_depth(path: Path) -> tuple[int, int]:
    """(waiting, scheduled) from huey's own storage, read-only; (0, 0) with no queue file."""
    from objlib.tasks import read_depth  # not at import: google.genai is slow to import

    return _read_side_file(path, lambda: read_depth(_read_only_uri(path)), (0, 0))


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
    """The stable ``status --json`` shape (documented in the README; a test pins the keys).
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
                       "adaptive_per_minute": _rounded(t.adaptive_per_minute)},
        "errors": {"window_s": ERRORS_WINDOW_S, "total": sum(snap.errors_by_class.values()),
                   "by_class": dict(snap.errors_by_class)},
        "last_reconcile": snap.last_reconcile,
        "last_activity_at": snap.last_activity_at,
        "latest_run": snap.latest_run,
    }


# ---------------------------------------------------------------------------- words


def duration(seconds: float | None) -> str:
    """``45s``, ``3m 12s``, ``2h 05m``; ``-`` for unknown."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def latest_run_line(run: dict | None) -> str:
    """The latest run in one line (``objlib status``): ``run 3 (running): 120/500 indexed
    (24.0%), 2 failed, 378 open, 1m 05s``."""
    if run is None:
        return "no `objlib upload` run yet"
    parts = [f"{run['indexed'] or 0}/{run['total']} indexed ({run['percent']:.1f}%)"]
    parts += [f"{run[k]} {k.replace('_', ' ')}" for k in ("failed", "open", "left_over")
              if run.get(k)]
    return f"run {run['id']} ({run['outcome']}): {', '.join(parts)}, {duration(run['duration_s'])}"


def ago(at: float | None, now: float) -> str:
    return "never" if at is None else f"{duration(max(0.0, now - at))} ago"


def clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")


def breaker_text(t: ThrottleState) -> str:
    if t.breaker == "open":
        return f"open ({duration(t.breaker_open_for_s)} left, trip {t.breaker_trips})"
    return t.breaker


def _rounded(per_minute: float | None) -> int | None:
    return None if per_minute is None else max(1, round(per_minute))


def rate_text(t: ThrottleState) -> str:
    limit = f"{t.limit_per_minute}/min" if t.limit_per_minute else "unlimited"
    if t.adaptive_per_minute is not None:
        limit = f"{_rounded(t.adaptive_per_minute)}/min adapted to 429s; configured {limit}"
    throttled = (f", {t.throttled_last_60s} answered 429/502/503/504 or not at all"
                 if t.throttled_last_60s else "")
    return f"{t.requests_last_60s} requests in the last 60 s (limit {limit}){throttled}"


def reconcile_text(value: dict | str | None, now: float) -> str:
    """``objlib reconcile``'s record in a line: when, how much drift of which kinds, fixed."""
    if value is None:
        return "never"
    if not isinstance(value, dict):
        return str(value)
    parts = [ago(value["at"], now)] if isinstance(value.get("at"), (int, float)) else []
    if value.get("outcome") == "failed" or "error" in value:
        return ", ".join(parts + [f"FAILED: {value.get('error') or 'unknown error'}"])
    if value.get("store_missing"):
        parts.append("store gone" + (f", re-created as {value['recreated']}"
                                     if value.get("recreated") else ""))
    if "drift" in value:
        kinds = ", ".join(f"{k} {n}" for k, n in (value.get("counts") or {}).items() if n)
        parts.append(f"drift {value['drift']}" + (f" ({kinds})" if kinds else ""))
    if value.get("fix"):
        parts.append("fixed")
    if value.get("errors"):
        parts.append(f"{value['errors']} error(s)")
    return ", ".join(parts) or json.dumps(value)


def plain_line(snap: Snapshot) -> str:
    """One line for logs and pipes (``status --watch`` when stdout is not a terminal)."""
    states = " ".join(f"{s} {snap.files[s]}" for s in (PENDING, *IN_FLIGHT, FAILED))
    rate = snap.throughput_per_min["indexed_per_min_1m"]
    lost = f"STORE GONE ({snap.store}): objlib reconcile --fix | " if snap.store_lost_at else ""
    return (f"{clock(snap.generated_at)} {lost}indexed {snap.files[INDEXED]}/{snap.eligible} "
            f"({snap.percent:.1f}%) | {states} | queue {snap.waiting} waiting "
            f"{snap.scheduled} scheduled | {rate:g}/min | ETA {duration(snap.eta_s)} | "
            f"breaker {breaker_text(snap.throttle)}")


# ---------------------------------------------------------------------------- Rich


def render(snap: Snapshot, *, footer: str | None = None):
    """The whole view: overall progress, files per state (bars, oldest in flight), health."""
    title = Text.assemble(("objlib status", "bold"), f"  {snap.home}  ",
                          (clock(snap.generated_at), "dim"))
    parts = [title, _overall(snap), Columns([_states_panel(snap), _health_panel(snap)])]
    if snap.store_lost_at is not None:
        parts.insert(1, Text(f"the store {snap.store} is gone ({ago(snap.store_lost_at, snap.generated_at)}): "
                             "no file is searchable; `objlib reconcile --fix` creates a new "
                             "store and uploads every file again", style="bold red"))
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)


def _bar(completed: int, total: int, style: str = "green", width: int = 24):
    return ProgressBar(total=max(total, 1), completed=completed, width=width,
                       complete_style=style, finished_style=style)


def _overall(snap: Snapshot):
    grid = Table.grid(padding=(0, 1))
    grid.add_row("indexed", _bar(snap.files[INDEXED], snap.eligible, width=32),
                 f"{snap.files[INDEXED]} / {snap.eligible} eligible",
                 f"[bold]{snap.percent:.1f}%[/]")
    if (run := snap.latest_run) is not None:  # the last `objlib upload`, next to the library
        grid.add_row(f"run {run['id']}", _bar(run["indexed"] or 0, run["total"], width=32),
                     f"{run['indexed'] or 0} / {run['total']} in the run",
                     f"[bold]{run['percent']:.1f}%[/] {run['outcome']}")
    rates = " · ".join(f"{rate:.1f}/min ({key.rsplit('_', 1)[1]})"
                       for key, rate in snap.throughput_per_min.items())
    return Group(grid, Text(f"throughput {rates}   ETA {duration(snap.eta_s)}"))


_STATE_STYLE = {PENDING: "white", INDEXED: "green", FAILED: "red", SKIPPED: "dim",
                DELETED: "dim"}


def _states_panel(snap: Snapshot):
    total = sum(snap.files.values())
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for name, justify in (("state", "left"), ("files", "right"), ("share", "left"),
                          ("oldest", "right")):
        table.add_column(name, justify=justify)
    for state in STATES:
        age = snap.oldest_in_flight_age_s.get(state)
        table.add_row(state, str(snap.files[state]),
                      _bar(snap.files[state], total, _STATE_STYLE.get(state, "yellow")),
                      duration(age) if state in IN_FLIGHT else "")
    return Panel(table, title="files", title_align="left", expand=False)


def _health_panel(snap: Snapshot):
    t = snap.throttle
    breaker_style = {"closed": "green", "half-open": "yellow"}.get(t.breaker, "bold red")
    errors = ", ".join(f"{c} {n}" for c, n in snap.errors_by_class.items()) or "none"
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold")
    grid.add_row("queue", f"{snap.waiting} waiting, {snap.scheduled} scheduled")
    grid.add_row("breaker", f"[{breaker_style}]{breaker_text(t)}[/]")
    grid.add_row("rate", rate_text(t))
    grid.add_row("errors 1 h", errors)
    grid.add_row("reconcile", reconcile_text(snap.last_reconcile, snap.generated_at))
    grid.add_row("activity", ago(snap.last_activity_at, snap.generated_at))
    return Panel(grid, title="health", title_align="left", expand=False)


# ---------------------------------------------------------------------------- --watch


def watch(settings: Settings, *, interval_s: float = 1.0, until_done: bool = False,
          console=None) -> Snapshot:
    """Refresh the view every ``interval_s`` until Ctrl+C (or, ``until_done``, until nothing
    is pending or in flight). On a terminal: a transient Rich Live view, so the screen and
    the cursor are left as they were; elsewhere: one plain line per refresh. Returns the
    last snapshot."""
    console = console or Console()
    if not console.is_terminal:
        return _watch_plain(settings, interval_s, until_done, console)

    footer = (f"every {interval_s:g} s · Ctrl+C to leave"
              + (" · stops when nothing is pending or in flight" if until_done else ""))
    snap = snapshot(settings)
    try:
        with Live(render(snap, footer=footer), console=console, auto_refresh=False,
                  transient=True, redirect_stdout=False, redirect_stderr=False) as live:
            while not (until_done and snap.done):
                time.sleep(interval_s)
                snap = snapshot(settings)
                live.update(render(snap, footer=footer), refresh=True)
    except KeyboardInterrupt:
        pass
    return snap


def _watch_plain(settings: Settings, interval_s: float, until_done: bool, console) -> Snapshot:
    """A line when the counts change, and every PLAIN_HEARTBEAT_S while they do not."""
    snap, shown, shown_at = snapshot(settings), None, 0.0
    try:
        while True:
            figures = (snap.files, snap.waiting, snap.scheduled, snap.throttle.breaker)
            if figures != shown or snap.generated_at - shown_at >= PLAIN_HEARTBEAT_S:
                console.print(plain_line(snap), highlight=False, soft_wrap=True)
                shown, shown_at = figures, snap.generated_at
            if until_done and snap.done:
                return snap
            time.sleep(interval_s)
            snap = snapshot(settings)
    except KeyboardInterrupt:
        return snap
