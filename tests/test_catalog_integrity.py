"""A library.db that is not a healthy objlib catalogue is refused with a message naming it,
never adopted and never modified: empty or foreign files, a damaged page, a read-only file.
A task that meets such a catalogue waits for the operator's fix instead of failing its file."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from datetime import timedelta

import pytest
from click.testing import CliRunner

from objlib.catalog import Catalog, lifecycle, open_catalog
from objlib.catalog.lifecycle import NewFile
from objlib.cli import cli
from objlib.errors import CatalogError
from objlib.settings import Settings
from tests.support.catalogue import file_states
from tests.support.disk import read_only, write_library
from tests.support.waits import wait_for

COMMANDS = {"scan": ["scan", "LIBRARY"], "enqueue": ["enqueue"], "status": ["status"],
            "reconcile": ["reconcile"]}


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def make_empty(path):
    path.write_bytes(b"")


def make_foreign_v0(path):
    with closing(sqlite3.connect(path)) as conn:  # another program's database
        conn.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes(body) VALUES ('keep me')")
        conn.commit()


def make_foreign_versioned(path):
    with closing(sqlite3.connect(path)) as conn:  # e.g. an app that uses user_version too
        conn.execute("CREATE TABLE settings(k TEXT, v TEXT)")
        conn.execute("PRAGMA user_version=3")
        conn.commit()


BAD_FILES = {"empty": (make_empty, "is empty (0 bytes)"),
             "foreign": (make_foreign_v0, "not an objlib catalogue"),
             "foreign with a version": (make_foreign_versioned, "not an objlib catalogue")}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", BAD_FILES)
def test_an_empty_or_foreign_library_db_is_refused_and_left_untouched(
        settings, library, emulator, kind, command):
    # Given a library.db that is not an objlib catalogue (truncated, or another program's)
    write_library(library, 3)
    make, message = BAD_FILES[kind]
    make(settings.library_db)
    before = settings.library_db.read_bytes()
    # When any command that reads the catalogue runs
    args = [str(library) if a == "LIBRARY" else a for a in COMMANDS[command]]
    result = run(*args)
    # Then it is refused with a message naming the file and what to do, and nothing changed
    assert result.exit_code == 1, result.output
    assert str(settings.library_db) in result.output and message in result.output
    assert "move it away" in result.output.lower()
    assert "Traceback" not in result.output
    assert settings.library_db.read_bytes() == before
    assert not settings.queue_db.exists()
    assert not emulator.stats()["requests"], "a store was touched for a refused catalogue"


def test_a_missing_catalogue_is_still_created_by_scan(settings, library):
    write_library(library, 2)
    assert not settings.library_db.exists()
    assert run("scan", str(library)).exit_code == 0
    assert file_states(settings) == {"pending": 2}


# ---------------------------------------------------------------------------- a damaged page

MARK = "c0ffee" * 10 + "beef"  # a content hash found once in the file: its page is a data page


def damaged_catalogue(settings, library, rows: int = 4000):
    """A real catalogue of ``rows`` files (one scanned, the rest recorded by the lifecycle),
    the marked row queued, then the middle of the page holding that row overwritten."""
    write_library(library, 1)
    assert run("scan", str(library)).exit_code == 0
    catalog = open_catalog(settings)
    files = [NewFile(f"Notes/extra {i:05d}.txt", 100, i, f"{i:064x}", {}, "none")
             for i in range(rows)]
    files[rows // 2] = NewFile("Notes/marked.txt", 100, 1, MARK, {}, "none")
    lifecycle.record_new_many(catalog, files, time.time())
    marked = lifecycle.by_path(catalog, "Notes/marked.txt")
    # in flight: recovery (inside enqueue's queue block) reads exactly this row
    assert lifecycle.mark_queued(catalog, marked.id, marked.version, "lost-task", time.time() - 60)
    catalog.close()  # the last connection checkpoints the WAL into library.db
    assert not settings.library_db.with_name("library.db-wal").exists()
    data = bytearray(settings.library_db.read_bytes())
    page_size = 4096
    page = data.index(MARK.encode()) // page_size
    assert 1 < page < len(data) // page_size - 1, "the marked row is not in the middle"
    start = page * page_size + page_size // 4
    data[start:start + page_size // 2] = b"garbage!" * (page_size // 16)
    settings.library_db.write_bytes(bytes(data))
    return page + 1  # SQLite counts pages from 1


@pytest.mark.parametrize("command", ["enqueue", "scan"])
def test_a_damaged_page_is_a_clear_error_naming_library_db_not_the_queue(
        settings, library, emulator, command):
    # Given a catalogue of thousands of rows with one data page overwritten
    page = damaged_catalogue(settings, library)
    # When a command reads the damaged rows
    result = run(*(["scan", str(library)] if command == "scan" else [command]))
    # Then the message names library.db, says it is corrupt with quick_check's finding, and
    # does not send the user after the healthy queue
    assert result.exit_code == 1, result.output
    assert f"{settings.library_db} is corrupt" in result.output
    assert f"quick_check: On tree page {page}" in result.output
    assert "queue.db" not in result.output
    assert "Traceback" not in result.output


def test_quick_check_runs_only_on_the_error_path(settings, library, monkeypatch):
    from objlib.catalog import db

    calls = []
    monkeypatch.setattr(db, "quick_check", lambda path: calls.append(path) or "page 9: bad")
    write_library(library, 3)
    assert run("scan", str(library)).exit_code == 0
    assert run("status").exit_code == 0
    assert calls == []


# ---------------------------------------------------------------------------- read-only


def test_a_read_only_catalogue_is_a_clear_error_and_nothing_is_lost(settings, library):
    write_library(library, 3)
    assert run("scan", str(library)).exit_code == 0
    (library / "Notes" / "new.txt").write_text("a new note, to be recorded", encoding="utf-8")
    with read_only(settings.library_db):
        result = run("scan", str(library))
    assert result.exit_code == 1, result.output
    assert str(settings.library_db) in result.output
    assert "permissions" in result.output and "nothing was lost" in result.output
    assert "Traceback" not in result.output
    # once the permission is fixed, the same command works and finds the new file
    assert run("scan", str(library)).exit_code == 0
    assert file_states(settings) == {"pending": 4}


def test_a_catalog_opened_while_read_only_recovers_once_the_permission_is_fixed(settings):
    # Given a catalogue that a long-running process (a consumer) opens while it is read-only
    open_catalog(settings).close()
    catalog = Catalog(settings.library_db)
    with read_only(settings.library_db):
        with pytest.raises(CatalogError, match="permissions"):
            catalog.set_meta("probe", "1")
    # When the permission is fixed, Then the same Catalog (same thread) writes again: the
    # connection opened read-only was dropped, not kept for the process's whole life
    catalog.set_meta("probe", "2")
    assert catalog.get_meta("probe") == "2"
    catalog.close()


def test_a_task_that_meets_a_read_only_catalogue_is_rescheduled_and_finishes_later(
        settings, library, emulator, monkeypatch):
    from objlib import tasks
    from objlib.enqueue import enqueue

    write_library(library, 1)
    assert run("scan", str(library)).exit_code == 0
    enqueue(settings)
    monkeypatch.setenv("OBJLIB_POLL_FIRST_DELAY_S", "0")  # the poll looks at once
    huey = tasks.make_huey(Settings.load())  # a consumer of this home, with that setting
    [task] = huey.pending()
    huey.dequeue()
    task_id = task.id
    later = huey._get_timestamp() + timedelta(seconds=Settings.load().operator_wait_s + 60)
    # When the worker runs it, more often than huey's retry budget for unexpected errors,
    # while the catalogue cannot be written
    with read_only(settings.library_db):
        for _ in range(tasks._UNEXPECTED["retries"] + 2):
            huey.execute(task, timestamp=later)
            [task] = huey.read_schedule(later)
            assert task.id == task_id
            # Then the file is not failed: the same task waits for a while, then tries again
            assert file_states(settings) == {"queued": 1}
            assert task.eta >= huey._get_timestamp() + timedelta(
                seconds=Settings.load().operator_wait_s - 5)
    huey.add_schedule(task)
    # and once the catalogue is writable, the task (then its poll) finishes the file
    # (the poll's first look waits for the import's expected time: run what is due until then)
    def run_due():
        due = huey.read_schedule(later) + ([huey.dequeue()] if huey.pending_count() else [])
        for t in due:
            huey.execute(t, timestamp=later)
        return file_states(settings) == {"indexed": 1}

    wait_for(run_due, 30, 0.05, "the file indexed once the catalogue is writable")


def test_a_periodic_task_that_meets_an_unusable_catalogue_logs_and_carries_on(
        settings, capsys):
    from objlib import log, tasks

    log.configure(json=True)
    settings.library_db.write_bytes(b"")
    # would raise (a traceback in the consumer log)
    tasks.make_huey(settings).recover_stuck.call_local()
    assert "is empty (0 bytes)" in capsys.readouterr().err
    assert settings.library_db.read_bytes() == b""
