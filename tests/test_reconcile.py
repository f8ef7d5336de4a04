"""`objlib reconcile`: the catalogue against the store's real document list.

Given a library indexed through the real pipeline (the real SDK over HTTP against the
emulator, run in this process), drift is planted directly in the emulator and in the
catalogue; reconcile must report each kind exactly, and ``--fix`` must leave none of them
while every correct document stays, under the same name."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from click.testing import CliRunner

from objlib import pipeline, tasks
from objlib import reconcile as rc
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.cli import cli
from objlib.enqueue import ensure_store
from objlib.gemini import metadata as gm
from objlib.scan import scan_library
from objlib.settings import Settings
from objlib.throttle import Deferred
from tests.support.disk import write_library
from tests.support.store import documents

FILES = 6


# ---------------------------------------------------------------------------- helpers


def run_pipeline(settings) -> None:
    """What the workers would do, in this process: every pending or queued row is uploaded,
    imported and polled to the end; every open removal is sent."""
    # the first poll may look at once (the instant emulator finishes imports at once)
    ctx = pipeline.build_context(dataclasses.replace(settings, poll_first_delay_s=0.0))
    cat = ctx.catalog
    for row in cat.query("SELECT id, version, state, task_id FROM files WHERE state IN (?, ?)",
                         (lc.PENDING, lc.QUEUED)):
        task_id = row["task_id"] or f"test-{row['id']}-{row['version']}"
        if row["state"] == lc.PENDING:
            assert lc.mark_queued(cat, row["id"], row["version"], task_id, time.time())
        assert pipeline.upload_and_import(ctx, row["id"], row["version"], task_id)
        for _ in range(100):
            try:
                pipeline.poll_import(ctx, row["id"], row["version"], task_id)
                break
            except Deferred:
                time.sleep(0.02)
    for removal in lc.open_removals(cat):
        pipeline.remove_document(ctx, removal.id, "test-removal")
    cat.close()


def rows_by_path(settings) -> dict[str, lc.FileRow]:
    catalog = open_catalog(settings)
    try:
        return {r["path"]: lc.get(catalog, r["id"])
                for r in catalog.query("SELECT id, path FROM files")}
    finally:
        catalog.close()


def plant(emu, store: str, *, file_id=None, version=None, path=None, state="STATE_ACTIVE",
          content_hash="ab" * 32, owner: str | None = "this test's catalogue") -> str:
    """A document put straight into the emulator's state (as a lost retry would leave it),
    made by this test's catalogue unless ``owner`` names another catalogue id (or None)."""
    if owner == "this test's catalogue":
        catalog = open_catalog(Settings.load())
        owner = catalog.id
        catalog.close()
    values = {"objlib_catalog": owner, "objlib_file_id": file_id, "objlib_version": version,
              "path": path}
    meta = gm.build_custom_metadata({k: v for k, v in values.items() if v is not None})
    return emu.state.add_document(store, gm.raw_file_id(content_hash), custom_metadata=meta,
                                  state=state).name


@pytest.fixture
def indexed(settings, library, emulator):
    """FILES files indexed for real; the last one edited once (so it is at version 2)."""
    paths = write_library(library, FILES)
    scan_library(settings, library)
    catalog = open_catalog(settings)
    store = ensure_store(settings, catalog)
    catalog.close()
    run_pipeline(settings)
    paths[-1].write_text("a second version of the last note\n" * 40, encoding="utf-8")
    scan_library(settings, library)
    run_pipeline(settings)
    rows = rows_by_path(settings)
    assert {r.state for r in rows.values()} == {lc.INDEXED}
    assert len(documents(emulator)) == FILES
    return store


def notes(i: int) -> str:
    return f"Notes/note {i:04d}.txt"


