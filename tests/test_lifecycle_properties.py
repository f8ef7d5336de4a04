"""The lifecycle as a state machine (hypothesis): every transition of
``objlib.catalog.lifecycle``, called in any order, on time or stale (an old version, another
task's id), against a model of the store's side (which imports were sent, which documents
they made, which were deleted). After every step the invariants of ``DESIGN.md`` that the
catalogue alone must keep are checked:

- a stale or duplicate call changes nothing (invariant 2: conditional transitions);
- every row in flight can be resumed from what it records (invariant 1): a queued or
  uploading row has its task, an importing one its operation or document;
- every state change has its history row, and the last one is the row's state;
- one document per file version (invariant 6): no document is current for two rows, none a
  row relies on (current, or the replaced one kept until its successor is indexed) is
  scheduled for removal, and every document an import made is accounted for — a row names
  it, its removal is open, or the import is still the row's own (in flight) or kept in
  ``superseded`` — so nothing is left in the store that only ``reconcile`` could find.

The profiles (``ci``, ``deep``) are in ``tests/conftest.py``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.settings import Settings

PATHS = ["a.txt", "b.txt", "c.txt"]
LEASE_S = 60.0
STALENESS = st.sampled_from(["current", "current", "current", "old version", "other task"])


class LifecycleMachine(RuleBasedStateMachine):

    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="lifecycle-prop-"))
        self.catalog = open_catalog(Settings.load(self.dir))
        self.now = 1_000_000.0
        self.tasks = 0
        self.hashes = 0
        self.store: set[str] = set()  # documents this catalogue's imports made, not deleted
        self.made: dict[tuple[int, int], str] = {}  # (file id, version) -> its document
        self.sent: set[tuple[int, int]] = set()  # imports sent whose document may come

    def teardown(self):
        self.catalog.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ helpers

    def tick(self) -> float:
        self.now += 1.0
        return self.now

    def new_task(self) -> str:
        self.tasks += 1
        return f"task-{self.tasks}"

    def new_hash(self) -> str:
        self.hashes += 1
        return f"{self.hashes:064x}"

    def ids(self) -> list[int]:
        return [r["id"] for r in self.catalog.query("SELECT id FROM files ORDER BY id")]

    def pick(self, data) -> lc.FileRow:
        return lc.get(self.catalog, data.draw(st.sampled_from(self.ids()), label="file id"))

    def snapshot(self, file_id: int):
        return (dict(self.catalog.query("SELECT * FROM files WHERE id=?", (file_id,))[0]),
                self.catalog.query("SELECT count(*) FROM history")[0][0],
                self.catalog.query("SELECT count(*) FROM removals")[0][0])

    def args(self, row: lc.FileRow, staleness: str) -> tuple[int, str | None]:
        """(version, task id) as a current, an old or a duplicate caller would pass them."""
        if staleness == "old version":
            return row.version - 1, row.task_id
        if staleness == "other task":
            return row.version, "task-intruder"
        return row.version, row.task_id

    def stale_call_changes_nothing(self, row: lc.FileRow, staleness: str, call) -> bool:
        """Run ``call``; a stale one must lose and leave the catalogue as it was."""
        if staleness == "current":
            return bool(call())
        before = self.snapshot(row.id)
        won = call()
        assert not won, f"a caller with {staleness} won"
        assert self.snapshot(row.id) == before, f"a caller with {staleness} changed the row"
        return False

    def document_of(self, row: lc.FileRow) -> str:
        """The store makes the document of this version's import (once)."""
        key = (row.id, row.version)
        if key not in self.made:
            self.made[key] = f"fileSearchStores/s/documents/f{row.id}-v{row.version}"
            self.store.add(self.made[key])
            self.sent.discard(key)
        return self.made[key]

    # ------------------------------------------------------------------ the scan

    @rule(path=st.sampled_from(PATHS))
    def new_file(self, path):
        if lc.by_path(self.catalog, path) is None:
            lc.record_new(self.catalog, path, size=1, mtime_ns=1, content_hash=self.new_hash(),
                          metadata={}, quality="none", now=self.tick())

    @rule(path=st.sampled_from(PATHS))
    def not_eligible(self, path):
        lc.record_skipped(self.catalog, path, size=0, mtime_ns=2, reason="empty",
                          now=self.tick())

    @precondition(lambda self: self.ids())
    @rule(data=st.data())
    def content_changed(self, data):
        row = self.pick(data)
        lc.record_changed(self.catalog, row.id, size=2, mtime_ns=3,
                          content_hash=self.new_hash(), metadata={}, quality="none",
                          now=self.tick())

    @precondition(lambda self: self.ids())
    @rule(data=st.data())
    def gone_from_disk(self, data):
        lc.mark_deleted(self.catalog, self.pick(data).id, self.tick())

    @precondition(lambda self: self.ids())
    @rule(data=st.data())
    def reappeared(self, data):
        lc.restore(self.catalog, self.pick(data).id, self.tick())

    # ------------------------------------------------------------------ the queue and tasks

    @precondition(lambda self: self.ids())
    @rule(data=st.data(), staleness=STALENESS)
    def enqueue(self, data, staleness):
        row = self.pick(data)
        version, _ = self.args(row, staleness)
        task = self.new_task()
        self.stale_call_changes_nothing(
            row, "old version" if staleness == "old version" else "current",
            lambda: lc.mark_queued(self.catalog, row.id, version, task, self.tick()))

    @precondition(lambda self: self.ids())
    @rule(data=st.data(), staleness=STALENESS)
    def claim(self, data, staleness):
        row = self.pick(data)
        version, task = self.args(row, staleness)
        self.stale_call_changes_nothing(
            row, staleness, lambda: lc.claim(self.catalog, row.id, version, task or "none",
                                             self.tick(), LEASE_S, "host:1"))

    @precondition(lambda self: self.ids())
    @rule(data=st.data(), staleness=STALENESS)
    def raw_file_uploaded(self, data, staleness):
        row = self.pick(data)
        version, task = self.args(row, staleness)
        self.stale_call_changes_nothing(
            row, staleness, lambda: lc.record_remote_file(self.catalog, row.id, version,
                                                          task or "none", f"files/r{row.id}"))

    @precondition(lambda self: self.ids())
    @rule(data=st.data(), staleness=STALENESS)
    def import_sent(self, data, staleness):
        row = self.pick(data)
        version, task = self.args(row, staleness)
        if self.stale_call_changes_nothing(
                row, staleness, lambda: lc.record_import_requested(
                    self.catalog, row.id, version, task or "none", self.tick())):
            self.sent.add((row.id, row.version))

    @precondition(lambda self: self.ids())
    @rule(data=st.data())
    def import_refused(self, data):
        """importFile answered an error: it made nothing."""
        row = self.pick(data)
        if (row.id, row.version) in self.made:
            return  # it did make one: no error answer for it
        if lc.clear_import_requested(self.catalog, row.id, row.version, row.task_id or "none"):
            self.sent.discard((row.id, row.version))

    @precondition(lambda self: self.ids())
    @rule(data=st.data(), staleness=STALENESS, document_known=st.booleans())
    def import_answered(self, data, staleness, document_known):
        """importFile answered with its operation (or, after a crash, its document was
        found instead)."""
        row = self.pick(data)
        version, task = self.args(row, staleness)
        if staleness == "current" and row.state == lc.UPLOADING:
            self.sent.add((row.id, row.version))
        document = self.document_of(row) if document_known and staleness == "current" \
            and row.state == lc.UPLOADING else None
        self.stale_call_changes_nothing(
            row, staleness, lambda: lc.record_operation(
                self.catalog, row.id, version, task or "none",
                None if document else f"operations/o{row.id}-{row.version}", self.tick(),
                self.now + 600, LEASE_S, document=document))

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def store_makes_a_document(self, data):
        """An import that was sent makes its document (the catalogue learns it later, or
        never if nobody asks)."""
        file_id, version = data.draw(st.sampled_from(sorted(self.sent)))
        self.made[(file_id, version)] = f"fileSearchStores/s/documents/f{file_id}-v{version}"
        self.store.add(self.made[(file_id, version)])
        self.sent.discard((file_id, version))

    @precondition(lambda self: self.ids())
    @rule(data=st.data())
    def document_learned(self, data):
        row = self.pick(data)
        if (row.id, row.version) in self.made:
            lc.record_document(self.catalog, row.id, row.version, self.made[(row.id,
                                                                             row.version)])

    @precondition(lambda self: self.ids())
    @rule(data=st.data(), staleness=STALENESS)
    def indexed(self, data, staleness):
        row = self.pick(data)
        key = (row.id, row.version)
        if staleness == "current" and key not in self.made:
            return  # nothing is indexed before its document exists
        version, _ = self.args(row, staleness)
        document = self.made.get(key, "fileSearchStores/s/documents/never")
        self.stale_call_changes_nothing(
            row, "old version" if staleness == "old version" else "current",
            lambda: lc.mark_indexed(self.catalog, row.id, version, document, self.tick()))

    @precondition(lambda self: self.ids())
    @rule(data=st.data(), staleness=STALENESS)
    def failed(self, data, staleness):
        """A step failed for good: index_failed (its document, if any, is known and FAILED),
        timeout (no document found, or still processing), permanent errors."""
        row = self.pick(data)
        key = (row.id, row.version)
        version, _ = self.args(row, staleness)
        if staleness == "current" and key in self.made and row.document != self.made[key]:
            lc.record_document(self.catalog, row.id, row.version, self.made[key])
        self.stale_call_changes_nothing(
            row, "old version" if staleness == "old version" else "current",
            lambda: lc.mark_failed(self.catalog, row.id, version, "timeout", "no answer",
                                   self.tick()))

    @rule()
    def retry_failed(self):
        lc.retry_failed(self.catalog, self.tick())

    @precondition(lambda self: self.ids())
    @rule(data=st.data(), requeue_as=st.sampled_from(["new task", "no task"]))
    def task_lost(self, data, requeue_as):
        row = self.pick(data)
        lc.requeue(self.catalog, row, self.new_task() if requeue_as == "new task" else None,
                   self.tick(), "task lost")

    @precondition(lambda self: self.ids())
    @rule(data=st.data())
    def retryable_error(self, data):
        row = self.pick(data)
        lc.record_attempt(self.catalog, row.id, row.version, "transient", "503", self.tick())
        lc.record_pause(self.catalog, row.id, row.version, "unavailable", "away", self.tick(),
                        60.0)
        lc.hold(self.catalog, row.id, row.version, self.now + 30)
        lc.record_look(self.catalog, row.id, row.version, self.now + 30)

    # ------------------------------------------------------------------ reconcile, removals

    @precondition(lambda self: self.ids())
    @rule(data=st.data())
    def reconcile_resets(self, data):
        """reconcile found a row's document missing (or failed: it then deletes it)."""
        row = self.pick(data)
        if row.document and lc.reset_to_pending(self.catalog, row.id, row.version,
                                                self.tick(), "reconcile",
                                                from_states=lc.ELIGIBLE):
            self.store.discard(row.document)

    @rule()
    def store_lost(self):
        lc.restart_all(self.catalog, self.tick(), "store lost")
        self.store.clear()
        self.sent.clear()
        self.made.clear()

    @precondition(lambda self: lc.open_removals(self.catalog))
    @rule(data=st.data(), succeeds=st.booleans())
    def removal_runs(self, data, succeeds):
        removal = data.draw(st.sampled_from(lc.open_removals(self.catalog)))
        if succeeds:
            self.store.discard(removal.document)
            lc.mark_removed(self.catalog, removal.id, self.tick())
        else:
            lc.record_removal_error(self.catalog, removal.id, "transient", "503", self.tick())

    @precondition(lambda self: lc.open_superseded(self.catalog))
    @rule(data=st.data())
    def superseded_settles(self, data):
        entry = data.draw(st.sampled_from(lc.open_superseded(self.catalog)))
        key = (entry.file_id, entry.version)
        if key in self.sent:
            lc.record_superseded_operation(self.catalog, *key, f"operations/o{key}")
            return  # not done yet
        document = self.made.get(key)
        lc.settle_superseded(self.catalog, entry.id, "done" if document else "no document",
                             self.tick(), document=document)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def rows_are_resumable_and_consistent(self):
        for r in map(lc.FileRow.from_row, self.catalog.query("SELECT * FROM files")):
            assert r.state in lc.STATES
            last = self.catalog.query("SELECT to_state, version FROM history WHERE file_id=? "
                                      "ORDER BY id DESC LIMIT 1", (r.id,))[0]
            assert (last["to_state"], last["version"]) == (r.state, r.version), r
            if r.state in (lc.QUEUED, lc.UPLOADING):
                assert r.task_id, f"{r.state} row {r.path} has no task"
            if r.state == lc.IMPORTING:
                assert r.operation or r.document, f"importing row {r.path} cannot be resumed"
            if r.state == lc.INDEXED:
                assert r.document
            if r.state == lc.FAILED:
                assert r.error_class
            if r.state == lc.SKIPPED:
                assert r.skip_reason and r.content_hash is None and r.document is None
            elif r.state != lc.DELETED:
                assert r.content_hash

    @invariant()
    def documents_rows_rely_on_are_never_removed(self):
        rows = [lc.FileRow.from_row(r) for r in self.catalog.query("SELECT * FROM files")]
        live = [r for r in rows if r.state != lc.DELETED]
        current = [r.document for r in live if r.document]
        assert len(current) == len(set(current)), "a document is current for two rows"
        removing = {rm.document for rm in lc.open_removals(self.catalog)}
        for r in live:
            assert r.document not in removing, f"{r.path}'s current document is being removed"
            assert r.previous_document not in removing or r.previous_document is None, \
                f"{r.path}'s replaced document is removed before its successor is indexed"

    @invariant()
    def every_document_made_is_accounted_for(self):
        rows = {r["id"]: lc.FileRow.from_row(r)
                for r in self.catalog.query("SELECT * FROM files")}
        named = {d for r in rows.values() for d in (r.document, r.previous_document) if d}
        removing = {rm.document for rm in lc.open_removals(self.catalog)}
        superseded = {(s.file_id, s.version) for s in lc.open_superseded(self.catalog)}
        for (file_id, version), document in self.made.items():
            if document not in self.store:
                continue
            row = rows.get(file_id)
            # the row's own import, still to be looked for (resumed, or retried)
            in_flight = row is not None and row.version == version and (
                row.state == lc.IMPORTING or row.import_requested_at is not None)
            note(f"{document}: named={document in named} removing={document in removing}")
            assert (document in named or document in removing or in_flight
                    or (file_id, version) in superseded), (
                f"{document} is in the store but the catalogue lost track of it (row: "
                f"{row and (row.state, row.version, row.document)})")


TestLifecycle = LifecycleMachine.TestCase
