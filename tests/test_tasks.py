"""The queue of one home (``objlib.tasks``): built from the settings it is given, touching no
file until it is used, one per process and settings; commands pass their settings down
instead of writing them into the environment."""

from __future__ import annotations

import dataclasses
import os

import pytest
from click.testing import CliRunner

from objlib import tasks
from objlib.cli import cli
from objlib.settings import Settings
from tests.support.disk import write_library


def test_a_queue_touches_no_file_until_it_is_used(tmp_path):
    settings = Settings.load(tmp_path / "not-yet")
    q = tasks.make_huey(settings)
    assert q.settings is settings and not settings.home.exists()
    assert q.depth() == (0, 0)  # first use: the home and queue.db are made
    assert settings.queue_db.is_file()


def test_each_home_has_its_own_queue(tmp_path):
    one, two = Settings.load(tmp_path / "one"), Settings.load(tmp_path / "two")
    assert tasks.queue_for(one) is tasks.queue_for(Settings.load(tmp_path / "one"))
    assert tasks.queue_for(one) is not tasks.queue_for(two)
    tasks.queue_for(one).send(tasks.queue_for(one).upload_task(1, 1))
    assert tasks.queue_for(one).depth() == (1, 0) and tasks.queue_for(two).depth() == (0, 0)
    # other tunables, another queue (its tasks use its own settings)
    other = dataclasses.replace(one, store_name="another store")
    assert tasks.queue_for(other) is not tasks.queue_for(one)
    assert tasks.queue_for(other).settings.store_name == "another store"


def test_the_consumers_queue_reads_its_settings_at_first_use(home):
    q = tasks.ObjlibHuey(Settings.load)  # what `huey_consumer objlib.tasks.huey` loads
    assert q.settings.home == home  # OBJLIB_HOME of this moment, not of the import


def test_a_command_with_home_leaves_the_environment_alone(tmp_path, library):
    elsewhere = tmp_path / "elsewhere"
    write_library(library, 1)
    before = dict(os.environ)
    result = CliRunner().invoke(cli, ["--home", str(elsewhere), "scan", str(library)])
    assert result.exit_code == 0, result.output
    assert (elsewhere / "library.db").is_file()
    assert dict(os.environ) == before


def test_a_queue_dropped_from_the_cache_still_works(tmp_path):
    first = tasks.queue_for(Settings.load(tmp_path / "first"))
    first.send(first.upload_task(1, 1))
    for i in range(tasks._KEPT_QUEUES):
        tasks.queue_for(Settings.load(tmp_path / f"home-{i}")).depth()
    assert tasks.queue_for(Settings.load(tmp_path / "first")) is not first  # made anew
    assert first.depth() == (1, 0)  # its connection opened again


def test_a_task_taken_off_the_queue_is_live_until_it_has_run(tmp_path):
    """Recovery must never give a row to a second task while a worker here holds its first
    one between the dequeue and the end of its run (in no queue, not yet claimed)."""
    q = tasks.make_huey(Settings.load(tmp_path / "home"))
    q.send(q.upload_task(7, 1))
    # Given a worker has taken the task off the queue and not yet started it
    task = q.dequeue()
    assert q.depth() == (0, 0)
    assert task.id in q.live_tasks().task_ids and (7, 1) in q.live_tasks().uploads
    # When it has run (here, with no API key, it parks itself in the schedule), it is no
    # longer running here: it is live through the schedule alone
    q.execute(task)
    assert q.running_here() == []
    live = q.live_tasks()
    assert live.scheduled == 1 and task.id in live.task_ids


def test_rows_are_handed_to_tasks_in_batches_each_row_to_the_task_it_names(
        settings, library, monkeypatch):
    from objlib.catalog import lifecycle as lc
    from objlib.catalog import open_catalog
    from objlib.scan import scan_library

    write_library(library, 5)
    scan_library(settings, library)
    catalog = open_catalog(settings)
    rows = catalog.query("SELECT id, version, path FROM files ORDER BY id")
    assert lc.mark_queued(catalog, rows[2]["id"], 1, "taken-meanwhile", 1.0)  # loses its race
    monkeypatch.setattr(tasks, "SEND_BATCH", 2)
    q = tasks.queue_for(settings)

    sent = tasks.send_uploads(settings, catalog, rows, 100.0)

    assert sent == [r["path"] for i, r in enumerate(rows) if i != 2]
    queued = {r["id"]: r["task_id"] for r in catalog.query(
        "SELECT id, task_id FROM files WHERE state='queued' AND queued_at=100.0")}
    assert [(t.id, tuple(t.args)) for t in q.pending()] == \
        [(queued[r["id"]], (r["id"], 1)) for i, r in enumerate(rows) if i != 2]
    assert all(t.on_complete.name.endswith("poll_import") for t in q.pending())
    assert catalog.query("SELECT COUNT(*) FROM history WHERE why='enqueued'")[0][0] == 5
    catalog.close()


def test_rows_whose_batch_never_reached_the_queue_are_recovered(settings, library, monkeypatch):
    from objlib.catalog import open_catalog
    from objlib.errors import QueueError
    from objlib.scan import scan_library

    write_library(library, 3)
    scan_library(settings, library)
    catalog = open_catalog(settings)
    rows = catalog.query("SELECT id, version, path FROM files ORDER BY id")
    q = tasks.queue_for(settings)

    def locked(items):
        raise tasks.sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(q.storage, "enqueue_many", locked)
    with pytest.raises(QueueError, match="locked"):
        tasks.send_uploads(settings, catalog, rows, 100.0)
    monkeypatch.undo()
    assert q.depth() == (0, 0)

    summary = tasks.recover(settings, catalog, now=100.0 + 10)

    assert sorted(summary.requeued) == sorted(r["path"] for r in rows)
    assert q.depth() == (3, 0)
    catalog.close()


def test_task_ids_are_distinct_version_4_uuids_as_hueys_own():
    import uuid

    ids = tasks.task_ids(2_000)

    assert len(set(ids)) == 2_000
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text