def plant_every_kind(settings, emu, store, library) -> dict[str, set]:
    """One or two of each kind of drift; returns what reconcile must report, per kind (by
    document name, or by path for the row kinds)."""
    rows = rows_by_path(settings)
    r = [rows[notes(i)] for i in range(FILES)]  # r[0], r[1] stay correct throughout
    catalog = open_catalog(settings)
    now = time.time()
    # missing: the store lost an indexed row's document
    emu.state.delete_document(r[2].document, force=True)
    # failed: a current document turned STATE_FAILED, and an unrecorded failed one
    emu.state.set_document_state(r[3].document, "STATE_FAILED")
    failed_extra = plant(emu, store, file_id=r[0].id, version=r[0].version, state="STATE_FAILED")
    # duplicates: a second document for r[4]'s current version (an import retried blindly)
    duplicate = plant(emu, store, file_id=r[4].id, version=r[4].version, path=r[4].path,
                      content_hash=r[4].content_hash)
    # stale: r[5]'s replaced version 1 is back; and a removal open for two hours
    stale_version = plant(emu, store, file_id=r[5].id, version=1, path=r[5].path)
    stale_removal = plant(emu, store, file_id=r[1].id)
    lc.schedule_removal(catalog, stale_removal, r[1].id, "replaced", now - 2 * 3600)
    young_removal = plant(emu, store, file_id=r[1].id)
    lc.schedule_removal(catalog, young_removal, r[1].id, "replaced", now)
    # orphans: no metadata at all; metadata naming a file the catalogue never had
    orphan_bare = plant(emu, store)
    orphan_unknown = plant(emu, store, file_id=999, version=1, path="Gone/elsewhere.txt")
    # stuck_pending: a document PENDING for an hour
    emu.state.advance(-3600)
    stuck_pending = plant(emu, store, state="STATE_PENDING")
    emu.state.advance(3600)
    # foreign: another catalogue's documents (one even names r[0]'s id and version, one
    # FAILED), and one no objlib made: never this catalogue's to delete
    foreign = {plant(emu, store, file_id=r[0].id, version=r[0].version, owner="0a1b2c3d4e5f"),
               plant(emu, store, file_id=999, state="STATE_FAILED", owner="0a1b2c3d4e5f"),
               plant(emu, store, owner=None)}
    # stuck_rows: a new file queued under a task that was lost (never reached the queue)
    (library / notes(FILES)).write_text("a note queued under a lost task\n" * 30,
                                        encoding="utf-8")
    scan_library(settings, library)
    new = lc.by_path(catalog, notes(FILES))
    assert lc.mark_queued(catalog, new.id, new.version, "lost-task", now - 60)
    catalog.close()
    return {"missing": {r[2].path}, "failed": {r[3].document, failed_extra},
            "duplicates": {duplicate}, "stale": {stale_version, stale_removal},
            "orphans": {orphan_bare, orphan_unknown}, "stuck_pending": {stuck_pending},
            "stuck_rows": {new.path}, "foreign": foreign,
            "_correct": {x.document for x in (r[0], r[1], r[4], r[5])},
            "_young_removal": {young_removal}}


def reported(report: rc.Report) -> dict[str, set]:
    return {kind: {f.path if kind in ("missing", "stuck_rows") else f.document
                   for f in report.findings[kind]} for kind in rc.KINDS}


def expected_only(expected: dict) -> dict:
    return {k: v for k, v in expected.items() if not k.startswith("_")}


# ---------------------------------------------------------------------------- reports


def test_a_store_that_matches_the_catalogue_has_no_drift(settings, emulator, indexed):
    report = tasks.reconcile(settings)

    assert report.counts == {kind: 0 for kind in rc.KINDS}
    assert report.documents == FILES and report.rows == FILES
    assert not report.fix and not report.actions


def test_every_kind_of_drift_is_reported_exactly_and_a_dry_run_changes_nothing(
        settings, library, emulator, indexed):
    expected = plant_every_kind(settings, emulator, indexed, library)
    before_docs, before_rows = set(documents(emulator)), rows_by_path(settings)

    report = tasks.reconcile(settings)

    assert reported(report) == expected_only(expected)
    assert set(documents(emulator)) == before_docs
    assert rows_by_path(settings) == before_rows
    assert all(f.path for f in report.findings["duplicates"] + report.findings["stale"])


def test_fix_leaves_no_drift_and_never_touches_a_correct_document(settings, library, emulator,
                                                                  indexed):
    expected = plant_every_kind(settings, emulator, indexed, library)

    fixed = tasks.reconcile(settings, fix=True)
    run_pipeline(settings)  # the workers upload what was re-enqueued
    after = tasks.reconcile(settings)

    assert {k: fixed.fixed[k] for k in rc.KINDS} == {
        k: 0 if k == "foreign" else len(v) for k, v in expected_only(expected).items()}
    assert not fixed.errors and fixed.clean
    assert after.counts == {kind: 0 for kind in rc.DRIFT_KINDS} | {"foreign": 3}
    assert after.drift == 0 and after.clean
    docs = documents(emulator)
    assert expected["_correct"] <= set(docs), "a correct document was deleted"
    assert expected["foreign"] <= set(docs), "another catalogue's document was deleted"
    docs = {name: d for name, d in docs.items() if name not in expected["foreign"]}
    rows = rows_by_path(settings)
    assert {r.state for r in rows.values()} == {lc.INDEXED}
    assert {r.document for r in rows.values()} == set(docs)  # exactly one per file
    assert all(docs[r.document]["state"] == "STATE_ACTIVE" for r in rows.values())


