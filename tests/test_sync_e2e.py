"""Incremental sync end to end: edit, delete, rename, revert — each through scan + enqueue +
real huey_consumer processes, against the emulator over HTTP. Each ends with exactly one
document per current file version (the one the catalogue records), none for deleted files,
no removal left open, and a reconcile that finds nothing. (Plus one in-process test of a
race the workers could lose: a file deleted while it uploads is not imported.)"""

from __future__ import annotations

import hashlib
import signal
import time

import pytest

from objlib import pipeline, queue
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.scan import scan_library
from tests.support.catalogue import row_of
from tests.support.disk import write_library
from tests.support.store import converge, documents
from tests.support.waits import wait_for

FILES = 3


def sync(settings, library):
    """What a user runs after changing the library."""
    summary = scan_library(settings, library)
    queue.enqueue(settings)
    return summary


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture
def synced(settings, library, emulator, consumers):
    """FILES files indexed by a running consumer; the test goes on with it running."""
    write_library(library, FILES)
    sync(settings, library)
    consumer = consumers(workers=4)
    converge(settings, emulator)
    return consumer


NOTE = "Notes/note {:04d}.txt"


@pytest.mark.slow
def test_an_edited_file_is_indexed_anew_and_then_its_old_document_deleted(
        settings, library, emulator, synced):
    old = row_of(settings, NOTE.format(0))
    new_text = "the first note, rewritten\n" * 50
    (library / old.path).write_text(new_text, encoding="utf-8")

    assert sync(settings, library).changed == 1
    converge(settings, emulator)

    row = row_of(settings, old.path)
    assert row.version == old.version + 1 and row.document != old.document
    assert old.document not in documents(emulator)
    meta = documents(emulator)[row.document]["customMetadata"]
    assert meta["content_hash"] == sha256(new_text) and int(meta["objlib_version"]) == row.version
    # the old document was scheduled for removal only once the new one was indexed
    catalog = open_catalog(settings)
    removal = catalog.query("SELECT reason, requested_at, removed_at FROM removals "
                            "WHERE document=?", (old.document,))[0]
    catalog.close()
    assert removal["reason"] == "replaced"
    assert row.indexed_at <= removal["requested_at"] <= removal["removed_at"]


@pytest.mark.slow
def test_a_deleted_file_has_its_document_removed(settings, library, emulator, synced):
    gone = row_of(settings, NOTE.format(1))
    (library / gone.path).unlink()

    assert sync(settings, library).deleted == 1
    converge(settings, emulator)

    row = row_of(settings, gone.path)
    assert row.state == lc.DELETED and row.document is None
    assert gone.document not in documents(emulator)
    assert len(documents(emulator)) == FILES - 1


@pytest.mark.slow
def test_a_renamed_file_keeps_one_document_under_its_new_path(settings, library, emulator,
                                                              synced):
    before = row_of(settings, NOTE.format(2))
    (library / before.path).rename(library / "Notes" / "renamed note.txt")

    summary = sync(settings, library)
    assert summary.renamed == [(before.path, "Notes/renamed note.txt")]
    converge(settings, emulator)

    after = row_of(settings, "Notes/renamed note.txt")
    docs = documents(emulator)
    same_content = [d for d in docs.values()
                    if d["customMetadata"]["content_hash"] == before.content_hash]
    assert [d["name"] for d in same_content] == [after.document]
    assert same_content[0]["customMetadata"]["path"] == "Notes/renamed note.txt"
    assert before.document not in docs and row_of(settings, before.path).state == lc.DELETED


@pytest.mark.slow
def test_a_file_reverted_to_earlier_content_ends_with_one_document(settings, library, emulator,
                                                                   synced):
    path = library / NOTE.format(0)
    original = path.read_text(encoding="utf-8")
    # edited and indexed, then reverted
    path.write_text("an edit that will be undone\n" * 40, encoding="utf-8")
    sync(settings, library)
    converge(settings, emulator)
    path.write_text(original, encoding="utf-8")
    sync(settings, library)
    converge(settings, emulator)
    # edited and reverted again before the workers saw the edit
    path.write_text("an edit undone at once\n" * 40, encoding="utf-8")
    scan_library(settings, library)
    path.write_text(original, encoding="utf-8")
    sync(settings, library)
    converge(settings, emulator)

    row = row_of(settings, NOTE.format(0))
    assert row.version == 5 and row.content_hash == sha256(original)
    mine = [d for d in documents(emulator).values()
            if int(d["customMetadata"]["objlib_file_id"]) == row.id]
    assert [d["name"] for d in mine] == [row.document]
    assert int(mine[0]["customMetadata"]["objlib_version"]) == 5


@pytest.mark.slow
def test_a_removal_survives_a_lost_task_and_a_404_counts_as_gone(settings, library, emulator,
                                                                 synced, consumers):
    # Given a deleted file whose removal task was lost (the queue wiped, as by a crash)
    synced.stop(signal.SIGKILL)
    gone = row_of(settings, NOTE.format(1))
    (library / gone.path).unlink()
    sync(settings, library)
    queue.bind(settings).huey.flush()
    catalog = open_catalog(settings)
    assert [r.document for r in lc.open_removals(catalog)] == [gone.document]
    # and whose document has already left the store (the delete will answer 404)
    emulator.state.delete_document(gone.document, force=True)

    # When a consumer starts again (its start-up recovery re-sends open removals)
    consumers(workers=2)

    # Then the removal is closed: the store confirmed the document is gone
    wait_for(lambda: not lc.open_removals(catalog), 30, what="the removal to close")
    catalog.close()
    converge(settings, emulator)
    assert emulator.stats()["statuses"].get("404", 0) >= 1


def test_a_file_deleted_while_it_uploads_is_not_imported(settings, library, emulator):
    # Given a row whose upload is under way when a scan finds the file deleted
    write_library(library, 1)
    scan_library(settings, library)
    ctx = pipeline.build_context(settings)
    queue.ensure_store(settings, ctx.catalog, ctx.gemini)
    row = lc.by_path(ctx.catalog, NOTE.format(0))
    assert lc.mark_queued(ctx.catalog, row.id, row.version, "task-1", time.time())

    class DeletedDuringUpload:
        def __init__(self, client):
            self.client = client

        def upload_file(self, *args, **kwargs):
            uploaded = self.client.upload_file(*args, **kwargs)
            lc.mark_deleted(ctx.catalog, row.id, time.time())
            return uploaded

        def __getattr__(self, name):
            return getattr(self.client, name)

    ctx.gemini = DeletedDuringUpload(ctx.gemini)

    # When the upload step goes on
    started = pipeline.upload_and_import(ctx, row.id, row.version, "task-1")

    # Then no import is sent, so no document is left that no row records
    assert started is False
    assert "stores.importFile" not in emulator.stats()["requests"]
    assert documents(emulator) == {}
    ctx.catalog.close()
