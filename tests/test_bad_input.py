"""The bad-input matrix, for what the scan tests do not already cover: each case gives a clear
message, a non-zero exit where the command cannot do its job, and loses nothing. (Empty,
binary, non-UTF-8, oversized, unreadable files, symlinks and missing folders: see
test_scan_walk.py and test_scan_cli.py; changed or vanished files: test_pipeline.py.)"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from objlib import pipeline
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.cli import cli
from objlib.enqueue import enqueue, ensure_store, queue_depth
from objlib.scan import scan_library
from tests.support.catalogue import file_states
from tests.support.disk import write_library
from tests.support.store import converge
from tests.support.waits import wait_for

ODD_NAMES = ["  leading spaces.txt", "quote's \"double\".txt", "ünïcødé – 東京 notes.md",
             "two  inner  spaces.txt", "semi;colon & ampersand (1).txt"]


def run(*args, **env):
    return CliRunner().invoke(cli, list(args), env=env or None, catch_exceptions=False)


def test_odd_file_names_are_uploaded_and_indexed(settings, library, emulator):
    # Given files whose names have leading spaces, quotes, unicode and punctuation
    for name in ODD_NAMES:
        (library / name).write_text(f"content of {name}", encoding="utf-8")
    scan_library(settings, library)
    ctx = pipeline.build_context(settings)
    ensure_store(settings, ctx.catalog, ctx.gemini)
    # When each goes through the worker steps
    for row in map(lc.FileRow.from_row, ctx.catalog.query("SELECT * FROM files")):
        assert lc.mark_queued(ctx.catalog, row.id, row.version, f"t{row.id}", time.time())
        assert pipeline.upload_and_import(ctx, row.id, row.version, f"t{row.id}")
    ctx.clock = lambda: time.time() + 5  # the polls' first look comes a moment later
    for row in map(lc.FileRow.from_row, ctx.catalog.query("SELECT * FROM files")):
        pipeline.poll_import(ctx, row.id, row.version, f"p{row.id}")
    # Then all are indexed, each document names its row and path (string metadata values are
    # stripped: field lessons saw leading spaces hang an import), display names stripped
    assert file_states(settings) == {"indexed": len(ODD_NAMES)}
    docs = list(ctx.gemini.list_documents(ctx.store))
    paths = {r["id"]: r["path"] for r in ctx.catalog.query("SELECT id, path FROM files")}
    assert sorted(paths.values()) == sorted(ODD_NAMES)
    for d in docs:
        assert d.custom_metadata["path"] == paths[int(d.custom_metadata["objlib_file_id"])].strip()
    raw_files = [emulator.state.get_file(r["remote_file"])
                 for r in ctx.catalog.query("SELECT remote_file FROM files")]
    for raw in raw_files:
        display = raw["displayName"] if isinstance(raw, dict) else raw.display_name
        assert display == display.strip()


def enqueue_while_another_writer_holds(path):
    """`objlib enqueue` (with a short busy timeout) while another connection holds the write
    lock of ``path``."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        return run("enqueue", OBJLIB_BUSY_TIMEOUT_S="0.3")
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_catalogue_locked_by_another_writer_is_a_clear_error_and_changes_nothing(
        settings, library, emulator):
    write_library(library, 3)
    scan_library(settings, library)
    result = enqueue_while_another_writer_holds(settings.library_db)
    assert result.exit_code == 1
    assert "library.db is locked by another writer" in result.output
    assert "Traceback" not in result.output
    assert file_states(settings) == {"pending": 3}
    assert run("enqueue").exit_code == 0
    assert file_states(settings) == {"queued": 3}


def test_a_queue_locked_by_another_writer_is_a_clear_error_and_nothing_is_lost(
        settings, library, emulator):
    write_library(library, 3)
    scan_library(settings, library)
    queue_depth(settings)  # the queue file exists
    result = enqueue_while_another_writer_holds(settings.queue_db)
    assert result.exit_code == 1
    assert "queue.db is locked by another writer" in result.output
    # the row marked queued before the failed enqueue is recovered by the next run
    time.sleep(0.1)
    summary = enqueue(settings, now=time.time() + 10)
    assert len(summary.enqueued) + len(summary.recovered.requeued) == 3
    assert queue_depth(settings)[0] == 3


