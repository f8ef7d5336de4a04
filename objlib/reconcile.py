"""Reconciliation: the catalogue says what *should* be in the store; only the store's own
document list says what *is*.

``reconcile`` lists every document of the store once (all pages, 20 a page: the API's
maximum), then reads the catalogue, and sorts every difference into one kind:

==============  ========================================================  =====================
kind            what                                                      ``fix``
==============  ========================================================  =====================
missing         an indexed row whose document is not in the store         row reset to pending,
                                                                          then enqueued
orphans         a document no row, removal or metadata accounts for       deleted
duplicates      another document for a file version whose recorded        deleted (the recorded
                document is a different one                               one stays)
stale           a document of a replaced or deleted version, or one       deleted (its removal
                whose removal has been open longer than removal_after_s   closed)
failed          a document in STATE_FAILED                                deleted; a row that
                                                                          held it is reset
stuck_pending   a document STATE_PENDING for longer than pending_after_s  as failed
stuck_rows      a row in flight whose task is gone (recovery.is_stuck)    recovery
foreign         a document this catalogue did not make: its metadata      left alone (deleted
                names another catalogue (``objlib_catalog``), or none     only with
                                                                          include_foreign)
==============  ========================================================  =====================

A lost store (the listing answers 404 and so does the store itself) is a state of its own:
``store_missing`` is reported; with ``fix`` the store is created anew, every row that had
been sent (indexed or in flight) goes back to pending and is enqueued, and the removals and
superseded imports of the old store are closed (their documents went with it).

Safety, in order of importance:

- Only this catalogue's documents are ever deleted: a document the catalogue does not name
  and whose ``objlib_catalog`` metadata is not this catalogue's id is ``foreign`` (another
  home mirroring into the same store, or another tool), unless ``include_foreign``.
- A document that the catalogue records as a row's current one (``files.document`` of a row
  that is not deleted) is never deleted. The one exception is a current document that is
  STATE_FAILED (or STATE_PENDING for far too long): its row is reset to pending first, so it
  stops being current, and only then is it deleted. Every delete re-checks the catalogue
  right before it is sent.
- The document list is read *before* the catalogue: a document that an import creates while
  the list is read is then either not listed, or its row is already in flight and the
  document is left to the task (an in-flight row's unrecorded document is never drift). A
  row indexed after the listing began is not "missing" either.
- Every delete is recorded in ``removals`` first and closed when the store confirms it
  (403/404 count as gone), so a crash mid-fix leaves the rest to recovery.

This module knows nothing of the queue: the live tasks come in (``live_tasks``), and what ``fix``
reset to pending (``Report.reset``, or every row when the store was re-created) and the stuck
rows go out, for ``objlib.tasks.reconcile`` to hand to tasks (``record_requeued``).

The result (time, counts per kind, fixed or not) is kept in the catalogue's ``meta`` under
``last_reconcile`` for ``objlib status``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from objlib.catalog import Catalog, open_catalog
from objlib.catalog import lifecycle as lc
from objlib.clients import command_client
from objlib.errors import CatalogError, ObjlibError
from objlib.gemini.errors import GeminiError, Gone
from objlib.log import get_logger
from objlib.recovery import LiveTasks, is_stuck
from objlib.settings import Settings
from objlib.store import mark_store_lost, recreate_store

log = get_logger("objlib.reconcile")

KINDS = ("missing", "orphans", "duplicates", "stale", "failed", "stuck_pending", "stuck_rows",
         "foreign")
DRIFT_KINDS = KINDS[:-1]  # foreign documents are another catalogue's business, not drift
META_KEY = "last_reconcile"
PENDING_AFTER_S = 30 * 60.0   # a document still STATE_PENDING after this is stuck
LIST_PAGE_RETRIES = 5  # a 250-page listing must not end at the first 429 or 503
REMOVAL_AFTER_S = 60 * 60.0   # an open removal whose document is still listed after this
_DUE_SLACK_S = 30.0           # the periodic task runs on the minute; do not skip a beat
_PENDING, _FAILED = "STATE_PENDING", "STATE_FAILED"


@dataclass(frozen=True)
class Finding:
    """One difference between the catalogue and the store."""

    kind: str
    document: str | None  # the listed document; for a row kind, the one the row records
    path: str | None
    file_id: int | None
    version: int | None
    state: str | None     # the document's state, or the row's for missing / stuck rows
    detail: str


@dataclass(frozen=True)
class OpenRemoval:
    id: int
    document: str
    file_id: int | None
    requested_at: float


@dataclass
class Report:
    """What one reconcile found and, with ``fix``, what it did."""

    store: str
    at: float
    fix: bool
    documents: int = 0
    rows: int = 0
    findings: dict[str, list[Finding]] = field(default_factory=lambda: {k: [] for k in KINDS})
    fixed: Counter = field(default_factory=Counter)
    actions: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    remote_calls: int = 0  # made through reconcile's own client (0 when one is passed in)
    duration_s: float = 0.0
    store_missing: bool = False  # the store itself is gone
    recreated: str | None = None  # with fix: the store created in its place
    reset: list[str] = field(default_factory=list)  # with fix: rows put back to pending

    @property
    def needs_requeue(self) -> bool:
        """With fix: rows were reset (or the store re-created) or found stuck; they are
        for new tasks."""
        return self.fix and bool(self.reset or self.recreated or self.findings["stuck_rows"])

    @property
    def counts(self) -> dict[str, int]:
        return {kind: len(self.findings[kind]) for kind in KINDS}

    @property
    def drift(self) -> int:
        """Differences that are this catalogue's to repair (foreign documents are not)."""
        return sum(len(self.findings[kind]) for kind in DRIFT_KINDS) + self.store_missing

    @property
    def clean(self) -> bool:
        """Nothing left to repair: no drift, or ``fix`` repaired every bit of it."""
        if self.store_missing:
            return self.recreated is not None and not self.errors
        return self.drift == 0 or (self.fix and not self.errors and all(
            self.fixed[kind] >= len(self.findings[kind]) for kind in DRIFT_KINDS))

    def summary(self) -> dict:
        """The record kept in ``meta.last_reconcile``."""
        return {"at": round(self.at, 3), "duration_s": round(self.duration_s, 3),
                "store": self.store, "documents": self.documents, "fix": self.fix,
                "outcome": "ok", "store_missing": self.store_missing,
                "recreated": self.recreated, "drift": self.drift, "counts": self.counts,
                "fixed": {kind: self.fixed[kind] for kind in KINDS} if self.fix else None,
                "errors": len(self.errors), "remote_calls": self.remote_calls}

    def to_dict(self) -> dict:
        """The ``--json`` object: the summary, every finding and every action."""
        out = self.summary()
        out.update(rows=self.rows, actions=self.actions, error_messages=self.errors,
                   findings={kind: [_finding_dict(f) for f in self.findings[kind]]
                             for kind in KINDS})
        return out


