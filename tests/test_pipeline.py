"""The worker steps in-process, against the emulator over HTTP with the real SDK: each remote
id is kept the moment it is known, stale tasks do nothing, a crash between importFile and
its answer makes no second document, and waiting is always a re-schedule, never a sleep."""

from __future__ import annotations

import collections
import time

import pytest

from objlib import pace, pipeline
from objlib.catalog import lifecycle as lc
from objlib.enqueue import ensure_store
from objlib.errors import StoreLost
from objlib.gemini import metadata as gm
from objlib.gemini.errors import Permanent, Unavailable
from objlib.scan import scan_library
from objlib.throttle import Deferred
from tests.support.catalogue import queued
from tests.support.disk import write_library


@pytest.fixture
def ctx(settings, library, emulator):
    write_library(library, 3)
    scan_library(settings, library)
    context = pipeline.build_context(settings)
    ensure_store(settings, context.catalog, context.gemini)
    yield context
    context.gemini.close()
    context.catalog.close()


def later(ctx, seconds: float) -> None:
    """Move the steps' clock on (polls wait a moment after importFile before looking)."""
    clock = ctx.clock
    ctx.clock = lambda: clock() + seconds


def test_upload_and_import_keeps_every_remote_id(ctx, emulator):
    row = queued(ctx)
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is True
    row = lc.get(ctx.catalog, row.id)
    assert row.state == "importing"
    assert row.remote_file.startswith("files/objlib-")
    assert row.operation.startswith(ctx.store + "/operations/")
    assert row.import_requested_at is not None and row.poll_deadline > time.time()


def test_a_stale_or_duplicate_task_does_nothing(ctx, emulator):
    row = queued(ctx, task_id="the-owner")
    assert pipeline.upload_and_import(ctx, row.id, row.version, "someone-else") is False
    assert pipeline.upload_and_import(ctx, row.id, row.version + 1, "the-owner") is False
    assert lc.get(ctx.catalog, row.id).state == "queued"
    assert emulator.stats()["requests"].get("upload.start", 0) == 0


class WorkerDied(BaseException):
    """Stands for a kill -9 right after importFile was sent: nothing catches it."""


def test_a_crash_after_importfile_was_sent_makes_no_second_document(ctx, emulator):
    row = queued(ctx)
    real_import = ctx.gemini.import_file

    def import_then_die(*args, **kwargs):
        real_import(*args, **kwargs)
        raise WorkerDied

    ctx.gemini.import_file = import_then_die
    with pytest.raises(WorkerDied):
        pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
    assert lc.get(ctx.catalog, row.id).state == "uploading"
    ctx.gemini.import_file = real_import
    # the resumed task finds the document the lost request created and follows it
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is True
    resumed = lc.get(ctx.catalog, row.id)
    assert resumed.state == "importing" and resumed.document and resumed.operation is None
    pipeline.poll_import(ctx, row.id, row.version, "task-1")
    assert lc.get(ctx.catalog, row.id).state == "indexed"
    assert emulator.stats()["requests"]["stores.importFile"] == 1


def test_a_file_changed_since_the_scan_stops_cleanly(ctx, library, emulator):
    row = queued(ctx)
    (library / row.path).write_text("new content", encoding="utf-8")
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is False
    row = lc.get(ctx.catalog, row.id)
    assert (row.state, row.error_class) == ("failed", "changed")
    assert "objlib scan" in row.error_message
    assert emulator.stats()["requests"].get("upload.start", 0) == 0


def test_a_file_vanished_since_the_scan_stops_cleanly(ctx, library, emulator):
    row = queued(ctx)
    (library / row.path).unlink()
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is False
    assert lc.get(ctx.catalog, row.id).error_class == "vanished"


