"""The catalogue database: connections, the one transaction helper, and migrations.

Schema changes are numbered functions applied in order; ``PRAGMA user_version`` records how
far a database has come. Each migration runs with its version bump in one transaction, so a
crash leaves the database at the old version or the new one, never between. A database from
a newer objlib is refused before anything is written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from objlib.errors import CatalogError

BUSY_TIMEOUT_S = 30.0


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # not executescript(): it would COMMIT the surrounding migration transaction
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _m1_initial(conn: sqlite3.Connection) -> None:
    _run_script(
        conn,
        """
        CREATE TABLE files (
            id                INTEGER PRIMARY KEY,
            path              TEXT NOT NULL UNIQUE,
            size              INTEGER,
            mtime_ns          INTEGER,
            content_hash      TEXT,
            state             TEXT NOT NULL,
            version           INTEGER NOT NULL DEFAULT 1,
            metadata_json     TEXT,
            metadata_quality  TEXT,
            skip_reason       TEXT,
            remote_file       TEXT,
            operation         TEXT,
            import_requested_at REAL,
            document          TEXT,
            previous_document TEXT,
            task_id           TEXT,
            lease_until       REAL,
            lease_owner       TEXT,
            poll_deadline     REAL,
            attempts          INTEGER NOT NULL DEFAULT 0,
            rate_limited      INTEGER NOT NULL DEFAULT 0,
            error_class       TEXT,
            error_message     TEXT,
            created_at        REAL NOT NULL,
            state_changed_at  REAL NOT NULL,
            scanned_at        REAL,
            queued_at         REAL,
            upload_started_at REAL,
            import_started_at REAL,
            indexed_at        REAL,
            failed_at         REAL
        );
        CREATE INDEX files_state ON files(state, state_changed_at);
        CREATE TABLE history (
            id         INTEGER PRIMARY KEY,
            file_id    INTEGER NOT NULL,
            version    INTEGER NOT NULL,
            from_state TEXT,
            to_state   TEXT NOT NULL,
            at         REAL NOT NULL,
            why        TEXT
        );
        CREATE INDEX history_at ON history(at, to_state);
        CREATE INDEX history_file ON history(file_id);
        CREATE TABLE errors (
            id          INTEGER PRIMARY KEY,
            file_id     INTEGER,
            version     INTEGER,
            at          REAL NOT NULL,
            error_class TEXT NOT NULL,
            message     TEXT
        );
        CREATE INDEX errors_at ON errors(at);
        CREATE TABLE removals (
            id           INTEGER PRIMARY KEY,
            document     TEXT NOT NULL UNIQUE,
            file_id      INTEGER,
            reason       TEXT NOT NULL,
            requested_at REAL NOT NULL,
            attempts     INTEGER NOT NULL DEFAULT 0,
            last_error   TEXT,
            removed_at   REAL
        );
        CREATE INDEX removals_open ON removals(removed_at);
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT
        );
        """
    )


def _m2_runs(conn: sqlite3.Connection) -> None:
    """Runs of ``objlib upload`` (objlib.runs): one row per run, and the files it took on in
    enqueue order (``position``), at the version it took them on."""
    _run_script(
        conn,
        """
        CREATE TABLE runs (
            id           INTEGER PRIMARY KEY,
            started_at   REAL NOT NULL,
            finished_at  REAL,
            outcome      TEXT NOT NULL,
            owner        TEXT,
            store        TEXT,
            concurrency  INTEGER,
            batch_size   INTEGER,
            total        INTEGER NOT NULL DEFAULT 0,
            indexed      INTEGER,
            failed       INTEGER,
            left_over    INTEGER,
            retried      INTEGER,
            rate_limited INTEGER
        );
        CREATE TABLE run_files (
            run_id   INTEGER NOT NULL REFERENCES runs(id),
            position INTEGER NOT NULL,
            file_id  INTEGER NOT NULL,
            version  INTEGER NOT NULL,
            PRIMARY KEY (run_id, position)
        );
        CREATE UNIQUE INDEX run_files_file ON run_files(file_id, run_id);
        """
    )


def _m3_identity(conn: sqlite3.Connection) -> None:
    """The catalogue's own id (``meta.catalog_id``: every document it imports carries it, so
    reconcile never touches another catalogue's documents), and ``superseded``: imports of a
    version that was replaced (or deleted) while the import was in flight. Their documents
    are removed once known (``objlib.pipeline.settle_superseded``)."""
    # what secrets.token_hex(6) returns, without importing secrets (hmac and hashlib: ~9 % of
    # the imports of an `objlib status` process, which never migrates)
    conn.execute("INSERT INTO meta(key, value) VALUES('catalog_id', ?) "
                 "ON CONFLICT(key) DO NOTHING", (os.urandom(6).hex(),))
    _run_script(
        conn,
        """
        CREATE TABLE superseded (
            id           INTEGER PRIMARY KEY,
            file_id      INTEGER NOT NULL,
            version      INTEGER NOT NULL,
            operation    TEXT,
            document     TEXT,
            content_hash TEXT,
            requested_at REAL NOT NULL,
            settled_at   REAL,
            outcome      TEXT,
            UNIQUE (file_id, version)
        );
        CREATE INDEX superseded_open ON superseded(settled_at)
        """
    )


def _m4_poll_looks(conn: sqlite3.Connection) -> None:
    """``files.polls``: how many times the current import's operation was asked and found
    not done. The first look (0) teaches when imports are done (``objlib.pace``), and an
    indexed row's count tells how many ``operations.get`` it cost beyond one."""
    conn.execute("ALTER TABLE files ADD COLUMN polls INTEGER NOT NULL DEFAULT 0")


