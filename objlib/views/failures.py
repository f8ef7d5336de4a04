"""``objlib failures`` on screen: the failed files with the fix per class, the skipped files
with their reasons (reports from ``objlib.failures``)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from objlib.failures import FailuresReport, SkippedReport
from objlib.views.words import ago


def failures_view(report: FailuresReport, *, now: float):
    """The failed files, then the counts per class with the fix for each."""
    if not report.by_class:
        return Text("no failed files")
    files = _table(f"{len(report.failures)} failed file(s)",
                   ("path", "class", "attempts", "failed", "message"),
                   [(f.path, f.error_class,
                     str(f.attempts) + (f" (+{f.rate_limited} × 429)" if f.rate_limited else ""),
                     ago(f.failed_at, now), f.message or "") for f in report.failures])
    classes = _table("by class", ("class", "files", "fix"),
                     [(c, str(n), report.hint(c)) for c, n in report.by_class.items()])
    return Group(files, classes)


def skipped_view(report: SkippedReport):
    """The skipped files with their reasons, then the counts per reason."""
    if not report.skipped:
        return Text("no skipped files")
    files = _table(f"{len(report.skipped)} skipped file(s)", ("path", "reason"),
                   [(s.path, s.reason) for s in report.skipped])
    reasons = _table("by reason", ("reason", "files"),
                     [(r, str(n)) for r, n in report.by_reason.items()])
    return Group(files, reasons)


_NUMERIC = ("attempts", "files")


def _table(title: str, columns, rows):
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold", justify="right" if name in _NUMERIC else "left")
    for row in rows:
        table.add_row(*row)
    return table

