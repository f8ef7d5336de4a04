"""``objlib scan`` on screen: a progress bar while files are hashed, then the summary table
(a ``objlib.scan.ScanSummary``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from objlib.scan import ProgressFn, ScanSummary


@contextmanager
def hashing_progress(console=None) -> Iterator[ProgressFn | None]:
    """A transient Rich progress bar on stderr while files are read; None when stderr is
    not a terminal (logs, CI, tests)."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with Progress(TextColumn("hashing"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("hashing", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def summary_table(summary: ScanSummary):
    """The summary as a Rich table (the warnings follow it as its caption)."""
    title = f"{'dry run: nothing written — ' if summary.dry_run else ''}scan of {summary.root}"
    table = Table(title=title, show_header=True, title_justify="left")
    table.add_column("files")
    table.add_column("count", justify="right")
    for label, count in summary.rows():
        table.add_row(label, str(count))
    read_mb = summary.read_bytes / 1e6
    table.caption = "\n".join(
        [f"{summary.files} found, {summary.read_files} read ({read_mb:.1f} MB) "
         f"in {summary.elapsed_s:.2f} s"]
        + [f"warning: {w}" for w in summary.warnings]
        + [f"renamed: {old} -> {new}" for old, new in summary.renamed[:10]])
    table.caption_justify = "left"
    return table