def test_a_raw_file_still_processing_is_waited_for_by_rescheduling(ctx, emulator):
    emulator.configure(latency={"activate": 30.0})
    row = queued(ctx)
    started = time.monotonic()
    with pytest.raises(Deferred) as deferred:
        pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
    assert time.monotonic() - started < 5, "the step slept instead of re-scheduling"
    assert deferred.value.delay_s > 0
    held = lc.get(ctx.catalog, row.id)
    assert held.state == "uploading" and held.remote_file and held.lease_until > time.time()
    # when it comes back after the file became ACTIVE, no second upload happens
    emulator.state.advance(31)
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is True
    assert emulator.stats()["requests"]["upload.start"] == 1


def test_polling_reschedules_until_done_then_marks_indexed(ctx, emulator):
    emulator.configure(latency={"index": 30.0})
    row = queued(ctx)
    pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
    with pytest.raises(Deferred):  # just imported: not even asked yet
        pipeline.poll_import(ctx, row.id, row.version, "poll-1")
    assert emulator.stats()["requests"].get("operations.get", 0) == 0
    later(ctx, 2)
    with pytest.raises(Deferred):  # asked: not done
        pipeline.poll_import(ctx, row.id, row.version, "poll-1")
    assert emulator.stats()["requests"]["operations.get"] == 1
    emulator.state.advance(31)
    pipeline.poll_import(ctx, row.id, row.version, "poll-1")
    row = lc.get(ctx.catalog, row.id)
    assert row.state == "indexed" and row.document.startswith(ctx.store + "/documents/objlib-")


def test_an_operation_that_never_finishes_is_decided_by_its_document(ctx, emulator):
    emulator.configure(faults={"never_done": 1.0})
    row = queued(ctx)
    pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
    with pytest.raises(Deferred):
        pipeline.poll_import(ctx, row.id, row.version, "poll-1")
    ctx.clock = lambda: time.time() + ctx.settings.poll_timeout_s + 1  # past the deadline
    pipeline.poll_import(ctx, row.id, row.version, "poll-1")
    assert lc.get(ctx.catalog, row.id).state == "indexed"


def test_a_failed_indexing_fails_the_row_and_schedules_its_document_removal(ctx, emulator):
    emulator.configure(faults={"index_failed": 1.0})
    row = queued(ctx)
    pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
    later(ctx, 2)
    removals = pipeline.poll_import(ctx, row.id, row.version, "poll-1")
    row = lc.get(ctx.catalog, row.id)
    assert (row.state, row.error_class) == ("failed", "index_failed")
    assert len(removals) == 1
    pipeline.remove_document(ctx, removals[0], "remove-1")
    assert lc.open_removals(ctx.catalog) == []


def test_transient_errors_back_off_then_fail_with_class_and_attempts(ctx, emulator):
    emulator.configure(faults={"create_failed": 1.0})  # (a 503 pauses instead: test_pause.py)
    row = queued(ctx)
    delays = []
    for _ in range(ctx.settings.max_attempts - 1):
        with pytest.raises(Deferred) as d:
            pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
        delays.append(d.value.delay_s)
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is False
    row = lc.get(ctx.catalog, row.id)
    assert (row.state, row.error_class, row.attempts) == ("failed", "transient",
                                                          ctx.settings.max_attempts)
    assert "Failed to create file" in row.error_message
    assert delays[-1] > delays[0], "backoff did not grow"


def test_rate_limited_calls_are_deferred_without_spending_attempts(ctx, emulator):
    emulator.configure(faults={"rate_limit": 1.0})
    row = queued(ctx)
    for _ in range(3):
        with pytest.raises(Deferred):
            pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
    row = lc.get(ctx.catalog, row.id)
    assert (row.state, row.attempts, row.rate_limited) == ("uploading", 0, 3)


def test_a_permanent_error_fails_at_once(ctx, emulator):
    def refused(*args, **kwargs):
        raise Permanent("400 INVALID_ARGUMENT on import_file: bad metadata", code=400,
                        call="import_file")

    ctx.gemini.import_file = refused
    row = queued(ctx)
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is False
    row = lc.get(ctx.catalog, row.id)
    assert row.state == "failed" and row.error_class == "permanent"
    assert row.attempts == 0