def _finding_dict(finding: Finding) -> dict:
    out = asdict(finding)
    del out["kind"]
    return out


# ---------------------------------------------------------------------------- the run


def require_catalogue(settings: Settings) -> None:
    if not settings.library_db.exists():
        raise CatalogError(f"no catalogue in {settings.home} yet: run `objlib scan LIBRARY` "
                           "first (or point --home / OBJLIB_HOME at the right folder)")


def reconcile(settings: Settings, *, live_tasks: Callable[[], LiveTasks], fix: bool = False,
              catalog: Catalog | None = None, gemini=None, now: float | None = None,
              pending_after_s: float | None = None, removal_after_s: float = REMOVAL_AFTER_S,
              include_foreign: bool = False) -> Report:
    """Compare the store's document list with the catalogue; with ``fix``, repair each kind
    but the stuck rows (``Report.needs_requeue``: the queue's to hand out). ``live_tasks``
    reads the tasks in the queue, which hold their rows (read after the catalogue, so that a
    task made meanwhile is seen).

    ``gemini`` defaults to a client whose requests pass the shared rate limiter (waiting for
    a slot rather than failing). ``pending_after_s`` defaults to 30 min, or the poll timeout
    if that is longer (a document the poll still waits for is not stuck).
    """
    started = time.monotonic()
    own_catalog = catalog is None
    if own_catalog:
        require_catalogue(settings)
    catalog = catalog or open_catalog(settings)
    try:
        store = catalog.get_meta("store")
        if not store:
            raise ObjlibError("no store recorded in the catalogue yet: run `objlib enqueue` "
                              "first (it creates the store)")
        report = Report(store=store, at=time.time() if now is None else now, fix=fix)
        calls: Counter[str] = Counter()
        client, closers = ((gemini, []) if gemini is not None
                           else command_client(settings, holder="reconcile", calls=calls))
        try:
            _examine(settings, catalog, client, report, live_tasks, pending_after_s,
                     removal_after_s, include_foreign)
        except Exception as exc:
            catalog.set_meta(META_KEY, json.dumps({"at": round(report.at, 3), "store": store,
                                                   "fix": fix, "outcome": "failed",
                                                   "error": str(exc)}))
            raise
        finally:
            for close in closers:
                close()
            report.remote_calls = calls["requests"]
            report.duration_s = time.monotonic() - started
        catalog.set_meta(META_KEY, json.dumps(report.summary()))
    finally:
        if own_catalog:
            catalog.close()
    (log.info if fix else log.debug)("reconciled", store=store, fix=fix,
                                     documents=report.documents,
                                     duration_s=round(report.duration_s, 3), **report.counts)
    return report


