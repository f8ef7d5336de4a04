"""``objlib status`` on screen: a snapshot (``objlib.status``) as a Rich view, as one plain
line for logs and pipes, and refreshed live (``--watch``).

    Console().print(render(st.snapshot(settings)))
    watch(settings, interval_s=1.0, until_done=True)
"""

from __future__ import annotations

import json
import time

from rich.columns import Columns
from rich.console import Console, Group, JustifyMethod
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from objlib import status as st
from objlib.catalog.lifecycle import DELETED, FAILED, IN_FLIGHT, INDEXED, PENDING, SKIPPED, STATES
from objlib.settings import Settings
from objlib.status import Snapshot, rounded_per_minute
from objlib.throttle import ThrottleState
from objlib.views.words import ago, clock, duration

PLAIN_HEARTBEAT_S = 30.0  # --watch without a terminal: a line at least this often


# ---------------------------------------------------------------------------- words


def latest_run_line(run: dict | None) -> str:
    """The latest run in one line (``objlib status``): ``run 3 (running): 120/500 indexed
    (24.0%), 2 failed, 378 open, 1m 05s``."""
    if run is None:
        return "no `objlib upload` run yet"
    parts = [f"{run['indexed'] or 0}/{run['total']} indexed ({run['percent']:.1f}%)"]
    parts += [f"{run[k]} {k.replace('_', ' ')}" for k in ("failed", "open", "left_over")
              if run.get(k)]
    return f"run {run['id']} ({run['outcome']}): {', '.join(parts)}, {duration(run['duration_s'])}"


def breaker_text(t: ThrottleState) -> str:
    if t.breaker == "open":
        return f"open ({duration(t.breaker_open_for_s)} left, trip {t.breaker_trips})"
    return t.breaker


def rate_text(t: ThrottleState) -> str:
    limit = f"{t.limit_per_minute}/min" if t.limit_per_minute else "unlimited"
    if t.adaptive_per_minute is not None:
        adapted = rounded_per_minute(t.adaptive_per_minute)
        limit = f"{adapted}/min adapted to 429s; configured {limit}"
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
        lost = ago(snap.store_lost_at, snap.generated_at)
        parts.insert(1, Text(f"the store {snap.store} is gone ({lost}): "
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
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("state", "left"), ("files", "right"), ("share", "left"), ("oldest", "right"))
    for name, justify in columns:
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
    snap = st.snapshot(settings)
    try:
        with Live(render(snap, footer=footer), console=console, auto_refresh=False,
                  transient=True, redirect_stdout=False, redirect_stderr=False) as live:
            while not (until_done and snap.done):
                time.sleep(interval_s)
                snap = st.snapshot(settings)
                live.update(render(snap, footer=footer), refresh=True)
    except KeyboardInterrupt:
        pass
    return snap


def _watch_plain(settings: Settings, interval_s: float, until_done: bool, console) -> Snapshot:
    """A line when the counts change, and every PLAIN_HEARTBEAT_S while they do not."""
    snap, shown, shown_at = st.snapshot(settings), None, 0.0
    try:
        while True:
            figures = (snap.files, snap.waiting, snap.scheduled, snap.throttle.breaker)
            if figures != shown or snap.generated_at - shown_at >= PLAIN_HEARTBEAT_S:
                console.print(plain_line(snap), highlight=False, soft_wrap=True)
                shown, shown_at = figures, snap.generated_at
            if until_done and snap.done:
                return snap
            time.sleep(interval_s)
            snap = st.snapshot(settings)
    except KeyboardInterrupt:
        return snap
