"""The store as the emulator holds it, and the guarantee every end-to-end run ends on: **one
document per indexed file version, and no other document** (`docs/architecture.md`,
invariant 6).

    documents(emulator)                   # name -> document (state, customMetadata, ...)
    assert_converged(settings, emulator)  # raises AssertionError with what is wrong
    compare(rows, documents(stats).values()).problems()   # the same check, on data

``compare`` is pure (catalogue rows and documents in, findings out), so the tests, the chaos
run and the benchmarks judge a run by the same rule.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from objlib import reconcile as rc
from tests.support.waits import wait_for

ACTIVE = "STATE_ACTIVE"


def documents(source, store: str | None = None) -> dict[str, dict]:
    """Every document of every store (or of ``store`` only), by name. ``source``: an
    in-process ``Emulator``, an ``EmulatorProcess`` (both have ``stats()``) or a stats dict."""
    stats = source if isinstance(source, dict) else source.stats()
    return {doc["name"]: doc for name, s in stats["stores"].items() if store in (None, name)
            for per_raw_file in s["files"].values() for doc in per_raw_file}


def file_version(doc: dict) -> tuple[int, int]:
    """(file id, version) from a document's ``objlib_file_id``/``objlib_version`` metadata."""
    meta = doc["customMetadata"]
    return int(float(meta["objlib_file_id"])), int(float(meta["objlib_version"]))


@dataclass
class Mismatch:
    """How the store differs from the indexed rows of the catalogue (all empty: it does not)."""

    duplicates: dict[tuple[int, int], int] = field(default_factory=dict)  # version -> documents
    orphans: list[str] = field(default_factory=list)  # documents of no indexed row's version
    missing: list[str] = field(default_factory=list)  # indexed rows (paths) with no document
    wrong: list[str] = field(default_factory=list)  # indexed rows whose recorded document is
    #                                                 another one, or not ACTIVE

    def problems(self) -> list[str]:
        found = []
        for what, items in (("file versions with several documents", self.duplicates),
                            ("documents with no indexed row", self.orphans),
                            ("indexed rows without a document", self.missing),
                            ("indexed rows whose document is another or not ACTIVE",
                             self.wrong)):
            if items:
                found.append(f"{len(items)} {what}: {sorted(items)[:10]}")
        return found


def compare(rows: Iterable[Mapping], docs: Iterable[dict]) -> Mismatch:
    """Catalogue rows (``id``, ``version``, ``state``, ``path``, ``document``) against the
    store's documents."""
    by_version: dict[tuple[int, int], list[dict]] = collections.defaultdict(list)
    for doc in docs:
        by_version[file_version(doc)].append(doc)
    indexed = {(r["id"], r["version"]): r for r in rows if r["state"] == "indexed"}
    mismatch = Mismatch(
        duplicates={k: len(v) for k, v in by_version.items() if len(v) > 1},
        orphans=[d["name"] for k, v in by_version.items() if k not in indexed for d in v])
    for key, row in indexed.items():
        found = by_version.get(key, [])
        if not found:
            mismatch.missing.append(row["path"])
        elif row["document"] not in {d["name"] for d in found} or \
                any(d.get("state", ACTIVE) != ACTIVE for d in found):
            mismatch.wrong.append(row["path"])
    return mismatch


def catalogue_rows(library_db: Path, sql: str = "SELECT * FROM files", args=()) -> list[dict]:
    """Rows of the catalogue, read through a read-only connection (writes nothing)."""
    conn = sqlite3.connect(f"file:{library_db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


def assert_converged(settings, source, store: str | None = None) -> None:
    """One document per indexed file version, the one the row records, ACTIVE; no other
    document. Failed rows and open removals are not judged here (see ``unsettled``)."""
    problems = compare(catalogue_rows(settings.library_db), documents(source, store).values())
    assert not problems.problems(), problems.problems()


def unsettled(settings, source) -> list[str]:
    """Why the library has not settled into the store yet (empty: it has): rows neither
    indexed nor deleted, removals still open, and any mismatch with the store."""
    rows = catalogue_rows(settings.library_db)
    open_removals = catalogue_rows(settings.library_db, "SELECT document FROM removals "
                                   "WHERE removed_at IS NULL")
    found = [f"{r['path']} is {r['state']}" for r in rows
             if r["state"] not in ("indexed", "deleted")]
    found += [f"removal of {r['document']} still open" for r in open_removals]
    return found + compare(rows, documents(source).values()).problems()


def converge(settings, emu, timeout_s: float = 60.0) -> None:
    """Wait until the store matches the catalogue, then reconcile must find no drift."""
    wait_for(lambda: not unsettled(settings, emu), timeout_s, 0.1,
             "the store to match the catalogue")
    report = rc.reconcile(settings)
    assert report.drift == 0, report.to_dict()