def test_include_foreign_deletes_other_catalogues_documents_only_when_asked(
        settings, emulator, indexed):
    theirs = plant(emulator, indexed, file_id=1, version=1, owner="0a1b2c3d4e5f")
    nobodys = plant(emulator, indexed, owner=None)

    left = tasks.reconcile(settings, fix=True)
    assert {f.document for f in left.findings["foreign"]} == {theirs, nobodys}
    assert {theirs, nobodys} <= set(documents(emulator)) and left.clean
    usage = CliRunner().invoke(cli, ["reconcile", "--include-foreign"])
    assert usage.exit_code == 2 and "goes with --fix" in usage.output
    result = CliRunner().invoke(cli, ["reconcile", "--fix", "--include-foreign"])

    assert result.exit_code == 0, result.output
    assert not {theirs, nobodys} & set(documents(emulator))
    assert len(documents(emulator)) == FILES  # this catalogue's documents all stay


def test_a_current_document_is_never_deleted_whatever_its_metadata_says(settings, emulator,
                                                                        indexed):
    rows = rows_by_path(settings)
    current = rows[notes(0)].document
    doc = emulator.state.documents[current]
    doc.custom_metadata = gm.build_custom_metadata({"objlib_file_id": 999, "objlib_version": 0})

    report = tasks.reconcile(settings, fix=True)

    assert report.counts == {kind: 0 for kind in rc.KINDS}
    assert current in documents(emulator)


def test_a_replaced_version_awaiting_its_successor_is_not_stale(settings, library, emulator,
                                                                indexed):
    (library / notes(0)).write_text("an edit not uploaded yet\n" * 30, encoding="utf-8")
    scan_library(settings, library)
    row = rows_by_path(settings)[notes(0)]
    assert row.state == lc.PENDING and row.previous_document

    report = tasks.reconcile(settings, fix=True)

    assert report.counts == {kind: 0 for kind in rc.KINDS}
    assert row.previous_document in documents(emulator)


def test_the_unrecorded_document_of_a_row_in_flight_is_left_to_its_task(settings, library,
                                                                        emulator, indexed):
    (library / notes(1)).write_text("a new version being imported\n" * 30, encoding="utf-8")
    scan_library(settings, library)
    catalog = open_catalog(settings)
    row = lc.by_path(catalog, notes(1))
    task = tasks.queue_for(settings).upload_task(row.id, row.version)
    assert lc.mark_queued(catalog, row.id, row.version, task.id, time.time())
    tasks.queue_for(settings).send(task)  # a live task owns the row
    catalog.close()
    importing = plant(emulator, indexed, file_id=row.id, version=row.version, path=row.path,
                      state="STATE_PENDING")

    report = tasks.reconcile(settings, fix=True)

    assert report.counts == {kind: 0 for kind in rc.KINDS}
    assert importing in documents(emulator)


def test_two_files_with_the_same_content_are_not_duplicates(settings, library, emulator,
                                                            indexed):
    copy = library / "Copies" / "same as note 0.txt"
    copy.parent.mkdir()
    copy.write_bytes((library / notes(0)).read_bytes())
    scan_library(settings, library)
    run_pipeline(settings)

    report = tasks.reconcile(settings, fix=True)

    assert report.counts == {kind: 0 for kind in rc.KINDS}
    assert len(documents(emulator)) == FILES + 1


def test_a_row_indexed_while_the_list_was_read_is_not_missing(settings, emulator, indexed):
    catalog = open_catalog(settings)
    rows = [lc.FileRow.from_row(r) for r in catalog.query("SELECT * FROM files")]
    catalog.close()
    listed_at = min(r.indexed_at for r in rows) - 1  # every row indexed after listing began

    found = rc.find_drift([], rows, [], listed_at=listed_at, now=time.time())

    assert found["missing"] == []
    assert len(rc.find_drift([], rows, [], listed_at=time.time(), now=time.time())["missing"]) \
        == FILES