def _examine(settings: Settings, catalog: Catalog, client, report: Report,
             live_tasks: Callable[[], LiveTasks],
             pending_after_s: float | None, removal_after_s: float,
             include_foreign: bool) -> None:
    """List the store, then read the catalogue (in that order), sort out the drift, and
    repair it if the report says ``fix``."""
    listed_at = time.time()
    try:
        docs = list(client.list_documents(report.store, transient_retries=LIST_PAGE_RETRIES))
    except GeminiError as err:
        if err.code != 404 or not _store_gone(client, report.store):
            raise
        _store_missing(settings, catalog, client, report)
        return
    rows = [lc.FileRow.from_row(r) for r in catalog.query("SELECT * FROM files")]
    report.documents, report.rows = len(docs), len(rows)
    if pending_after_s is None:
        pending_after_s = max(PENDING_AFTER_S, settings.poll_timeout_s)
    report.findings = find_drift(docs, rows, open_removals(catalog), listed_at=listed_at,
                                 now=report.at, pending_after_s=pending_after_s,
                                 removal_after_s=removal_after_s, catalog_id=catalog.id)
    live = live_tasks()
    report.findings["stuck_rows"] = [
        _row_finding("stuck_rows", r, "in flight, but no task holds it")
        for r in rows if r.state in lc.IN_FLIGHT and is_stuck(r, live, report.at)]
    if report.fix:
        _Repair(settings, catalog, client, report, report.at, include_foreign).run()


def _store_gone(client, store: str) -> bool:
    try:
        client.get_store(store)
    except Gone:
        return True
    return False


def _store_missing(settings: Settings, catalog: Catalog, client, report: Report) -> None:
    """The store is gone: say so (status shows it too); with ``fix``, make a new one and send
    every row that had been sent to the old one through the pipeline again."""
    report.store_missing = True
    mark_store_lost(catalog, report.store, report.at)
    if not report.fix:
        return
    report.recreated = recreate_store(settings, catalog, client, report.store, report.at)


def open_removals(catalog: Catalog) -> list[OpenRemoval]:
    rows = catalog.query("SELECT id, document, file_id, requested_at FROM removals "
                         "WHERE removed_at IS NULL")
    return [OpenRemoval(**dict(r)) for r in rows]


# ---------------------------------------------------------------------------- the decisions


def find_drift(docs: Iterable, rows: list[lc.FileRow], removals: list[OpenRemoval], *,
               listed_at: float, now: float, pending_after_s: float = PENDING_AFTER_S,
               removal_after_s: float = REMOVAL_AFTER_S,
               catalog_id: str | None = None) -> dict[str, list[Finding]]:
    """Every kind but ``stuck_rows`` (which needs the queue), from a document list and a
    catalogue read *after* it. Pure: no I/O."""
    found: dict[str, list[Finding]] = {kind: [] for kind in KINDS}
    current = {r.document: r for r in rows if r.document and r.state != lc.DELETED}
    gone_rows = {r.document: r for r in rows if r.document and r.state == lc.DELETED}
    previous = {r.previous_document for r in rows if r.previous_document}
    by_id = {r.id: r for r in rows}
    removing = {rm.document: rm for rm in removals}
    listed = set()
    for doc in docs:
        listed.add(doc.name)
        kind, row, detail = _judge(doc, current, gone_rows, previous, by_id, removing,
                                   now=now, pending_after_s=pending_after_s,
                                   removal_after_s=removal_after_s, catalog_id=catalog_id)
        if kind is not None:
            found[kind].append(_doc_finding(kind, doc, row, detail))
    for row in rows:
        if row.state == lc.INDEXED and row.document not in listed and \
                (row.indexed_at or 0) < listed_at:
            found["missing"].append(_row_finding(
                "missing", row, f"indexed, but {row.document or 'no document'} is not in the "
                                "store"))
    return found


