"""``objlib upload`` on screen: the dry run's plan, the run's progress (live on a terminal,
plain lines elsewhere) and the summary panel; the data comes from ``objlib.foreground``.

    result = foreground.upload(settings, view=progress_view(console))
    console.print(summary_panel(result))
"""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from objlib import runs, status
from objlib.catalog.lifecycle import SKIPPED
from objlib.foreground import MakeView, Plan, RunResult
from objlib.views.status import breaker_text, rate_text
from objlib.views.words import clock, duration

_STEP_STYLE = {runs.STEP_UPLOADING: "cyan", runs.STEP_ACTIVATING: "yellow",
               runs.STEP_IMPORTING: "magenta", runs.STEP_INDEXING: "blue"}


# ---------------------------------------------------------------------------- --dry-run


def plan_view(p: Plan):
    head = Text.assemble(("would upload ", ""), (f"{p.uploads}", "bold"), " file(s) to ",
                         (p.store, "bold"),
                         "" if p.store_known else " (created on the first real run)")
    notes = [f"and follow {p.polls} import(s) already started"] if p.polls else []
    notes.append(f"{p.skipped} file(s) skipped as not eligible (objlib failures --skipped)")
    notes.append("dry run: nothing was changed")
    table = Table(title=f"the first {len(p.first)} in upload order" if p.first else None,
                  title_justify="left")
    table.add_column("path", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("metadata quality")
    for f in p.first:
        table.add_row(f["path"], f"{f['size']:,}" if f["size"] is not None else "-", f["quality"])
    parts = [head] + ([table] if p.first else []) + [Text(n, style="dim") for n in notes]
    return Group(*parts)


# ---------------------------------------------------------------------------- the run


def progress_view(console: Console, *, plain_every_s: float = 5.0) -> MakeView:
    """What ``foreground.upload`` shows a run on: a ``LiveView`` on a terminal, a ``PlainView``
    (a line per batch, per note and every ``plain_every_s``) elsewhere."""
    def make(run_id: int, store: str, concurrency: int, batch_size: int):
        kind = LiveView if console.is_terminal else PlainView
        return kind(console, run_id, store, concurrency, batch_size, plain_every_s)
    return make


def _rate(p: runs.Progress, started: float) -> float:
    elapsed = time.monotonic() - started
    return p.indexed / elapsed if elapsed > 0 else 0.0


def _health(snap: status.Snapshot) -> str:
    return (f"breaker {breaker_text(snap.throttle)} · {rate_text(snap.throttle)} · "
            f"queue {snap.waiting} waiting, {snap.scheduled} scheduled")


def _steps_text(p: runs.Progress) -> str:
    return ", ".join(f"{step} {n}" for step, n in p.steps.items() if n) or "none"


class LiveView:
    """On a terminal: the run (bar, count, percentage, ETA), the current batch, one line per
    file in flight with its step, then breaker, rate and queue; redrawn in place."""

    def __init__(self, console: Console, run_id: int, store: str, concurrency: int,
                 batch_size: int, _plain_every_s: float = 0.0):
        self.console, self.run_id, self.store = console, run_id, store
        self.concurrency = concurrency
        self.started = time.monotonic()
        self.bars = Progress(TextColumn("{task.description}", style="bold"),
                             BarColumn(bar_width=40), MofNCompleteColumn(), TaskProgressColumn(),
                             TextColumn("ETA"), TimeRemainingColumn(),
                             TextColumn("{task.fields[extra]}"),
                             console=console, auto_refresh=False)
        self.run_bar = self.bars.add_task("run  ", total=None, extra="")
        self.batch_bar = self.bars.add_task("batch", total=None, extra="")
        self._batch = -1
        self.live = Live(console=console, auto_refresh=False, transient=True)

    def __enter__(self) -> LiveView:
        self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        self.live.stop()

    def show(self, p: runs.Progress, snap: status.Snapshot, note: str | None) -> None:
        extra = f"{p.indexed} indexed · {p.failed} failed · {_rate(p, self.started):.1f} files/s"
        self.bars.update(self.run_bar, total=p.total, completed=p.settled, extra=extra)
        label = f"batch {p.batch_index + 1}/{p.batches}"
        if p.batch_index != self._batch:
            self.bars.reset(self.batch_bar, total=p.batch_total, completed=p.batch_settled,
                            description=label)
            self._batch = p.batch_index
        self.bars.update(self.batch_bar, total=p.batch_total, completed=p.batch_settled,
                         extra=f"{p.batch_size} files per batch, in enqueue order")
        self.live.update(self.render(p, snap, note), refresh=True)

    def render(self, p: runs.Progress, snap: status.Snapshot, note: str | None):
        title = Text.assemble(("objlib upload", "bold"), f" · run {self.run_id} · store ",
                              (self.store, "bold"), f" · {self.concurrency} workers")
        flying = Table.grid(padding=(0, 2))
        flying.add_column(width=14)
        flying.add_column(overflow="ellipsis", no_wrap=True)
        for f in p.in_flight:
            flying.add_row(Text(f.step, style=_STEP_STYLE[f.step]), f.path)
        shown, total = len(p.in_flight), sum(p.steps.values())
        more = f" (showing {shown})" if total > shown else ""
        head = Text(f"in flight {total}{more}: {_steps_text(p)} · queued {p.queued}", style="dim")
        library = (f"library {snap.files['indexed']}/{snap.eligible} indexed "
                   f"({snap.percent:.1f}%), {snap.files['failed']} failed")
        hint = note or "Ctrl+C: stop after the steps in flight (resumable) · twice: at once"
        return Group(title, self.bars, head, flying, Text(_health(snap), style="dim"),
                     Text(library, style="dim"), Text(hint, style="yellow" if note else "dim"))


class PlainView:
    """Without a terminal (pipes, CI): a plain line when a batch completes, when a note
    appears, and every ``every_s`` seconds otherwise; never a control sequence."""

    def __init__(self, console: Console, run_id: int, store: str, concurrency: int,
                 batch_size: int, every_s: float = 5.0):
        self.console, self.run_id, self.every_s = console, run_id, every_s
        self.started = time.monotonic()
        self._shown_at = -every_s
        self._last: tuple | None = None
        self.console.print(f"objlib upload: run {run_id}, store {store}, {concurrency} workers, "
                           f"batches of {batch_size}", highlight=False, soft_wrap=True)

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def show(self, p: runs.Progress, snap: status.Snapshot, note: str | None) -> None:
        key = (p.batch_index, p.done, note)
        due = time.monotonic() - self._shown_at >= self.every_s
        if key == self._last and not due:
            return
        self._last, self._shown_at = key, time.monotonic()
        self.console.print(self.line(p, snap, note), highlight=False, soft_wrap=True)

    def line(self, p: runs.Progress, snap: status.Snapshot, note: str | None) -> str:
        rate = _rate(p, self.started)
        remaining = p.total - p.settled
        eta = duration(remaining / rate) if rate > 0 else "-"
        percent = 100.0 * p.settled / p.total if p.total else 100.0
        return (f"{clock(time.time())} run {self.run_id}: {p.settled}/{p.total} done "
                f"({percent:.1f}%), {p.indexed} indexed, {p.failed} failed | "
                f"batch {p.batch_index + 1}/{p.batches}: {p.batch_settled}/{p.batch_total} | "
                f"in flight: {_steps_text(p)}; queued {p.queued} | {rate:.1f} files/s | "
                f"ETA {eta} | {_health(snap)}" + (f" | {note}" if note else ""))


# ---------------------------------------------------------------------------- the summary


def summary_panel(result: RunResult) -> Panel:
    """What the run did: indexed, failed, skipped, retried, rate-limited, duration, files/s;
    for a run cut short, what is left and that it resumes."""
    run, lib = result.run, result.library
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    grid.add_column(style="dim")
    rows = [("indexed", run["indexed"], f"of {run['total']} in this run"),
            ("failed", run["failed"], "see `objlib failures`" if run["failed"] else ""),
            ("skipped", lib.files[SKIPPED], "not eligible: `objlib failures --skipped`"),
            ("retried", run["retried"], "transient errors retried"),
            ("rate-limited", run["rate_limited"], "429s met (deferred, not failed)"),
            ("duration", duration(run["duration_s"]), ""),
            ("files/s", f"{run['files_per_s'] or 0:.2f}", "indexed per second")]
    if run["open"]:
        rows.append(("not finished", run["open"], "resumable: run `objlib upload` again"))
    if run["left_over"]:
        rows.append(("left the run", run["left_over"], "changed, deleted or handed back; "
                                                         "the next run takes them"))
    rows.append(("library", f"{lib.files['indexed']}/{lib.eligible}",
                 f"indexed ({lib.percent:.1f}%)"))
    for name, value, note in rows:
        grid.add_row(name, str(value), note)
    grid.add_row("log", "", str(result.log_path))
    style = {runs.DONE: "green" if not run["failed"] else "red"}.get(run["outcome"], "yellow")
    return Panel(grid, title=f"objlib upload · run {run['id']} · {run['outcome']}",
                 title_align="left", border_style=style, expand=False)