def test_a_document_already_gone_when_fix_deletes_it_counts_as_removed(settings, emulator,
                                                                       indexed):
    orphan = plant(emulator, indexed)

    class VanishingFirst:
        """The real client, but the orphan disappears just before reconcile deletes it."""

        def __init__(self, client):
            self.client = client

        def list_documents(self, store, **options):
            yield from self.client.list_documents(store, **options)
            emulator.state.delete_document(orphan, force=True)

        def __getattr__(self, name):
            return getattr(self.client, name)

    from objlib.gemini.client import GeminiClient

    report = tasks.reconcile(settings, fix=True,
                          gemini=VanishingFirst(GeminiClient.from_env(settings)))

    assert report.fixed["orphans"] == 1 and not report.errors
    catalog = open_catalog(settings)
    assert catalog.query("SELECT removed_at FROM removals WHERE document=?",
                         (orphan,))[0]["removed_at"] is not None
    catalog.close()


# ---------------------------------------------------------------------------- record, CLI


def test_the_result_is_recorded_for_status(settings, library, emulator, indexed):
    plant(emulator, indexed)
    tasks.reconcile(settings)
    catalog = open_catalog(settings)
    dry = rc.last_result(catalog)
    tasks.reconcile(settings, fix=True)
    fixed = rc.last_result(catalog)
    catalog.close()

    assert dry["counts"]["orphans"] == 1 and dry["fix"] is False and dry["fixed"] is None
    assert fixed["fix"] is True and fixed["fixed"]["orphans"] == 1
    assert fixed["documents"] == FILES + 1 and fixed["remote_calls"] >= 2
    assert set(fixed) >= {"at", "duration_s", "store", "drift", "errors"}


def test_cli_json_gives_counts_lists_and_actions(settings, library, emulator, indexed):
    orphan = plant(emulator, indexed)

    dry = CliRunner().invoke(cli, ["reconcile", "--json"])
    fix = CliRunner().invoke(cli, ["reconcile", "--fix", "--json"])

    assert dry.exit_code == 1, dry.output  # drift found and left: scripts can tell
    assert fix.exit_code == 0, fix.output
    out = json.loads(dry.stdout)
    assert out["counts"]["orphans"] == 1 and out["drift"] == 1 and out["fix"] is False
    assert [f["document"] for f in out["findings"]["orphans"]] == [orphan]
    assert set(out["findings"]) == set(rc.KINDS) and out["actions"] == []
    done = json.loads(fix.stdout)
    assert done["fixed"]["orphans"] == 1
    assert done["actions"] == [{"action": "delete", "kind": "orphans", "document": orphan,
                                "path": None}]


def test_cli_table_names_each_kind(settings, emulator, indexed):
    plant(emulator, indexed, file_id=999, version=1, path="Gone/x.txt")

    result = CliRunner().invoke(cli, ["reconcile"])

    assert result.exit_code == 1, result.output
    assert "dry run" in result.output and "Gone/x.txt" in result.output
    for kind in rc.KINDS:
        assert kind in result.output


def test_cli_without_a_store_says_what_to_do(settings, library, emulator):
    write_library(library, 1)
    scan_library(settings, library)  # a catalogue, but nothing enqueued yet
    result = CliRunner().invoke(cli, ["reconcile"])

    assert result.exit_code == 1
    assert "objlib enqueue" in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------------------- periodic


def test_the_periodic_reconcile_is_off_by_default_and_runs_when_due(settings, emulator,
                                                                    indexed):
    from dataclasses import replace

    catalog = open_catalog(settings)
    assert not rc.due(settings, catalog)
    every5 = replace(settings, reconcile_every_minutes=5)
    assert rc.due(every5, catalog)  # never ran
    tasks.reconcile(settings)
    assert not rc.due(every5, catalog)
    assert rc.due(every5, catalog, now=time.time() + 5 * 60)

    orphan = plant(emulator, indexed)
    settings.config_file.write_text("reconcile_every_minutes = 5\n")
    catalog.set_meta(rc.META_KEY, json.dumps({"at": time.time() - 600}))
    tasks.make_huey(settings).reconcile_store.call_local()

    assert rc.last_result(catalog)["fixed"]["orphans"] == 1
    assert orphan not in documents(emulator)
    catalog.close()


def test_a_failed_listing_is_recorded_as_an_error_not_as_a_clean_store(settings, emulator,
                                                                      indexed):
    emulator.configure(faults={"unavailable": 1.0})

    result = CliRunner().invoke(cli, ["reconcile"])

    assert result.exit_code == 1 and "503" in result.output
    catalog = open_catalog(settings)
    recorded = rc.last_result(catalog)
    catalog.close()
    assert "503" in recorded["error"] and "counts" not in recorded
