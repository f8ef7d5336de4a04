"""`objlib failures`: every failed file with its error and the fix, counted per class; with
``--skipped``, every skipped file with its reason, counted per reason."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from objlib import failures as fl
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.cli import cli
from objlib.scan import scan_library
from tests.support.disk import write_library

NOW = 1_800_000_000.0



@pytest.fixture
def failed(settings, library):
    """A scanned library of 8 files: 3 transient, 1 changed, 1 vanished failures; 3 pending."""
    write_library(library, 8)
    scan_library(settings, library, now=NOW - 3600)
    catalog = open_catalog(settings)
    rows = catalog.query("SELECT id, path FROM files ORDER BY id")
    outcomes = [("transient", "503 UNAVAILABLE"), ("transient", "503 UNAVAILABLE"),
                ("transient", "timeout"), ("changed", "content changed since the scan"),
                ("vanished", "vanished since the scan")]
    for i, (row, (error_class, message)) in enumerate(zip(rows, outcomes, strict=False)):
        assert lc.mark_queued(catalog, row["id"], 1, f"t{i}", NOW - 100)
        assert lc.claim(catalog, row["id"], 1, f"t{i}", NOW - 90, 300.0, "host:1")
        for _ in range(i):
            lc.record_attempt(catalog, row["id"], 1, error_class, message, NOW - 80)
        assert lc.mark_failed(catalog, row["id"], 1, error_class, message, NOW - 60 + i)
    catalog.close()
    return {r["path"]: r["id"] for r in rows}


def test_failures_lists_every_failed_file_with_class_message_attempts_and_time(settings, failed):
    report = fl.failures_report(settings)

    assert [(f.path, f.error_class, f.attempts) for f in report.failures] == [
        ("Notes/note 0004.txt", "vanished", 4), ("Notes/note 0003.txt", "changed", 3),
        ("Notes/note 0002.txt", "transient", 2), ("Notes/note 0001.txt", "transient", 1),
        ("Notes/note 0000.txt", "transient", 0)]  # newest first
    assert report.failures[0].message == "vanished since the scan"
    assert report.failures[0].failed_at == NOW - 56


def test_failures_are_counted_per_class_most_frequent_first(settings, failed):
    report = fl.failures_report(settings)

    assert report.by_class == {"transient": 3, "changed": 1, "vanished": 1}
    assert list(report.by_class) == ["transient", "changed", "vanished"]


def test_each_class_comes_with_the_command_that_fixes_it(settings, library, failed):
    report = fl.failures_report(settings)

    assert report.hint("transient") == "objlib enqueue --retry-failed"
    for error_class in ("changed", "vanished"):
        hint = report.hint(error_class)
        assert f"objlib scan {library.resolve()}" in hint
        assert hint.index("objlib scan") < hint.index("objlib enqueue --retry-failed")


def test_class_filter_keeps_the_counts_of_every_class(settings, failed):
    result = CliRunner().invoke(cli, ["failures", "--class", "transient", "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {f["error_class"] for f in data["failed"]} == {"transient"}
    assert len(data["failed"]) == 3
    assert data["by_class"] == {"transient": 3, "changed": 1, "vanished": 1}
    assert set(data["failed"][0]) == {"path", "error_class", "message", "attempts",
                                      "rate_limited", "failed_at", "version"}
    assert data["hints"]["transient"] == "objlib enqueue --retry-failed"


def test_failures_table_shows_files_counts_and_fixes(failed):
    result = CliRunner().invoke(cli, ["failures"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    for text in ("5 failed file(s)", "note 0004.txt", "vanished since the scan", "by class",
                 "objlib enqueue --retry-failed", "objlib scan"):
        assert text in result.output, text


def test_no_failures_is_said_plainly(settings, library):
    write_library(library, 2)
    scan_library(settings, library)

    result = CliRunner().invoke(cli, ["failures"])

    assert result.exit_code == 0 and "no failed files" in result.output


# ---------------------------------------------------------------------------- --skipped


def test_skipped_files_are_listed_with_their_reasons_and_grouped(settings, library):
    write_library(library, 2)
    (library / "empty.txt").write_text("")
    (library / "other empty.md").write_text("")
    (library / "scan.txt").write_bytes(b"\x00\x01binary")
    (library / "slides.pdf").write_bytes(b"%PDF-1.4")
    scan_library(settings, library)

    result = CliRunner().invoke(cli, ["failures", "--skipped", "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    truncated = "truncated PDF: no %%EOF marker at its end"
    assert data["skipped"] == [{"path": "empty.txt", "reason": "empty file"},
                               {"path": "other empty.md", "reason": "empty file"},
                               {"path": "scan.txt", "reason": "binary file"},
                               {"path": "slides.pdf", "reason": truncated}]
    assert data["by_reason"] == {"empty file": 2, "binary file": 1, truncated: 1}


def test_reasons_with_a_per_file_figure_are_grouped_by_their_kind():
    assert fl.reason_group("too large: 123456789 bytes > 100 MB") == "too large"
    assert fl.reason_group("unreadable: permission denied") == "unreadable: permission denied"
    assert fl.reason_group("unsupported extension .mp3") == "unsupported extension .mp3"


def test_skipped_table_shows_files_and_reasons(settings, library):
    (library / "empty.txt").write_text("")
    scan_library(settings, library)

    result = CliRunner().invoke(cli, ["failures", "--skipped"])

    assert result.exit_code == 0, result.output
    assert "1 skipped file(s)" in result.output and "by reason" in result.output
    assert "empty file" in result.output


# ---------------------------------------------------------------------------- errors


def test_failures_without_a_catalogue_says_to_scan_first(settings):
    result = CliRunner().invoke(cli, ["failures"])

    assert result.exit_code == 1
    assert "objlib scan" in result.output and "Traceback" not in result.output
    assert not settings.library_db.exists()


def test_class_does_not_go_with_skipped(failed):
    result = CliRunner().invoke(cli, ["failures", "--skipped", "--class", "transient"])

    assert result.exit_code == 2 and "--class" in result.output