def test_an_import_into_a_store_that_is_gone_fails_nothing_and_records_the_loss(ctx, emulator):
    store = ctx.store
    emulator.state.delete_store(store, force=True)
    row = queued(ctx)
    with pytest.raises(StoreLost, match="reconcile --fix"):
        pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
    row = lc.get(ctx.catalog, row.id)
    assert row.state == "uploading" and row.attempts == 0 and row.error_class is None
    assert ctx.catalog.get_meta("store_lost_at") is not None
    # every later step waits at once, without a request
    calls = sum(emulator.stats()["requests"].values())
    with pytest.raises(StoreLost):
        pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
    assert sum(emulator.stats()["requests"].values()) == calls


def test_an_import_the_api_refused_is_simply_sent_again_without_a_lookup(ctx, emulator):
    row = queued(ctx)
    real_import = ctx.gemini.import_file

    def import_answered_429(*args, **kwargs):
        emulator.configure(faults={"rate_limit": 1.0})  # the real emulator says 429
        try:
            return real_import(*args, **kwargs)
        finally:
            emulator.configure(faults={"rate_limit": 0.0})

    ctx.gemini.import_file = import_answered_429
    with pytest.raises(Deferred):
        pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
    # a refusal made no document: nothing to look for before importing again
    assert lc.get(ctx.catalog, row.id).import_requested_at is None
    ctx.gemini.import_file = real_import
    listed = emulator.stats()["requests"].get("documents.list", 0)
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is True
    assert emulator.stats()["requests"].get("documents.list", 0) == listed


def test_an_upload_answered_active_is_imported_in_the_same_run_on_one_prepayment(ctx, emulator):
    # Given a new file (the service answers a text upload ACTIVE at once)
    row = queued(ctx)
    booked = []
    acquire = ctx.throttle.acquire
    ctx.throttle.acquire = lambda holder, n, **kw: booked.append(n) or acquire(holder, n, **kw)
    # When its upload step runs once
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is True
    # Then it asked nothing before the upload, imported at once, and booked exactly the
    # requests it sent in one go
    sent = emulator.stats()["requests"]
    assert {k: sent[k] for k in ("upload.start", "upload.chunk", "stores.importFile")} == \
        {"upload.start": 1, "upload.chunk": 1, "stores.importFile": 1}
    assert "files.get" not in sent
    assert booked == [3] == [pipeline._expected_requests(ctx, row)]


def test_a_raw_file_already_uploaded_is_met_by_the_upload_and_reused(ctx, library, emulator):
    # Given the raw file of this content is there already (an earlier run's, or a twin's)
    row = queued(ctx)
    emulator.state.add_file(gm.raw_file_id(row.content_hash),
                            data=(library / row.path).read_bytes())
    # When the upload step runs
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is True
    # Then the upload's 409 said so, one files.get read its state, and no byte was sent again
    sent = emulator.stats()["requests"]
    assert (sent["upload.start"], sent["files.get"], sent.get("upload.chunk", 0)) == (1, 1, 0)
    assert lc.get(ctx.catalog, row.id).remote_file == "files/" + gm.raw_file_id(row.content_hash)


