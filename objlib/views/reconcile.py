"""``objlib reconcile`` on screen: counts per kind (and fixed), then the first findings of each
kind and what was done (a ``objlib.reconcile.Report``)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from objlib.reconcile import KINDS, Report


def render(report: Report, *, max_items: int = 10):
    """The report for a terminal: counts per kind (and fixed), then the first items of each."""
    head = "fixed what it could" if report.fix else "dry run: nothing changed (--fix repairs)"
    table = Table()
    table.add_column("kind")
    table.add_column("found", justify="right")
    if report.fix:
        table.add_column("fixed", justify="right")
    for kind, count in report.counts.items():
        table.add_row(kind, str(count), *([str(report.fixed[kind])] if report.fix else []))
    title = Text(f"reconcile of {report.store}: {head}")
    lines = [f"{report.documents} documents, {report.rows} catalogue rows, "
             f"{report.remote_calls} remote calls, {report.duration_s:.2f} s"]
    for kind in KINDS:
        items = report.findings[kind]
        for f in items[:max_items]:
            lines.append(f"{kind}: {f.document or '-'}  {f.path or '?'}  ({f.detail})")
        if len(items) > max_items:
            lines.append(f"{kind}: ... and {len(items) - max_items} more (see --json)")
    done = [_action_text(a) for a in report.actions if a["action"] != "enqueue"]
    lines += done[:max_items * 2]
    if len(done) > max_items * 2:
        lines.append(f"... and {len(done) - max_items * 2} more actions (see --json)")
    enqueued = sum(a["action"] == "enqueue" for a in report.actions)
    if enqueued:
        lines.append(f"enqueued {enqueued} file(s); the workers upload them")
    lines += [f"error: {e}" for e in report.errors]
    if report.store_missing:
        lines.append(f"the store {report.store} is gone: "
                     + (f"created {report.recreated} in its place; every file goes through "
                        "the pipeline again" if report.recreated else
                        "`objlib reconcile --fix` creates a new one and uploads every file "
                        "again"))
    foreign = report.counts["foreign"]
    if foreign and not (report.fix and report.fixed["foreign"]):
        lines.append(f"{foreign} foreign document(s) left alone: another catalogue or tool "
                     "made them (--fix --include-foreign deletes them)")
    if not report.drift:
        lines.append("the store matches the catalogue")
    return Group(title, table, Text("\n".join(lines)))


def _action_text(action: dict) -> str:
    verb = {"delete": "deleted", "reset": "reset to pending", "recover": "handed to a new task"}
    what = action["document"] if action["action"] == "delete" else action["path"]
    return f"{verb.get(action['action'], action['action'])}: {what} ({action['kind']})"
