"""The catalogue file: migrations, refusal of unusable databases, WAL, and the lifecycle
functions the scan relies on."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from objlib.catalog import Catalog, lifecycle, open_catalog
from objlib.catalog.db import SCHEMA_VERSION, connect
from objlib.catalog.lifecycle import NewFile
from objlib.errors import CatalogError

NOW = 1_700_000_000.0


def _tables(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_a_fresh_catalogue_is_created_at_the_current_schema_version(settings):
    catalog = open_catalog(settings)

    assert catalog.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    assert {"files", "history", "removals", "meta"} <= _tables(settings.library_db)


def test_an_empty_database_at_version_0_is_migrated(tmp_path):
    path = tmp_path / "library.db"
    with closing(sqlite3.connect(path)) as conn:  # SQLite wrote its header: version 0, no tables
        conn.execute("VACUUM")
    assert path.stat().st_size > 0  # (a 0-byte file is refused: test_catalog_integrity.py)

    conn = connect(path)

    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "files" in _tables(path)
    conn.close()


def test_reopening_a_current_catalogue_changes_nothing(tmp_path):
    path = tmp_path / "library.db"
    connect(path).close()
    conn = connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_catalogue_from_a_newer_objlib_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "library.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE files(x)")
        conn.execute("CREATE TABLE future(x)")
        conn.execute("PRAGMA user_version=99")
    conn.close()
    before = path.read_bytes()

    with pytest.raises(CatalogError, match=r"newer objlib \(schema 99"):
        connect(path)

    assert path.read_bytes() == before
    assert not (tmp_path / "library.db-wal").exists()


def test_a_file_that_is_not_sqlite_is_a_clear_catalog_error(tmp_path):
    path = tmp_path / "library.db"
    path.write_bytes(b"this is not a database, just some garbage\x00\x01\x02" * 100)

    with pytest.raises(CatalogError, match="not a usable objlib catalogue|corrupt") as err:
        connect(path)

    assert "--home" in str(err.value) or "move it away" in str(err.value)


def test_the_catalogue_runs_in_wal_mode(settings):
    catalog = open_catalog(settings)

    assert catalog.query("PRAGMA journal_mode")[0][0].lower() == "wal"


# ---------------------------------------------------------------------------- lifecycle for scan


def _history(catalog: Catalog, file_id: int) -> list[tuple]:
    return [tuple(r) for r in catalog.query(
        "SELECT version, from_state, to_state, why FROM history WHERE file_id=? ORDER BY id",
        (file_id,))]


def test_record_new_many_inserts_pending_and_skipped_rows_with_history(settings):
    catalog = open_catalog(settings)
    files = [NewFile("a.txt", 3, 10, "h" * 64, {"title": "a"}, "none"),
             NewFile("b.pdf", 5, 11, skip_reason="unsupported extension .pdf")]

    assert lifecycle.record_new_many(catalog, files, NOW) == 2

    a, b = lifecycle.by_path(catalog, "a.txt"), lifecycle.by_path(catalog, "b.pdf")
    assert (a.state, a.version, a.content_hash, a.metadata, a.metadata_quality) == (
        "pending", 1, "h" * 64, {"title": "a"}, "none")
    assert (b.state, b.skip_reason, b.content_hash) == (
        "skipped", "unsupported extension .pdf", None)
    assert _history(catalog, a.id) == [(1, None, "pending", "new file")]
    assert _history(catalog, b.id) == [(1, None, "skipped", "unsupported extension .pdf")]


def test_record_new_many_leaves_an_existing_path_alone(settings):
    catalog = open_catalog(settings)
    first = lifecycle.record_new(catalog, "a.txt", size=1, mtime_ns=1, content_hash="x",
                                 metadata={}, quality="none", now=NOW)

    inserted = lifecycle.record_new_many(
        catalog, [NewFile("a.txt", 2, 2, "y", {}, "none"), NewFile("b.txt", 2, 2, "z", {}, "none")],
        NOW + 1)

    assert inserted == 1
    row = lifecycle.get(catalog, first)
    assert (row.content_hash, row.size) == ("x", 1)
    assert len(_history(catalog, first)) == 1


def test_a_skipped_file_that_becomes_eligible_is_a_new_pending_version(settings):
    catalog = open_catalog(settings)
    lifecycle.record_new_many(catalog, [NewFile("a.txt", 0, 1, skip_reason="empty file")], NOW)
    row = lifecycle.by_path(catalog, "a.txt")

    assert lifecycle.record_changed(catalog, row.id, size=5, mtime_ns=2, content_hash="h",
                                    metadata={"title": "a"}, quality="none", now=NOW + 1)

    row = lifecycle.get(catalog, row.id)
    assert (row.state, row.version, row.skip_reason, row.content_hash) == ("pending", 2, None, "h")
    assert _history(catalog, row.id)[-1] == (2, "skipped", "pending", "content changed")