def _judge(doc, current, gone_rows, previous, by_id, removing, *, now, pending_after_s,
           removal_after_s, catalog_id):
    """(kind or None, the row it concerns, why) for one listed document."""
    row = current.get(doc.name)
    named = row is not None or doc.name in removing or doc.name in previous \
        or doc.name in gone_rows
    owner = doc.custom_metadata.get("objlib_catalog")
    if not named and owner != catalog_id:
        return ("foreign", None, f"made by another objlib catalogue ({owner})" if owner
                else "not made by objlib (no objlib_catalog metadata)")
    if doc.state == _FAILED:
        return "failed", row or by_id.get(_meta_int(doc, "objlib_file_id")), "STATE_FAILED"
    age_s = now - (doc.create_time or now)
    if doc.state == _PENDING and age_s > pending_after_s:
        return ("stuck_pending", row or by_id.get(_meta_int(doc, "objlib_file_id")),
                f"STATE_PENDING for {age_s / 60:.0f} min")
    if row is not None:
        return None, row, "the current document"
    if doc.name in removing:
        removal = removing[doc.name]
        waited_s = now - removal.requested_at
        if waited_s > removal_after_s:
            return ("stale", by_id.get(removal.file_id),
                    f"its removal has been open for {waited_s / 60:.0f} min")
        return None, None, "being removed"
    if doc.name in previous:
        return None, None, "the replaced version, kept until its successor is indexed"
    if doc.name in gone_rows:
        return "stale", gone_rows[doc.name], "its file was deleted"
    return _judge_by_metadata(doc, by_id)


def _judge_by_metadata(doc, by_id):
    """A document the catalogue does not name: its metadata says whose it was."""
    file_id, version = _meta_int(doc, "objlib_file_id"), _meta_int(doc, "objlib_version")
    row = by_id.get(file_id)
    if row is None or version is None:
        return "orphans", None, "no catalogue row names it"
    if row.state in (lc.DELETED, lc.SKIPPED):
        return "stale", row, f"its file is {row.state}"
    if version < row.version:
        return "stale", row, f"version {version}, replaced by version {row.version}"
    if version == row.version and row.state in lc.IN_FLIGHT:
        # perhaps made by the import in flight right now: its task records it (a real
        # duplicate is found by the first reconcile after the row is indexed)
        return None, row, "made by an import still in flight"
    if version == row.version and row.document:
        return "duplicates", row, f"the catalogue records {row.document}"
    return "orphans", row, f"version {version}, but the row ({row.state}) records no document"


def _meta_int(doc, key: str) -> int | None:
    try:
        return int(doc.custom_metadata.get(key))
    except (TypeError, ValueError):
        return None


def _doc_finding(kind: str, doc, row: lc.FileRow | None, detail: str) -> Finding:
    path = row.path if row is not None else doc.custom_metadata.get("path")
    return Finding(kind, doc.name, path if isinstance(path, str) else None,
                   _meta_int(doc, "objlib_file_id") if row is None else row.id,
                   _meta_int(doc, "objlib_version"), doc.state, detail)


def _row_finding(kind: str, row: lc.FileRow, detail: str) -> Finding:
    return Finding(kind, row.document, row.path, row.id, row.version, row.state, detail)


# ---------------------------------------------------------------------------- the repairs


