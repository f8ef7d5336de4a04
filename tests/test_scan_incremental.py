"""Re-scans against the catalogue: new, unchanged (not read), touched, changed, deleted,
restored, renamed, turned (in)eligible; dry runs; one library root per catalogue."""

from __future__ import annotations

import os
import sqlite3

import pytest

from objlib.catalog import open_catalog
from objlib.errors import LibraryError
from objlib.scan import scan_library, scanner
from objlib.views.scan import hashing_progress

NOW = 1_700_000_000.0


def put(root, rel: str, data: str | bytes = "first version\n", mtime_s: float | None = None):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mtime_s is not None:
        os.utime(path, ns=(int(mtime_s * 1e9), int(mtime_s * 1e9)))
    return path


def db(settings, sql: str, params=()) -> list[dict]:
    with sqlite3.connect(settings.library_db) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute(sql, params)]
    conn.close()
    return rows


def row(settings, path: str) -> dict:
    return db(settings, "SELECT * FROM files WHERE path=?", (path,))[0]


def history(settings, path: str) -> list[tuple]:
    return [(h["from_state"], h["to_state"], h["version"]) for h in db(
        settings, "SELECT h.* FROM history h JOIN files f ON f.id=h.file_id WHERE f.path=? "
        "ORDER BY h.id", (path,))]


def open_removals(settings) -> list[dict]:
    return db(settings, "SELECT document, reason FROM removals WHERE removed_at IS NULL "
              "ORDER BY id")


def as_indexed(settings, path: str, document: str) -> None:
    """Simulate the workers: the row's current version is in the store as ``document``."""
    with sqlite3.connect(settings.library_db) as conn:
        conn.execute("UPDATE files SET state='indexed', document=? WHERE path=?", (document, path))
    conn.close()


@pytest.fixture
def lib(tmp_path):
    root = tmp_path / "library"
    root.mkdir()
    return root


@pytest.fixture
def reads(monkeypatch):
    """Count the files the scan reads (hashes)."""
    seen: list[str] = []
    real = scanner.read_content

    def counting(path, max_bytes):
        seen.append(path)
        return real(path, max_bytes)

    monkeypatch.setattr(scanner, "read_content", counting)
    return seen


@pytest.fixture
def parses(monkeypatch):
    """Count the paths the scan parses for metadata."""
    seen: list[str] = []
    real = scanner.parse_path

    def counting(path, patterns):
        seen.append(path)
        return real(path, patterns)

    monkeypatch.setattr(scanner, "parse_path", counting)
    return seen


def test_a_no_change_rescan_parses_no_path_again(settings, lib, parses):
    for i in range(5):
        put(lib, f"Courses/Logic/Logic - Lesson {i} - Intro.txt", f"lesson {i}\n")
    scan_library(settings, lib, now=NOW)
    assert len(parses) == 5
    recorded = db(settings, "SELECT value FROM meta WHERE key=?", (scanner.METADATA_KEY,))

    summary = scan_library(settings, lib, now=NOW + 60)

    assert len(parses) == 5 and summary.unchanged == 5
    assert recorded and recorded[0]["value"] == scanner.fingerprint(scanner.compile_patterns())


def test_rows_parsed_with_other_patterns_or_another_parser_are_parsed_again(settings, lib,
                                                                           parses):
    for i in range(3):
        put(lib, f"Courses/Logic/Logic - Lesson {i} - Intro.txt", f"lesson {i}\n")
    scan_library(settings, lib, now=NOW)
    with sqlite3.connect(settings.library_db) as conn:  # as an older objlib recorded them
        conn.execute("UPDATE meta SET value='an older parser' WHERE key=?",
                     (scanner.METADATA_KEY,))
        conn.execute("UPDATE files SET metadata_json='{}'")
    conn.close()

    summary = scan_library(settings, lib, now=NOW + 60)

    assert len(parses) == 6 and summary.touched == 3
    assert '"lesson": 1' in row(settings, "Courses/Logic/Logic - Lesson 1 - Intro.txt")[
        "metadata_json"]
    summary = scan_library(settings, lib, now=NOW + 120)
    assert len(parses) == 6 and summary.unchanged == 3


