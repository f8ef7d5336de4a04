"""Edits and deletions while a file's import is in flight: the old version's document is
removed as soon as it is known, without a reconcile. In-process steps against the emulator
over HTTP (the clock passed in), then real consumers with imports that take a while."""

from __future__ import annotations

import time

import pytest

from objlib import pipeline, tasks
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.enqueue import enqueue, ensure_store
from objlib.scan import scan_library
from objlib.throttle import Deferred
from tests.support.disk import write_library
from tests.support.store import documents, unsettled
from tests.support.waits import wait_for

NOTE = "Notes/note {:04d}.txt"
FIRST_NOTE = NOTE.format(0)


@pytest.fixture
def ctx(settings, library, emulator):
    write_library(library, 2)
    scan_library(settings, library)
    context = pipeline.build_context(settings)
    ensure_store(settings, context.catalog, context.gemini)
    yield context
    context.gemini.close()
    context.catalog.close()


def importing(ctx, path=FIRST_NOTE) -> lc.FileRow:
    """The row's import sent and answered (its operation known, not done yet)."""
    row = lc.by_path(ctx.catalog, path)
    assert lc.mark_queued(ctx.catalog, row.id, row.version, "task-1", time.time())
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is True
    row = lc.get(ctx.catalog, row.id)
    assert row.state == lc.IMPORTING and row.operation
    return row


def later(ctx, seconds: float) -> None:
    clock = ctx.clock
    ctx.clock = lambda: clock() + seconds


def poll_until_settled(ctx, emulator, row: lc.FileRow, task_id="task-1") -> list[int]:
    """Run the old version's poll (as its chained task would) until it stops deferring; both
    clocks (ours and the emulator's) move on between two runs."""
    for _ in range(50):
        try:
            return pipeline.poll_import(ctx, row.id, row.version, task_id)
        except Deferred:
            later(ctx, 5)
            emulator.state.advance(5)
    pytest.fail("the superseded import never settled")


def test_an_edit_during_the_import_removes_the_old_versions_document_once_known(
        ctx, library, emulator):
    emulator.configure(latency={"index": 0.5})
    old = importing(ctx)
    (library / old.path).write_text("rewritten while its import ran\n" * 30, encoding="utf-8")
    scan_library(ctx.settings, library)

    entry = lc.superseded_of(ctx.catalog, old.id, old.version)
    assert entry is not None and entry.operation == old.operation
    removals = poll_until_settled(ctx, emulator, old)

    # the document the old import made is the removal, and the new version is untouched
    assert len(removals) == 1
    removal = lc.get_removal(ctx.catalog, removals[0])
    assert removal.reason == "superseded in flight"
    assert int(documents(emulator)[removal.document]["customMetadata"]["objlib_version"]) == \
        old.version
    pipeline.remove_document(ctx, removal.id, "task-2")
    assert documents(emulator) == {}
    assert lc.superseded_of(ctx.catalog, old.id, old.version) is None
    assert lc.get(ctx.catalog, old.id).state == lc.PENDING


def test_a_deletion_during_the_import_removes_its_document(ctx, library, emulator):
    emulator.configure(latency={"index": 0.5})
    old = importing(ctx)
    (library / old.path).unlink()
    scan_library(ctx.settings, library)

    removals = poll_until_settled(ctx, emulator, old)

    assert [lc.get_removal(ctx.catalog, r).reason for r in removals] == ["superseded in flight"]
    assert lc.get(ctx.catalog, old.id).state == lc.DELETED


def test_an_edit_while_import_file_is_answered_keeps_the_operation_for_the_poll(
        ctx, library, emulator):
    row = lc.by_path(ctx.catalog, NOTE.format(0))
    assert lc.mark_queued(ctx.catalog, row.id, row.version, "task-1", time.time())
    real_import = ctx.gemini.import_file

    def import_then_edit(*args, **kwargs):
        operation = real_import(*args, **kwargs)
        (library / row.path).write_text("edited as the import was answered\n" * 30,
                                        encoding="utf-8")
        scan_library(ctx.settings, library)
        return operation

    ctx.gemini.import_file = import_then_edit
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is True

    entry = lc.superseded_of(ctx.catalog, row.id, row.version)
    assert entry is not None and entry.operation  # learnt after the row moved on
    removals = poll_until_settled(ctx, emulator, row)
    assert len(removals) == 1