class _Repair:
    """``--fix``: each kind repaired in the order that never loses a good document."""

    def __init__(self, settings: Settings, catalog: Catalog, gemini, report: Report, now: float,
                 include_foreign: bool = False):
        self.settings, self.catalog, self.gemini = settings, catalog, gemini
        self.report, self.now = report, now
        self.include_foreign = include_foreign

    def run(self) -> None:
        found = self.report.findings
        for finding in found["failed"] + found["stuck_pending"]:
            # a failed current document: its row forgets it first, then it is deleted
            row = self._row(finding)
            if row is not None and row.document == finding.document:
                self._reset(row, finding, lc.ELIGIBLE, f"reconcile: document {finding.state}")
            if self._delete(finding):
                self.report.fixed[finding.kind] += 1
        for finding in found["missing"]:
            row = self._row(finding)
            if row is not None and (row.version, row.document) == (finding.version,
                                                                   finding.document) \
                    and self._reset(row, finding, (lc.INDEXED,),
                                    "reconcile: document missing from the store"):
                self.report.fixed["missing"] += 1
        for finding in found["orphans"] + found["duplicates"] + found["stale"] + (
                found["foreign"] if self.include_foreign else []):
            if self._delete(finding):
                self.report.fixed[finding.kind] += 1

    def _row(self, finding: Finding) -> lc.FileRow | None:
        """The finding's row as it is now (it may have moved on since the listing)."""
        return None if finding.file_id is None else lc.get(self.catalog, finding.file_id)

    def _reset(self, row: lc.FileRow, finding: Finding, from_states, why: str) -> bool:
        if not lc.reset_to_pending(self.catalog, row.id, row.version, self.now, why,
                                   from_states=from_states):
            return False
        self.report.reset.append(row.path)
        self._act("reset", finding, path=row.path)
        return True

    def _delete(self, finding: Finding) -> bool:
        """Delete one document, recorded in ``removals`` until the store confirms it."""
        name, cat = finding.document, self.catalog
        assert name is not None, "only findings about a document delete one"
        if cat.query("SELECT 1 FROM files WHERE document=? AND state!=? LIMIT 1",
                     (name, lc.DELETED)):
            self.report.errors.append(f"{name}: left alone, the catalogue records it as a "
                                      "current document")
            return False
        lc.schedule_removal(cat, name, finding.file_id, f"reconcile: {finding.kind}", self.now)
        removal = cat.query("SELECT id FROM removals WHERE document=? AND removed_at IS NULL",
                            (name,))
        try:
            self.gemini.delete_document(name)  # False: already gone, which is as good
        except GeminiError as err:
            if removal:
                lc.record_removal_error(cat, removal[0]["id"], err.kind, str(err), time.time())
            self.report.errors.append(f"{name}: {err}")
            return False
        if removal:
            lc.mark_removed(cat, removal[0]["id"], time.time())
        self._act("delete", finding)
        return True

    def _act(self, action: str, finding: Finding, path: str | None = None) -> None:
        _act(self.report, action, finding, path)


def _act(report: Report, action: str, finding: Finding, path: str | None = None) -> None:
    report.actions.append({"action": action, "kind": finding.kind, "document": finding.document,
                           "path": path or finding.path})
    log.info("reconcile.fix", action=action, kind=finding.kind, document=finding.document,
             path=path or finding.path)


# ---------------------------------------------------------------------------- periodic


def record_requeued(catalog: Catalog, report: Report, enqueued: list[str],
                    recovered: set[str]) -> None:
    """After ``fix``: ``enqueued``, the paths handed to new upload tasks (the rows reset,
    or every row of a re-created store), and ``recovered``, those recovery handed to a new
    task; the stuck rows among either count as fixed. The record for ``status`` is rewritten."""
    kind = "store_missing" if report.recreated else None
    for path in enqueued:
        report.actions.append({"action": "enqueue", "kind": kind, "document": None,
                               "path": path})
    handed = recovered | set(report.reset) | set(enqueued)
    for finding in report.findings["stuck_rows"]:
        if finding.path in handed:
            report.fixed["stuck_rows"] += 1
            _act(report, "recover", finding)
    catalog.set_meta(META_KEY, json.dumps(report.summary()))


def last_result(catalog: Catalog) -> dict | None:
    """The last reconcile's summary (``Report.summary()``), None if there was none."""
    return catalog.get_meta_json(META_KEY)


def due(settings: Settings, catalog: Catalog, now: float | None = None) -> bool:
    """Whether the periodic reconcile should run now (never when the setting is 0)."""
    every_s = settings.reconcile_every_minutes * 60.0
    if every_s <= 0:
        return False
    now = time.time() if now is None else now
    last = last_result(catalog)
    return last is None or now - float(last.get("at") or 0) >= every_s - _DUE_SLACK_S