def test_overdue_imports_are_settled_together_by_one_store_listing(ctx, emulator):
    # Given three imports whose operations never report done (their documents turn ACTIVE)
    emulator.configure(faults={"never_done": 1.0})
    rows = [queued(ctx, file_id, f"task-{file_id}") for file_id in (1, 2, 3)]
    for row in rows:
        assert pipeline.upload_and_import(ctx, row.id, row.version, f"task-{row.id}")
    later(ctx, 2)
    for row in rows:
        with pytest.raises(Deferred):
            pipeline.poll_import(ctx, row.id, row.version, f"poll-{row.id}")
    # When the first poll finds its import overdue
    later(ctx, pace.OVERDUE_MIN_S)
    listed = emulator.stats()["requests"].get("documents.list", 0)
    assert pipeline.poll_import(ctx, 1, rows[0].version, "poll-1") == []
    # Then one listing of the store indexed all three, and the other polls ask nothing
    assert emulator.stats()["requests"]["documents.list"] == listed + 1
    assert {lc.get(ctx.catalog, row.id).state for row in rows} == {"indexed"}
    calls = emulator.stats()["total_requests"]
    for row in rows[1:]:
        assert pipeline.poll_import(ctx, row.id, row.version, f"poll-{row.id}") == []
    assert emulator.stats()["total_requests"] == calls


def test_polls_count_their_looks_and_only_a_first_look_teaches(ctx, emulator):
    emulator.configure(latency={"index": 30.0})
    row = queued(ctx)
    pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
    start = pace.expected_s(ctx.catalog, ctx.settings)
    later(ctx, start)
    with pytest.raises(Deferred):  # first look: not done, so imports take longer here
        pipeline.poll_import(ctx, row.id, row.version, "poll-1")
    learned = pace.expected_s(ctx.catalog, ctx.settings)
    assert learned > start and lc.get(ctx.catalog, row.id).polls == 1
    later(ctx, 5)
    with pytest.raises(Deferred):  # a later look: counted, teaches nothing
        pipeline.poll_import(ctx, row.id, row.version, "poll-1")
    assert pace.expected_s(ctx.catalog, ctx.settings) == learned
    assert lc.get(ctx.catalog, row.id).polls == 2


def test_a_step_re_run_soon_after_imports_without_asking_for_the_raw_file_again(ctx, emulator):
    # Given a file whose upload answered ACTIVE, and whose importFile then met a 429
    row = queued(ctx)
    ready = pipeline.upload(ctx, row.id, row.version, "task-1")
    assert isinstance(ready, pipeline.ImportReady)
    emulator.configure(faults={"rate_limit": 1.0})
    with pytest.raises(Deferred):
        pipeline.start_import(ctx, ready, "task-1")
    emulator.configure(faults={"rate_limit": 0.0})
    before = emulator.stats()["requests"]
    # When the same task runs again moments later
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is True
    # Then it imported at once: no files.get for a raw file this process just saw ACTIVE
    sent = collections.Counter(emulator.stats()["requests"])
    sent.subtract(before)
    assert +sent == {"stores.importFile": 1}
    assert lc.get(ctx.catalog, row.id).state == lc.IMPORTING


def test_a_poll_holds_the_row_for_this_process_and_spares_a_lease_it_already_holds(
        ctx, emulator):
    """While it looks, a poll's row is leased to its process for at least the grace: one
    leased to another process (its import sent there) is taken over; one this process holds
    for longer is left as it is (no write); either way recovery cannot take it meanwhile."""
    from objlib.recovery import process_owner

    emulator.configure(latency={"index": 30.0})
    ours, theirs = queued(ctx, 1, "task-1"), queued(ctx, 2, "task-2")
    for row in (ours, theirs):
        pipeline.upload_and_import(ctx, row.id, row.version, f"task-{row.id}")
    lc.hold(ctx.catalog, theirs.id, theirs.version, time.time() + 600, owner="elsewhere:1")
    before = {r.id: lc.get(ctx.catalog, r.id) for r in (ours, theirs)}
    later(ctx, 2)

    for row in (ours, theirs):
        with pytest.raises(Deferred):  # asked: not done
            pipeline.poll_import(ctx, row.id, row.version, f"poll-{row.id}")
        during = lc.get(ctx.catalog, row.id)
        assert during.lease_owner == process_owner() and during.polls == 1
    assert before[ours.id].lease_owner == process_owner()
    assert before[theirs.id].lease_owner == "elsewhere:1"