def test_an_import_whose_answer_was_lost_is_found_in_the_store_list(ctx, library, emulator):
    row = lc.by_path(ctx.catalog, NOTE.format(0))
    assert lc.mark_queued(ctx.catalog, row.id, row.version, "task-1", time.time())
    real_import = ctx.gemini.import_file

    class WorkerDied(BaseException):
        pass

    def import_then_die(*args, **kwargs):
        real_import(*args, **kwargs)
        raise WorkerDied  # importFile reached the API; its answer never reached the row

    ctx.gemini.import_file = import_then_die
    with pytest.raises(WorkerDied):
        pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
    ctx.gemini.import_file = real_import
    (library / row.path).write_text("edited after the worker died\n" * 30, encoding="utf-8")
    scan_library(ctx.settings, library)
    entry = lc.superseded_of(ctx.catalog, row.id, row.version)
    assert entry is not None and entry.operation is None

    # the operation may still be recorded for a while: no listing yet
    with pytest.raises(Deferred):
        pipeline.settle_superseded(ctx, entry.id, "settle-1")
    assert emulator.stats()["requests"].get("documents.list", 0) == 1  # ensure_store's only
    later(ctx, pipeline.UNANSWERED_IMPORT_WAIT_S)
    removals = pipeline.settle_superseded(ctx, entry.id, "settle-1")

    assert len(removals) == 1
    document = lc.get_removal(ctx.catalog, removals[0]).document
    assert int(documents(emulator)[document]["customMetadata"]["objlib_version"]) == row.version


def test_recovery_sends_a_settle_task_for_a_superseded_import_nobody_follows(
        ctx, library, emulator):
    old = importing(ctx)
    (library / old.path).unlink()
    scan_library(ctx.settings, library)
    entry = lc.superseded_of(ctx.catalog, old.id, old.version)

    summary = tasks.recover(ctx.settings, ctx.catalog)  # the chained poll was lost

    assert summary.superseded == 1
    live = tasks.queue_for(ctx.settings).live_tasks()
    assert entry.id in live.settles
    assert tasks.recover(ctx.settings, ctx.catalog).superseded == 0  # once is enough


@pytest.mark.slow
def test_edits_and_deletions_during_imports_leave_no_stale_document_without_reconcile(
        settings, library, emulator, consumers):
    # Given imports that take a while, and files edited or deleted while they run
    emulator.configure(latency={"index": 2.0})
    paths = write_library(library, 30)
    scan_library(settings, library)
    enqueue(settings)
    consumers(workers=7)
    catalog = open_catalog(settings)
    wait_for(lambda: catalog.query("SELECT COUNT(*) FROM files WHERE state=?",
                                   (lc.IMPORTING,))[0][0] >= 20, 60, 0.05,
             "imports in flight")
    for i, path in enumerate(paths[:25]):
        if i < 5:
            path.unlink()
        else:
            path.write_text(f"note {i}, edited while its import ran\n" * 20, encoding="utf-8")
    summary = scan_library(settings, library)
    enqueue(settings)
    assert summary.changed == 20 and summary.deleted == 5

    # Then the store converges to one document per current file, with no reconcile run
    wait_for(lambda: not unsettled(settings, emulator), 120, 0.2,
             "the store to match the catalogue")
    assert not lc.open_superseded(catalog)
    settled = catalog.query("SELECT outcome, COUNT(*) FROM superseded GROUP BY outcome")
    catalog.close()
    assert sum(r[1] for r in settled) >= 20
    report = tasks.reconcile(settings)
    assert report.drift == 0, report.to_dict()