def test_the_metadata_fingerprint_follows_the_patterns():
    builtin = scanner.fingerprint(scanner.compile_patterns())
    assert builtin == scanner.fingerprint(scanner.compile_patterns())
    assert builtin != scanner.fingerprint(scanner.compile_patterns(("^(?P<topic>.+)$",)))


def test_a_cold_scan_records_every_file_and_claims_the_library_root(settings, lib):
    put(lib, "Courses/Logic/Logic - Lesson 1 - Intro.txt")
    put(lib, "Books/A Book.txt", "a book\n")

    summary = scan_library(settings, lib, now=NOW)

    assert (summary.new, summary.changed, summary.deleted) == (2, 0, 0)
    assert row(settings, "Books/A Book.txt")["state"] == "pending"
    assert history(settings, "Books/A Book.txt") == [(None, "pending", 1)]
    assert db(settings, "SELECT value FROM meta WHERE key='library_root'")[0]["value"] == str(
        lib.resolve())


def test_an_unchanged_file_is_not_read_again(settings, lib, reads):
    for i in range(5):
        put(lib, f"Notes/n{i}.md", f"note {i}\n")
    scan_library(settings, lib, now=NOW)
    assert len(reads) == 5
    before = db(settings, "SELECT COUNT(*) AS n FROM history")[0]["n"]

    summary = scan_library(settings, lib, now=NOW + 60)

    assert len(reads) == 5  # nothing read the second time
    assert (summary.unchanged, summary.read_files, summary.changes) == (5, 0, 0)
    assert db(settings, "SELECT COUNT(*) AS n FROM history")[0]["n"] == before
    assert {r["scanned_at"] for r in db(settings, "SELECT scanned_at FROM files")} == {NOW + 60}


def test_new_mtime_same_content_is_touched_not_a_new_version(settings, lib, reads):
    path = put(lib, "a.txt", mtime_s=1_000)
    scan_library(settings, lib, now=NOW)
    as_indexed(settings, "a.txt", "doc-a1")
    os.utime(path, ns=(2_000 * 10**9, 2_000 * 10**9))

    summary = scan_library(settings, lib, now=NOW + 1)

    assert summary.touched == 1 and summary.changed == 0
    r = row(settings, "a.txt")
    assert (r["state"], r["version"], r["mtime_ns"], r["document"]) == (
        "indexed", 1, 2_000 * 10**9, "doc-a1")


def test_changed_content_is_version_2_pending_and_keeps_the_indexed_document(settings, lib):
    put(lib, "a.txt", "first version\n", mtime_s=1_000)
    scan_library(settings, lib, now=NOW)
    as_indexed(settings, "a.txt", "doc-a1")
    put(lib, "a.txt", "second version, longer\n", mtime_s=2_000)

    summary = scan_library(settings, lib, now=NOW + 1)

    assert summary.changed == 1
    r = row(settings, "a.txt")
    assert (r["state"], r["version"], r["document"], r["previous_document"]) == (
        "pending", 2, None, "doc-a1")
    assert open_removals(settings) == []  # the old document stays until v2 is indexed


def test_same_size_and_mtime_but_other_content_is_not_noticed(settings, lib):
    """The documented cost of the fast path: size + mtime are trusted."""
    put(lib, "a.txt", "aaaa\n", mtime_s=1_000)
    scan_library(settings, lib, now=NOW)
    put(lib, "a.txt", "bbbb\n", mtime_s=1_000)

    assert scan_library(settings, lib, now=NOW + 1).unchanged == 1


def test_a_vanished_file_is_deleted_and_its_document_scheduled_for_removal(settings, lib):
    path = put(lib, "a.txt")
    put(lib, "b.txt", "stays\n")
    scan_library(settings, lib, now=NOW)
    as_indexed(settings, "a.txt", "doc-a1")
    path.unlink()

    summary = scan_library(settings, lib, now=NOW + 1)

    assert summary.deleted == 1 and summary.unchanged == 1
    assert row(settings, "a.txt")["state"] == "deleted"
    assert open_removals(settings) == [{"document": "doc-a1", "reason": "deleted"}]
    # a second scan does not delete it again
    assert scan_library(settings, lib, now=NOW + 2).deleted == 0


