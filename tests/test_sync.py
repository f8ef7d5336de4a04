"""Continuous sync (`sync_every_minutes`): the periodic task re-scans the library and enqueues
what changed, once per interval across processes, with the time passed in; a refused scan is
recorded and changes nothing. End to end: a library edited while a real consumer runs ends in
sync without anyone typing a command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from objlib import sync
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.errors import ConfigError
from objlib.queue import bind
from objlib.scan import scan_library
from objlib.settings import Settings
from tests.support.catalogue import file_states, move, row_of
from tests.support.disk import write_library
from tests.support.store import converge
from tests.support.waits import wait_for

NOW = 1_800_000_000.0
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def every_minute(settings):
    return dataclasses.replace(settings, sync_every_minutes=1)


@pytest.fixture
def catalog(every_minute, library):
    write_library(library, 3)
    scan_library(every_minute, library, now=NOW - 600)
    cat = open_catalog(every_minute)
    yield cat
    cat.close()


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")


def test_sync_is_off_by_default(settings, library):
    write_library(library, 1)
    scan_library(settings, library)
    catalog = open_catalog(settings)
    assert sync.run_if_due(settings, catalog, now=NOW) is None
    assert sync.last_sync(catalog) is None
    catalog.close()


def test_a_due_sync_scans_and_enqueues_what_changed(every_minute, catalog, library, emulator,
                                                    key):
    # Given a library where one file changed and one is new since the last scan
    (library / "Notes" / "note 0000.txt").write_text("rewritten\n" * 30)
    (library / "Notes" / "new.txt").write_text("a new note\n" * 30)
    # When the periodic task finds a sync due
    result = sync.run_if_due(every_minute, catalog, now=NOW)
    # Then the catalogue saw both, and every file is queued (3 never enqueued + the new one)
    assert result.outcome == "ok" and result.changes == 2 and result.enqueued == 4
    assert bind(every_minute).huey.pending_count() == 4
    assert sync.last_sync(catalog) == result.to_json()


def test_the_next_sync_waits_for_the_interval(every_minute, catalog, emulator, key):
    assert sync.run_if_due(every_minute, catalog, now=NOW) is not None
    assert sync.run_if_due(every_minute, catalog, now=NOW + 30) is None
    assert sync.due(every_minute, catalog, now=NOW + 59.5)  # a scheduler tick early counts
    assert sync.run_if_due(every_minute, catalog, now=NOW + 60) is not None


def test_an_unchanged_library_with_nothing_waiting_costs_no_request(every_minute, catalog,
                                                                   emulator):
    for file_id in (1, 2, 3):  # indexed by the workers since the last scan
        move(catalog, file_id, lc.INDEXED, NOW - 300)
    result = sync.run_if_due(every_minute, catalog, now=NOW)
    assert (result.outcome, result.changes, result.enqueued) == ("ok", 0, 0)
    assert emulator.stats()["total_requests"] == 0


def test_two_consumers_never_both_sync_one_interval(every_minute, catalog):
    assert sync.claim(every_minute, catalog, NOW)
    assert not sync.claim(every_minute, catalog, NOW)
    assert sync.last_sync(catalog)["outcome"] == "running"


def test_a_sync_the_deletion_guard_refuses_is_recorded_and_changes_nothing(
        every_minute, catalog, library, capsys):
    from objlib import log

    log.configure(json=True)
    for path in (library / "Notes").iterdir():  # the drive is not mounted
        path.unlink()
    before = [tuple(r) for r in catalog.query("SELECT * FROM files ORDER BY id")]
    result = sync.run_if_due(every_minute, catalog, now=NOW)
    assert result.outcome == "failed" and "scan refused" in result.error
    assert sync.last_sync(catalog)["outcome"] == "failed"
    assert [tuple(r) for r in catalog.query("SELECT * FROM files ORDER BY id")] == before
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "library sync failed" and line["level"] == "error"


def test_the_periodic_task_syncs_through_the_consumer_s_catalogue(home, library, emulator, key,
                                                                 monkeypatch):
    from objlib import tasks

    (home / "config.toml").write_text("sync_every_minutes = 1\n")
    write_library(library, 2)
    scan_library(Settings.load(home), library)
    (library / "Notes" / "new.txt").write_text("a new note\n" * 30)
    monkeypatch.setattr(tasks, "_catalog", None)  # this test's home, not an earlier one's
    tasks.sync_library.call_local()
    assert file_states(Settings.load(home)) == {"queued": 3}


@pytest.mark.parametrize("line", ["sync_every_minutes = -1", "sync_every_minutes = nan",
                                  'sync_every_minutes = "soon"'])
def test_a_bad_sync_interval_is_refused_with_its_name(home, line):
    (home / "config.toml").write_text(line + "\n")
    with pytest.raises(ConfigError, match="sync_every_minutes"):
        Settings.load(home)


@pytest.mark.slow
def test_a_library_edited_while_the_consumer_runs_ends_in_sync_by_itself(
        settings, library, emulator, consumers, key):
    # Given a scanned library and a consumer syncing every 1.2 s (huey looks for due
    # periodic tasks every second in this consumer, instead of every minute)
    write_library(library, 3)
    scan_library(settings, library)
    (settings.home / "config.toml").write_text("sync_every_minutes = 0.02\n")
    consumers(workers=2, launcher=(str(TESTS / "fast_periodic_consumer.py"),))
    converge(settings, emulator, timeout_s=30)  # the first sync enqueued and indexed them
    edited = row_of(settings, "Notes/note 0000.txt")
    # When the library changes (an edit, a deletion, a new file) and nobody types a command
    (library / edited.path).write_text("the first note, rewritten\n" * 40)
    (library / "Notes" / "note 0001.txt").unlink()
    (library / "Notes" / "new note.txt").write_text("a note written later\n" * 40)
    # Then a sync finds the changes and the workers index them
    wait_for(lambda: (file_states(settings) == {"indexed": 3, "deleted": 1}
                      and row_of(settings, edited.path).version == edited.version + 1),
             30, what="the edit, the deletion and the new file indexed")
    # and the store follows: one document per current file, none for the deleted one
    converge(settings, emulator, timeout_s=30)
