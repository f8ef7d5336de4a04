"""Exit codes scripts can trust, and the ``--json`` summaries of scan, enqueue and upload
(their keys pinned). Rows move through the real lifecycle (``test_status.move``).

Already pinned elsewhere, not repeated here: ``reconcile`` exits 1 when a dry run finds
drift and 0 once ``--fix`` repaired it (test_reconcile), and a consumer refuses a home with
no catalogue with one line and a non-zero exit (test_consumer_start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from objlib import status as st
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.cli import cli
from objlib.scan import scan_library
from tests.support.catalogue import move
from tests.support.disk import write_library

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def scanned(settings, library):
    """Three scanned files; the catalogue open for the test to move rows."""
    write_library(library, 3)
    scan_library(settings, library)
    catalog = open_catalog(settings)
    yield catalog
    catalog.close()


def test_status_until_done_exits_0_when_every_file_is_indexed(scanned):
    now = time.time()
    for file_id in (1, 2, 3):
        move(scanned, file_id, lc.INDEXED, now)
    result = run("status", "--watch", "--until-done", "--interval", "0.1")
    assert result.exit_code == 0, result.output
    assert "indexed 3/3" in result.output


def test_status_until_done_exits_1_when_files_failed(scanned):
    now = time.time()
    move(scanned, 1, lc.INDEXED, now)
    move(scanned, 2, lc.FAILED, now)
    move(scanned, 3, lc.FAILED, now)
    result = run("status", "--watch", "--until-done", "--interval", "0.1")
    assert result.exit_code == 1, result.output
    assert "failed 2" in result.output


def test_status_until_done_exits_130_when_interrupted_before_done(scanned, monkeypatch):
    # Given work still pending, and a Ctrl+C during the first wait between refreshes
    def ctrl_c(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(st.time, "sleep", ctrl_c)
    result = run("status", "--watch", "--until-done")
    assert result.exit_code == 130, result.output


def test_status_watch_without_until_done_exits_0_on_ctrl_c(scanned, monkeypatch):
    def ctrl_c(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(st.time, "sleep", ctrl_c)
    assert run("status", "--watch").exit_code == 0


SCAN_KEYS = {"root", "dry_run", "new", "changed", "unchanged", "touched", "restored",
             "deleted", "renamed", "skipped", "changes", "refused", "warnings", "files_found",
             "read_files", "read_bytes", "elapsed_s"}


def test_scan_json_is_one_object_with_pinned_keys(library):
    write_library(library, 3)
    (library / "Notes" / "empty.txt").write_text("")
    result = run("scan", str(library), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary) == SCAN_KEYS
    assert summary["new"] == 3 and summary["dry_run"] is False
    assert summary["skipped"]["total"] == 1 and sum(summary["skipped"]["by_reason"].values()) == 1
    # a second scan: nothing changed
    again = json.loads(run("scan", str(library), "--json").stdout)
    assert (again["new"], again["unchanged"], again["changes"]) == (0, 3, 0)


def test_scan_json_after_a_rename_lists_it(library):
    write_library(library, 2)
    run("scan", str(library))
    (library / "Notes" / "note 0000.txt").rename(library / "Notes" / "moved.txt")
    summary = json.loads(run("scan", str(library), "--json").stdout)
    assert summary["renamed"] == [{"from": "Notes/note 0000.txt", "to": "Notes/moved.txt"}]


def test_scan_refused_by_the_deletion_guard_exits_1_with_no_json(library):
    paths = write_library(library, 12)
    run("scan", str(library))
    for p in paths:
        p.unlink()
    result = run("scan", str(library), "--json")
    assert result.exit_code == 1
    assert result.stdout == "" and "scan refused" in result.stderr


def test_scan_dry_run_json_says_the_real_scan_would_be_refused(library):
    paths = write_library(library, 12)
    run("scan", str(library))
    for p in paths:
        p.unlink()
    summary = json.loads(run("scan", str(library), "--dry-run", "--json").stdout)
    assert summary["dry_run"] is True and summary["refused"]


ENQUEUE_KEYS = {"store", "dry_run", "enqueued", "remaining", "retried_failed", "recovered"}


def test_enqueue_json_counts_what_it_queued(library, emulator, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    write_library(library, 3)
    run("scan", str(library))
    dry = json.loads(run("enqueue", "--dry-run", "--json").stdout)
    assert set(dry) == ENQUEUE_KEYS and dry["dry_run"] is True and dry["enqueued"] == 3
    result = run("enqueue", "--limit", "2", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary) == ENQUEUE_KEYS
    assert (summary["enqueued"], summary["remaining"]) == (2, 1)
    assert summary["store"].startswith("fileSearchStores/")
    assert set(summary["recovered"]) == {"requeued", "polls", "removals", "superseded"}


def test_enqueue_without_a_catalogue_exits_1(home):
    result = run("enqueue", "--json")
    assert result.exit_code == 1 and result.stdout == ""
    assert "no catalogue" in result.stderr


UPLOAD_KEYS = {"exit_code", "run", "library", "log_path"}


def upload_json(*args: str) -> tuple[int, dict, str]:
    """``objlib upload --json`` in its own process (its workers' per-process context must
    not be an earlier test's): exit code, the JSON on stdout, what went to stderr."""
    done = subprocess.run([sys.executable, "-m", "objlib", "upload", "--json", *args],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout), done.stderr


@pytest.mark.slow
def test_upload_json_reports_the_run_and_the_library(library, emulator, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    write_library(library, 2)
    run("scan", str(library))
    plan = json.loads(run("upload", "--dry-run", "--json").stdout)
    assert plan["uploads"] == 2 and len(plan["first"]) == 2
    code, report, _ = upload_json("-n", "2")
    assert code == 0 == report["exit_code"]
    assert set(report) == UPLOAD_KEYS
    assert report["run"]["outcome"] == "done" and report["run"]["indexed"] == 2
    assert report["library"]["progress"]["done"] is True
    assert report["library"]["files"]["indexed"] == 2
    # its workers' log: one JSON stream, huey's lines included, each task's lines named
    lines = [json.loads(line) for line in Path(report["log_path"]).read_text().splitlines()]
    assert {"huey", "objlib.worker"} <= {line["logger"] for line in lines}
    assert all(line.get("task_id") for line in lines if "step" in line)


@pytest.mark.slow
def test_upload_json_exits_1_when_files_failed(library, emulator, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    write_library(library, 2)
    run("scan", str(library))
    emulator.configure(faults={"index_failed": 1.0})
    code, report, _ = upload_json("-n", "2")
    assert code == 1 == report["exit_code"]
    assert report["run"]["failed"] == 2