def test_a_deleted_file_that_reappears_unchanged_is_restored_not_reuploaded(settings, lib):
    path = put(lib, "a.txt", mtime_s=1_000)
    scan_library(settings, lib, now=NOW)
    as_indexed(settings, "a.txt", "doc-a1")
    path.unlink()
    scan_library(settings, lib, now=NOW + 1, allow_mass_delete=True)  # its only file
    put(lib, "a.txt", mtime_s=5_000)  # copied back: same bytes, new mtime

    summary = scan_library(settings, lib, now=NOW + 2)

    assert summary.restored == 1 and summary.new == 0
    r = row(settings, "a.txt")
    assert (r["state"], r["version"], r["document"], r["mtime_ns"]) == (
        "indexed", 1, "doc-a1", 5_000 * 10**9)
    assert open_removals(settings) == []


def test_a_deleted_file_that_reappears_changed_is_a_new_version(settings, lib):
    path = put(lib, "a.txt")
    scan_library(settings, lib, now=NOW)
    path.unlink()
    scan_library(settings, lib, now=NOW + 1, allow_mass_delete=True)  # its only file
    put(lib, "a.txt", "something else entirely\n")

    summary = scan_library(settings, lib, now=NOW + 2)

    assert summary.changed == 1
    assert (row(settings, "a.txt")["state"], row(settings, "a.txt")["version"]) == ("pending", 2)


def test_a_rename_is_one_deletion_and_one_new_file_paired_by_content(settings, lib):
    path = put(lib, "Notes/old name.md", "the same words\n")
    scan_library(settings, lib, now=NOW)
    path.rename(lib / "Notes" / "new name.md")

    summary = scan_library(settings, lib, now=NOW + 1)

    assert (summary.deleted, summary.new) == (1, 1)
    assert summary.renamed == [("Notes/old name.md", "Notes/new name.md")]
    assert row(settings, "Notes/old name.md")["state"] == "deleted"
    assert row(settings, "Notes/new name.md")["state"] == "pending"


def test_an_indexed_file_that_is_emptied_becomes_skipped_and_leaves_the_store(settings, lib):
    put(lib, "a.txt", mtime_s=1_000)
    scan_library(settings, lib, now=NOW)
    as_indexed(settings, "a.txt", "doc-a1")
    put(lib, "a.txt", b"", mtime_s=2_000)

    summary = scan_library(settings, lib, now=NOW + 1)

    assert summary.skipped == {"empty file": 1}
    r = row(settings, "a.txt")
    assert (r["state"], r["skip_reason"], r["document"]) == ("skipped", "empty file", None)
    assert open_removals(settings) == [{"document": "doc-a1", "reason": "skipped"}]


def test_a_skipped_file_that_becomes_text_is_changed_content(settings, lib, reads):
    put(lib, "a.txt", b"\x00\x01binary", mtime_s=1_000)
    scan_library(settings, lib, now=NOW)
    assert scan_library(settings, lib, now=NOW + 1).skipped == {"binary file": 1}
    assert len(reads) == 1  # a binary file with the same stat is not read again
    put(lib, "a.txt", "now it is text\n", mtime_s=2_000)

    summary = scan_library(settings, lib, now=NOW + 2)

    assert summary.changed == 1
    r = row(settings, "a.txt")
    assert (r["state"], r["version"], r["skip_reason"]) == ("pending", 2, None)
    assert history(settings, "a.txt") == [(None, "skipped", 1), ("skipped", "pending", 2)]


