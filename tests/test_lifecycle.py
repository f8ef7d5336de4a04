"""The lifecycle: conditional transitions (the loser of a race changes nothing), a history row
for every state change, and documents that leave the store only after their successor."""

from __future__ import annotations

import pytest

from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog

T0 = 1_000_000.0


@pytest.fixture
def catalog(settings):
    cat = open_catalog(settings)
    yield cat
    cat.close()


def new_row(catalog, path="a.txt", content_hash="a" * 64) -> lc.FileRow:
    file_id = lc.record_new(catalog, path, size=1, mtime_ns=1, content_hash=content_hash,
                            metadata={}, quality="none", now=T0)
    return lc.get(catalog, file_id)


def indexed_row(catalog, document="stores/s/documents/d1", **kw) -> lc.FileRow:
    row = new_row(catalog, **kw)
    assert lc.mark_queued(catalog, row.id, row.version, "t1", T0)
    assert lc.claim(catalog, row.id, row.version, "t1", T0, 60, "host:1")
    assert lc.record_operation(catalog, row.id, row.version, "t1", "op", T0, T0 + 60, 60)
    assert lc.mark_indexed(catalog, row.id, row.version, document, T0)
    return lc.get(catalog, row.id)


def history(catalog, file_id):
    return [(r["from_state"], r["to_state"]) for r in catalog.query(
        "SELECT from_state, to_state FROM history WHERE file_id=? ORDER BY id", (file_id,))]


def test_every_state_change_leaves_a_history_row(catalog):
    row = indexed_row(catalog)
    assert history(catalog, row.id) == [(None, "pending"), ("pending", "queued"),
                                        ("queued", "uploading"), ("uploading", "importing"),
                                        ("importing", "indexed")]


def test_only_the_task_that_owns_a_row_can_claim_it(catalog):
    row = new_row(catalog)
    lc.mark_queued(catalog, row.id, row.version, "owner", T0)
    assert lc.claim(catalog, row.id, row.version, "intruder", T0, 60, "h:1") is None
    assert lc.claim(catalog, row.id, row.version + 1, "owner", T0, 60, "h:1") is None
    claimed = lc.claim(catalog, row.id, row.version, "owner", T0, 60, "h:1")
    assert claimed.state == "uploading" and claimed.lease_owner == "h:1"
    # the owner may resume its own claim (after a re-schedule); a duplicate may not
    assert lc.claim(catalog, row.id, row.version, "owner", T0 + 5, 60, "h:2") is not None
    assert lc.claim(catalog, row.id, row.version, "intruder", T0 + 5, 60, "h:2") is None


def test_enqueueing_a_row_twice_wins_once(catalog):
    row = new_row(catalog)
    assert lc.mark_queued(catalog, row.id, row.version, "first", T0) is True
    assert lc.mark_queued(catalog, row.id, row.version, "second", T0) is False
    assert lc.get(catalog, row.id).task_id == "first"


def test_a_changed_file_keeps_its_old_document_until_the_new_version_is_indexed(catalog):
    row = indexed_row(catalog, document="old-doc")
    lc.record_changed(catalog, row.id, size=2, mtime_ns=2, content_hash="b" * 64, metadata={},
                      quality="none", now=T0 + 1)
    changed = lc.get(catalog, row.id)
    assert (changed.state, changed.version, changed.previous_document) == ("pending", 2, "old-doc")
    assert lc.open_removals(catalog) == []
    lc.mark_queued(catalog, row.id, 2, "t2", T0 + 2)
    lc.claim(catalog, row.id, 2, "t2", T0 + 2, 60, "h:1")
    lc.record_operation(catalog, row.id, 2, "t2", "op2", T0 + 2, T0 + 60, 60)
    lc.mark_indexed(catalog, row.id, 2, "new-doc", T0 + 3)
    assert [r.document for r in lc.open_removals(catalog)] == ["old-doc"]
    assert [r.document for r in lc.open_removals(catalog, row.id)] == ["old-doc"]
    assert lc.open_removals(catalog, row.id + 1) == []
    assert lc.get(catalog, row.id).previous_document is None


def test_a_deleted_file_that_reappears_unchanged_is_indexed_again_without_upload(catalog):
    row = indexed_row(catalog, document="doc")
    lc.mark_deleted(catalog, row.id, T0 + 1)
    assert [r.document for r in lc.open_removals(catalog)] == ["doc"]
    assert lc.restore(catalog, row.id, T0 + 2) == "indexed"
    assert lc.open_removals(catalog) == []


def test_a_file_deleted_before_it_was_indexed_reappears_as_pending(catalog):
    row = new_row(catalog)
    lc.mark_deleted(catalog, row.id, T0 + 1)
    assert lc.restore(catalog, row.id, T0 + 2) == "pending"


def test_a_removed_document_is_not_restored(catalog):
    row = indexed_row(catalog, document="doc")
    lc.mark_deleted(catalog, row.id, T0 + 1)
    removal = lc.open_removals(catalog)[0]
    assert lc.mark_removed(catalog, removal.id, T0 + 2)
    assert lc.restore(catalog, row.id, T0 + 3) == "pending"


def test_requeue_is_optimistic_and_loses_to_a_worker_that_moved_first(catalog):
    row = new_row(catalog)
    lc.mark_queued(catalog, row.id, row.version, "lost-task", T0)
    seen_by_recovery = lc.get(catalog, row.id)
    # a worker claims the row between recovery's read and its write
    lc.claim(catalog, row.id, row.version, "lost-task", T0 + 1, 60, "h:1")
    assert lc.requeue(catalog, seen_by_recovery, "new-task", T0 + 2, "stuck") is False
    assert lc.get(catalog, row.id).task_id == "lost-task"