# Append new migrations at the end; never edit or reorder a released one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m1_initial, _m2_runs, _m3_identity,
                                                          _m4_poll_looks]
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: str | Path, *, migrate: bool = True,
            busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open the catalogue (creating it if missing), in WAL mode, migrated to this version.
    A file that is there but is not an objlib catalogue (empty, another program's SQLite) is
    refused untouched: adopting it as a new catalogue would upload the whole library again.
    A writer that holds the file longer than ``busy_timeout_s`` gives a clear CatalogError."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise CatalogError(f"{path} is empty (0 bytes), so it is not a catalogue: it was "
                           "truncated or never written. Restore a copy, or move it away if "
                           "you mean to start a new catalogue; it was not touched")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CatalogError(f"cannot keep a catalogue in {path.parent} ({exc.strerror}): it "
                           "must be a folder you can write to; point --home / OBJLIB_HOME at "
                           "one") from exc
    conn = None
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        _refuse_foreign(conn, path, version)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        if migrate and version < SCHEMA_VERSION:
            _migrate(conn)
    except BaseException as exc:
        if conn is not None:
            conn.close()
        if isinstance(exc, sqlite3.DatabaseError):
            raise database_error(exc, path, busy_timeout_s) from exc
        raise
    return conn


def _refuse_foreign(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Only a new database (version 0, no tables) or one of ours (``files`` at version > 0)
    may be opened; a newer objlib's is refused before anything is written."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if (version == 0 and tables) or (version > 0 and "files" not in tables):
        raise CatalogError(
            f"{path} is a SQLite database but not an objlib catalogue (user_version {version}, "
            f"tables: {', '.join(sorted(tables)) or 'none'}); it was not touched. Move it away "
            "or point --home / OBJLIB_HOME at another folder")
    if version > SCHEMA_VERSION:
        raise CatalogError(
            f"{path} was written by a newer objlib (schema {version}, this one knows "
            f"{SCHEMA_VERSION}); upgrade objlib — the database was not touched")


_CORRUPT = ("malformed", "not a database", "disk image", "Could not decode")
_NO_ACCESS = ("readonly", "read-only", "unable to open", "permission")


def _is_lock(exc: sqlite3.DatabaseError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def database_error(exc: sqlite3.DatabaseError, path: Path | str,
                   busy_timeout_s: float = BUSY_TIMEOUT_S) -> CatalogError:
    """The one translation of a SQLite error met on the catalogue into what the user can do:
    wait (locked), fix permissions (nothing lost), or restore a damaged file."""
    text = str(exc)
    if _is_lock(exc):
        return CatalogError(f"{path} is locked by another writer for more than "
                            f"{busy_timeout_s:g} s; is another objlib command stuck? "
                            "Nothing was changed; try again when it is done")
    if any(word in text for word in _NO_ACCESS):
        return CatalogError(f"{path} cannot be written or opened ({text}): check the "
                            f"permissions of the file and of its folder {Path(path).parent}; "
                            "nothing was lost")
    if any(word in text for word in _CORRUPT):
        return CatalogError(f"{path} is corrupt ({text}; quick_check: {quick_check(path)}). "
                            "Nothing more was written to it: restore it from a backup (or "
                            f"salvage its rows with `sqlite3 {path} .recover`), or move it away")
    return CatalogError(f"{path} cannot be used as the objlib catalogue ({text}); move it "
                        "away or restore a copy")


def quick_check(path: Path | str) -> str:
    """The first finding of ``PRAGMA quick_check``, through a fresh read-only connection (only
    on the error path: it reads the whole file)."""
    try:
        with closing(sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro",
                                     uri=True, timeout=1.0)) as conn:
            report = "\n".join(r[0] for r in conn.execute("PRAGMA quick_check"))
    except sqlite3.DatabaseError as exc:
        return f"fails too, {exc}"
    findings = [line for line in report.splitlines() if not line.startswith("*** in database")]
    return findings[0] if findings else "no finding"


def _migrate(conn: sqlite3.Connection) -> None:
    while True:
        with transaction(conn):
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current >= SCHEMA_VERSION:
                return
            MIGRATIONS[current](conn)
            conn.execute(f"PRAGMA user_version={current + 1}")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """The one write path: BEGIN IMMEDIATE, commit on success, roll back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # SQLite itself rolls back on some errors (corrupt, I/O)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Catalog:
    """The catalogue file, with one connection per thread (huey runs tasks in threads)."""

    def __init__(self, path: str | Path, busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._frozen = threading.Event()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, busy_timeout_s=self.busy_timeout_s)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def freeze(self) -> None:
        """No write through this object from now on: each writer waits for the process to
        end, before its transaction begins (so it holds no lock). For an immediate stop: the
        figures the process reports last stay true, and what was not written is resumed."""
        self._frozen.set()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        if self._frozen.is_set():
            threading.Event().wait()  # until the process ends
        try:
            with transaction(self.conn) as conn:
                yield conn
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from exc

    def query(self, sql: str, params=()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: sqlite3.DatabaseError) -> CatalogError:
        """The error for the user; unless it was a lock, this thread's connection is dropped
        so the next use opens a fresh one (a read-only file opened before its permission was
        fixed stays read-only for the connection's whole life)."""
        error = database_error(exc, self.path, self.busy_timeout_s)
        if not _is_lock(exc):
            self._drop_connection()
        return error

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)
            conn.close()

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.query("SELECT value FROM meta WHERE key=?", (key,))
        return row[0]["value"] if row else default

    def get_meta_json(self, key: str) -> dict | None:
        """A meta value written as a JSON object; None when missing or not JSON."""
        value = self.get_meta(key)
        try:
            return json.loads(value) if value else None
        except ValueError:
            return None

    @property
    def id(self) -> str | None:
        """This catalogue's id (migration 3): every document it imports carries it. Made
        once and never changed, so read once."""
        known = getattr(self, "_id", None)
        if known is None:
            known = self._id = self.get_meta("catalog_id")
        return known

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