def test_a_corrupt_queue_is_a_clear_error_and_the_catalogue_rebuilds_it(settings, library,
                                                                       emulator):
    write_library(library, 4)
    scan_library(settings, library)
    enqueue(settings)
    settings.queue_db.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        settings.queue_db.with_name("queue.db" + suffix).unlink(missing_ok=True)
    # a new process, as a user would run it (this one still holds the old file open)
    result = subprocess.run([sys.executable, "-m", "objlib", "enqueue"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "queue.db is not a usable queue" in result.stderr
    assert "objlib enqueue" in result.stderr and "Traceback" not in result.stderr
    # when the user moves it away, the queued rows (whose tasks were lost) are re-enqueued
    shutil.move(settings.queue_db, settings.home / "queue.db.broken")
    catalog = open_catalog(settings)
    with catalog.write() as conn:  # a little while later
        conn.execute("UPDATE files SET state_changed_at = state_changed_at - 60")
    result = subprocess.run([sys.executable, "-m", "objlib", "enqueue"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "resumed 4 stuck upload(s)" in result.stdout
    with sqlite3.connect(settings.queue_db) as queue:
        assert queue.execute("SELECT count(*) FROM task").fetchone()[0] == 4


def test_a_missing_api_key_is_a_clear_error_naming_the_variable(settings, library, monkeypatch):
    write_library(library, 1)
    scan_library(settings, library)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "https://generativelanguage.example.invalid")
    result = run("enqueue")
    assert result.exit_code == 1
    assert "GEMINI_API_KEY" in result.output and "Traceback" not in result.output
    assert file_states(settings) == {"pending": 1}


@pytest.mark.parametrize("name", ["", "   ", "x" * 513])
def test_an_invalid_store_name_is_a_clear_error(name):
    result = run("enqueue", OBJLIB_STORE=name) if name else run("enqueue", OBJLIB_STORE=" ")
    assert result.exit_code == 1
    assert "store_name must be 1 to 512 characters" in result.output


@pytest.mark.slow
def test_workers_back_off_while_the_api_is_unreachable_and_resume_when_it_returns(
        settings, library, emulator, consumers):
    write_library(library, 60)
    scan_library(settings, library)
    emulator.configure(latency={"upload": 0.3})  # ~3 s of uploads for 7 workers
    enqueue(settings)
    consumers(workers=7, env={"OBJLIB_BACKOFF_BASE_S": "0.5"})
    wait_for(lambda: file_states(settings).get("indexed", 0) >= 1, 60, 0.05, "some progress")
    # When the service disappears while work remains
    assert file_states(settings).get("indexed", 0) < 30
    emulator.stop()
    time.sleep(6)
    emulator.start()
    # Then every file still ends indexed, none failed, none doubled
    wait_for(lambda: file_states(settings) == {"indexed": 60}, 120, 0.2, "all indexed")
    catalog = open_catalog(settings)
    unreachable = catalog.query("SELECT count(*) FROM errors WHERE error_class='unavailable'"
                                )[0][0]
    assert unreachable > 0, "the outage was not noticed"
    # an importFile the service took just as it went away has no answer and is sent again
    # (it happens now and then): one per outage error at most, and the store still ends
    # with exactly one document per file
    assert 60 <= emulator.stats()["requests"]["stores.importFile"] <= 60 + unreachable
    converge(settings, emulator)


@pytest.mark.slow
def test_the_api_key_appears_nowhere_after_a_full_run(settings, library, emulator, consumers,
                                                      tmp_path, monkeypatch):
    key = "AIzaSy-objlib-canary-SECRET-0123456789"
    monkeypatch.setenv("GEMINI_API_KEY", key)
    # the 503s below open the breaker too: short cooldowns keep the run short
    (settings.home / "config.toml").write_text("breaker_cooldown_s = 0.5\n"
                                               "breaker_max_cooldown_s = 2.0\n")
    write_library(library, 20)
    scan_library(settings, library)
    result = run("enqueue")  # the CLI too, with its logging
    assert result.exit_code == 0, result.output
    emulator.configure(faults={"unavailable": 0.2, "rate_limit": 0.1})
    consumer = consumers(workers=4, env={"GEMINI_API_KEY": key, "OBJLIB_BACKOFF_BASE_S": "0.2"})
    wait_for(lambda: file_states(settings) == {"indexed": 20}, 120, 0.2, "all indexed")
    # pending tasks (a poll, a retry) carry their payload in the queue: check it holds ids only
    consumer.stop()
    assert key not in result.output
    secret = key.encode()
    for path in list(settings.home.iterdir()) + [consumer.log_path]:
        if path.is_file():
            assert secret not in path.read_bytes(), f"the API key leaked into {path.name}"
    log = consumer.log()
    assert "upload_and_import" in log, "the worker log is not the one that did the work"


def test_switching_a_mirrored_catalogue_to_another_store_is_refused(settings, library, emulator):
    write_library(library, 1)
    scan_library(settings, library)
    assert run("enqueue").exit_code == 0
    catalog = open_catalog(settings)
    with catalog.write() as conn:  # as if the file had been indexed into the first store
        conn.execute("UPDATE files SET document='fileSearchStores/x/documents/d'")
    result = run("enqueue", OBJLIB_STORE="another store")
    assert result.exit_code == 1
    assert "Use another --home for another store" in result.output


def test_enqueue_waits_out_a_flaky_api_when_it_creates_the_store(settings, library, emulator):
    write_library(library, 2)
    scan_library(settings, library)
    emulator.configure(faults={"unavailable": 0.3})
    result = run("enqueue", OBJLIB_BACKOFF_BASE_S="0.05")
    assert result.exit_code == 0, result.output
    assert "enqueued 2 file(s)" in result.output


@pytest.mark.slow
def test_workers_without_an_api_key_say_so_and_fail_nothing(settings, library, emulator,
                                                            consumers):
    write_library(library, 5)
    scan_library(settings, library)
    enqueue(settings)  # against the emulator
    # workers pointed at a real-looking endpoint, with no key in their environment
    consumer = consumers(workers=2, env={"GOOGLE_GEMINI_BASE_URL": "https://gemini.invalid",
                                         "OBJLIB_OPERATOR_WAIT_S": "2"})
    wait_for(lambda: "GEMINI_API_KEY is not set" in consumer.log(), 30, what="the error")
    time.sleep(1)
    consumer.stop()
    states = file_states(settings)
    assert "failed" not in states and sum(states.values()) == 5, states
    assert "Traceback" not in consumer.log()
    # and a consumer with the setting right finishes the work (the waiting tasks come back
    # after operator_wait_s, 2 s here)
    consumers(workers=2, env={"OBJLIB_OPERATOR_WAIT_S": "2"})
    wait_for(lambda: file_states(settings) == {"indexed": 5}, 120, 0.2, "all indexed")


def test_enqueue_before_any_scan_says_to_scan_first(home):
    result = run("enqueue")
    assert result.exit_code == 1
    assert "run `objlib scan LIBRARY` first" in result.output
    assert not (home / "library.db").exists()