def test_a_skipped_file_is_revisited_when_the_settings_change(home, lib):
    from objlib.settings import Settings

    put(lib, "notes.rst")
    scan_library(Settings.load(home), lib, now=NOW)
    (home / "config.toml").write_text('extensions = [".txt", ".md", ".rst"]\n')

    summary = scan_library(Settings.load(home), lib, now=NOW + 1)

    assert summary.changed == 1
    assert row(Settings.load(home), "notes.rst")["state"] == "pending"


def test_a_dry_run_on_a_fresh_home_creates_nothing(settings, lib):
    put(lib, "a.txt")
    put(lib, "b.pdf", b"%PDF")

    summary = scan_library(settings, lib, dry_run=True)

    assert (summary.new, summary.skipped_total, summary.dry_run) == (1, 1, True)
    assert not settings.library_db.exists()


def test_a_dry_run_reports_changes_and_writes_nothing(settings, lib):
    changed = put(lib, "changed.txt", mtime_s=1_000)
    gone = put(lib, "gone.txt", "to be deleted\n")
    put(lib, "same.txt", "same\n")
    scan_library(settings, lib, now=NOW)
    put(lib, "changed.txt", "new content here\n", mtime_s=2_000)
    gone.unlink()
    put(lib, "new.txt", "brand new\n")
    before = db(settings, "SELECT * FROM files ORDER BY id")

    summary = scan_library(settings, lib, dry_run=True, now=NOW + 1)

    assert (summary.new, summary.changed, summary.deleted, summary.unchanged) == (1, 1, 1, 1)
    assert db(settings, "SELECT * FROM files ORDER BY id") == before
    assert db(settings, "SELECT COUNT(*) AS n FROM history")[0]["n"] == 3
    assert changed.exists()


def test_a_second_library_root_in_the_same_home_is_refused(settings, lib, tmp_path):
    put(lib, "a.txt")
    scan_library(settings, lib)
    other = tmp_path / "other-library"
    put(other, "b.txt")

    with pytest.raises(LibraryError, match="belongs to the library .*--home"):
        scan_library(settings, other)
    with pytest.raises(LibraryError):
        scan_library(settings, other, dry_run=True)
    assert [r["path"] for r in db(settings, "SELECT path FROM files")] == ["a.txt"]


def test_a_dry_run_does_not_claim_the_library_root(settings, lib, tmp_path):
    put(lib, "a.txt")
    open_catalog(settings).close()  # an existing catalogue, never scanned

    scan_library(settings, lib, dry_run=True)

    assert db(settings, "SELECT * FROM meta WHERE key='library_root'") == []


def test_the_same_root_through_a_symlink_is_the_same_library(settings, lib, tmp_path):
    put(lib, "a.txt")
    scan_library(settings, lib)
    alias = tmp_path / "alias"
    alias.symlink_to(lib, target_is_directory=True)

    assert scan_library(settings, alias).unchanged == 1


def test_many_new_files_are_inserted_in_batches(settings, lib, monkeypatch):
    monkeypatch.setattr(scanner, "INSERT_BATCH", 7)
    for i in range(30):
        put(lib, f"n{i:02}.txt", f"note {i}\n")

    summary = scan_library(settings, lib, hash_workers=3)

    assert summary.new == 30
    assert db(settings, "SELECT COUNT(*) AS n FROM files WHERE state='pending'")[0]["n"] == 30
    ids = [r["id"] for r in db(settings, "SELECT id FROM files ORDER BY path")]
    assert ids == sorted(ids)  # recorded in walk order, threads or not


@pytest.mark.parametrize("workers", [1, 4])
def test_progress_is_reported_in_bytes_up_to_the_total(settings, lib, workers):
    put(lib, "a.txt", "x" * 10)
    put(lib, "b.txt", "y" * 20)
    calls: list[tuple[int, int]] = []

    scan_library(settings, lib, hash_workers=workers,
                 progress=lambda done, total: calls.append((done, total)))

    assert calls[0] == (0, 30) and calls[-1] == (30, 30)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_no_progress_bar_when_stderr_is_not_a_terminal():
    from io import StringIO

    from rich.console import Console

    with hashing_progress(Console(file=StringIO())) as progress:
        assert progress is None