def test_an_import_that_met_a_429_is_sent_again_as_it_is_when_its_delay_is_over(ctx, emulator):
    # Given an upload whose importFile met a (scattered, bare) 429
    row = queued(ctx)
    ready = pipeline.upload(ctx, row.id, row.version, "task-1")
    emulator.configure(faults={"rate_limit": 1.0})
    with pytest.raises(Deferred) as deferred:
        pipeline.start_import(ctx, ready, "task-1")
    emulator.configure(faults={"rate_limit": 0.0})
    # Then the wait is one to send the request again (a lane thread may wait it out), with
    # objlib's own backoff since the 429 said nothing of when to come back
    assert deferred.value.resend and 0.5 <= deferred.value.delay_s <= 1.5
    assert lc.get(ctx.catalog, row.id).rate_limited == 1
    # When the same step runs again with the same ready
    before = emulator.stats()["requests"]
    assert pipeline.start_import(ctx, ready, "task-1") is True
    # Then it sent the import alone, and the row is importing
    sent = collections.Counter(emulator.stats()["requests"])
    sent.subtract(before)
    assert +sent == {"stores.importFile": 1}
    assert lc.get(ctx.catalog, row.id).state == lc.IMPORTING


def test_an_import_whose_raw_file_is_gone_goes_back_to_the_upload(ctx, emulator):
    row = queued(ctx)
    ready = pipeline.upload(ctx, row.id, row.version, "task-1")

    def raw_file_not_found(*args, **kwargs):  # expired or deleted meanwhile
        raise Permanent("404 NOT_FOUND on import_file: no such file", code=404,
                        call="import_file")

    ctx.gemini.import_file = raw_file_not_found
    with pytest.raises(Deferred) as deferred:
        pipeline.start_import(ctx, ready, "task-1")
    # not this import again (it would meet the 404 again): the step from its start
    assert not deferred.value.resend
    assert lc.get(ctx.catalog, row.id).remote_file is None


def test_an_import_of_a_raw_file_deleted_meanwhile_uploads_it_again(ctx, emulator):
    # Given an uploaded raw file that is deleted (or expires) before its import
    row = queued(ctx)
    ready = pipeline.upload(ctx, row.id, row.version, "task-1")
    assert ctx.gemini.delete_file(ready.raw_file)
    # When the import is sent, the service answers 403 (a missing raw file, as files.get)
    with pytest.raises(Deferred) as deferred:
        pipeline.start_import(ctx, ready, "task-1")
    # Then the step starts over from the upload, not the same import again, and no attempt
    # is lost to a permanent failure
    assert not deferred.value.resend
    after = lc.get(ctx.catalog, row.id)
    assert after.remote_file is None and after.state != lc.FAILED
    # and the step run again uploads the file anew and imports it
    again = pipeline.upload(ctx, row.id, row.version, "task-1")
    assert pipeline.start_import(ctx, again, "task-1") is True
    assert lc.get(ctx.catalog, row.id).state == lc.IMPORTING


def test_an_unanswered_import_is_not_sent_again_as_it_is(ctx, emulator):
    # Given an importFile whose answer never came (the request may have made a document)
    row = queued(ctx)
    ready = pipeline.upload(ctx, row.id, row.version, "task-1")
    real_import = ctx.gemini.import_file

    def answer_lost(*args, **kwargs):
        real_import(*args, **kwargs)
        raise Unavailable("connection failed on import_file: ReadError", call="import_file")

    ctx.gemini.import_file = answer_lost
    with pytest.raises(Deferred) as deferred:
        pipeline.start_import(ctx, ready, "task-1")
    # Then the wait is for the step from its start, which looks for that document first
    assert not deferred.value.resend
    assert lc.get(ctx.catalog, row.id).import_requested_at is not None
    ctx.gemini.import_file = real_import
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is True
    assert emulator.stats()["requests"]["stores.importFile"] == 1  # adopted, not repeated