def test_retry_failed_puts_failed_rows_back_with_attempts_forgotten(catalog):
    row = new_row(catalog)
    lc.mark_queued(catalog, row.id, row.version, "t", T0)
    lc.claim(catalog, row.id, row.version, "t", T0, 60, "h:1")
    assert lc.record_attempt(catalog, row.id, row.version, "transient", "503", T0) == 1
    lc.mark_failed(catalog, row.id, row.version, "transient", "503 again", T0)
    assert lc.retry_failed(catalog, T0 + 1) == 1
    again = lc.get(catalog, row.id)
    assert (again.state, again.attempts, again.error_class) == ("pending", 0, None)
    classes = [r[0] for r in catalog.query("SELECT error_class FROM errors")]
    assert classes == ["transient", "transient"]


# ------------------------------------------------ found by the state machine (issue 18)


def importing_row(catalog, task="t1") -> lc.FileRow:
    row = new_row(catalog)
    assert lc.mark_queued(catalog, row.id, row.version, task, T0)
    assert lc.claim(catalog, row.id, row.version, task, T0, 60, "host:1")
    assert lc.record_import_requested(catalog, row.id, row.version, task, T0)
    assert lc.record_operation(catalog, row.id, row.version, task, "op", T0, T0 + 60, 60)
    return lc.get(catalog, row.id)


def test_a_failed_versions_known_document_is_removed_with_the_failure(catalog):
    # Given an import whose document is known but still processing at the deadline
    row = importing_row(catalog)
    assert lc.record_document(catalog, row.id, row.version, "stores/s/documents/late")
    # When the row fails, and is retried and indexed with another document
    assert lc.mark_failed(catalog, row.id, row.version, "timeout", "still processing", T0 + 1)
    # Then the failed version's document is scheduled for removal in that same step (it used
    # to stay on the row until the retry's import overwrote the name: left in the store)
    assert [r.document for r in lc.open_removals(catalog)] == ["stores/s/documents/late"]
    failed = lc.get(catalog, row.id)
    assert (failed.document, failed.import_requested_at) == (None, None)
    assert lc.retry_failed(catalog, T0 + 2) == 1
    assert lc.get(catalog, row.id).document is None


def test_a_retried_row_still_looks_for_the_document_of_an_import_it_sent(catalog):
    # Given importFile sent, its answer lost, and the row failed before the document was seen
    row = new_row(catalog)
    assert lc.mark_queued(catalog, row.id, row.version, "t1", T0)
    assert lc.claim(catalog, row.id, row.version, "t1", T0, 60, "host:1")
    assert lc.record_import_requested(catalog, row.id, row.version, "t1", T0)
    assert lc.mark_failed(catalog, row.id, row.version, "transient", "timeouts", T0 + 1)
    # When it is retried
    assert lc.retry_failed(catalog, T0 + 2) == 1
    # Then the retry knows an import was sent (the upload step adopts its document rather
    # than importing a second one); retry_failed used to forget it
    assert lc.get(catalog, row.id).import_requested_at == T0


def test_a_requeued_row_whose_import_was_sent_keeps_that_import_when_its_content_changes(
        catalog):
    # Given importFile sent, then the task lost and the row re-queued under a new task
    row = new_row(catalog)
    assert lc.mark_queued(catalog, row.id, row.version, "t1", T0)
    claimed = lc.claim(catalog, row.id, row.version, "t1", T0, 60, "host:1")
    assert lc.record_import_requested(catalog, row.id, row.version, "t1", T0)
    assert lc.requeue(catalog, lc.get(catalog, row.id), "t2", T0 + 1, "task lost")
    assert lc.get(catalog, row.id).state == "queued"
    # When the file changes
    assert lc.record_changed(catalog, row.id, size=2, mtime_ns=2, content_hash="b" * 64,
                             metadata={}, quality="none", now=T0 + 2)
    # Then that import is kept in superseded, so its document is removed once found (only
    # uploading rows used to count, so a re-queued row's import was forgotten)
    assert [(s.file_id, s.version) for s in lc.open_superseded(catalog)] == [
        (claimed.id, claimed.version)]


def test_requeue_recovers_only_rows_in_flight(catalog):
    pending = new_row(catalog)
    assert not lc.requeue(catalog, pending, "t9", T0, "task lost")
    assert lc.get(catalog, pending.id).state == "pending"
    # an uploading row needs a new task to go back to the queue
    row = new_row(catalog, path="b.txt")
    assert lc.mark_queued(catalog, row.id, row.version, "t1", T0)
    uploading = lc.claim(catalog, row.id, row.version, "t1", T0, 60, "host:1")
    assert not lc.requeue(catalog, uploading, None, T0 + 1, "task lost")
    assert lc.get(catalog, row.id).task_id == "t1"


def test_a_file_deleted_while_skipped_is_not_restored_as_pending_without_content(catalog):
    file_id = lc.record_skipped(catalog, "empty.txt", size=0, mtime_ns=1, reason="empty",
                                now=T0)
    assert lc.mark_deleted(catalog, file_id, T0 + 1)
    assert lc.restore(catalog, file_id, T0 + 2) is None
    assert lc.get(catalog, file_id).state == "deleted"
