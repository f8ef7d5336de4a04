"""The incremental scan: the library on disk against the catalogue.

All catalogue rows are loaded in one query; then each file found on disk is decided:

    on disk                              catalogue row                   action
    eligible by name and stat            none                            read -> new (pending)
    same size and mtime                  eligible (pending ... failed)   unchanged: not read
    same size and mtime                  skipped, binary / not UTF-8     still skipped: not read
    other stat, or a row to revisit      eligible                        read: same hash ->
                                                                         touched, else changed
    read: same hash                      deleted                         restored (not uploaded)
    read: other hash                     deleted or skipped              changed (version + 1)
    not eligible (reason R)              eligible / deleted              skipped (document removed)
    not eligible (reason R)              none / skipped                  skipped with reason R
    gone                                 any but deleted                 deleted (document removed)

A file whose path and stat say nothing new is never read, so a re-scan costs one ``stat``
per file. Files to read are read by a few threads (SHA-256 releases the GIL), and new rows
are inserted in batches, a few hundred per transaction, so a cold scan is about as fast as
``sha256sum`` and workers writing the catalogue meanwhile never wait long. A rename is a
deletion and a new file (the upload is de-duplicated by content later); the summary pairs
them up by content hash.

Before anything is written, the deletion guard (``guard``) counts the rows the listing would
mark deleted and refuses a scan that would delete too many (an unmounted drive looks like an
empty library).

The catalogue belongs to one library root (``meta.library_root``, stored by the first real
scan): tasks read files at root/path, so another root needs another ``--home``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from objlib.catalog import Catalog, lifecycle, open_catalog
from objlib.catalog.lifecycle import DELETED, SKIPPED, NewFile
from objlib.errors import LibraryError
from objlib.log import get_logger
from objlib.scan import guard
from objlib.scan.guard import DeleteLimit
from objlib.scan.metadata import PathMetadata, compile_patterns, fingerprint, parse_path
from objlib.scan.walk import (
    Content,
    Entry,
    Listing,
    check_root,
    is_content_reason,
    list_library,
    read_content,
)
from objlib.settings import Settings

ROOT_KEY = "library_root"
# the metadata fingerprint (``metadata.fingerprint``) every row's metadata was parsed with
METADATA_KEY = "metadata_fingerprint"
# metadata a file declares about itself (read by ``filetypes``), kept beside the path's
DECLARED_KEYS = ("document_title", "author")
INSERT_BATCH = 500
SEEN_BATCH = 5000
READ_BATCH_FILES = 64
READ_BATCH_BYTES = 16 << 20

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(bytes_read, bytes_to_read)`` while files are read."""

log = get_logger(__name__)


@dataclass
class ScanSummary:
    """What a scan found (and, unless ``dry_run``, recorded)."""

    root: str
    dry_run: bool = False
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    touched: int = 0  # same content; size, mtime or metadata refreshed
    restored: int = 0  # deleted, back unchanged: indexed again (pending if its document is gone)
    deleted: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> files
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old, new), by content
    warnings: list[str] = field(default_factory=list)
    refused: str | None = None  # dry run: why the real scan would be refused (deletion guard)
    files: int = 0  # entries found on disk (ignored names not counted)
    read_files: int = 0
    read_bytes: int = 0
    elapsed_s: float = 0.0

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def changes(self) -> int:
        """Rows that were (or would be) written beyond a scanned_at stamp."""
        return self.new + self.changed + self.touched + self.restored + self.deleted

    def rows(self) -> list[tuple[str, int]]:
        out = [("new", self.new), ("changed", self.changed), ("unchanged", self.unchanged),
               ("touched (same content, new stat or metadata)", self.touched),
               ("restored", self.restored), ("deleted", self.deleted)]
        if self.renamed:
            out.append(("  of which renamed (same content)", len(self.renamed)))
        out.append(("skipped", self.skipped_total))
        out += [(f"  {reason}", n) for reason, n in sorted(self.skipped.items())]
        return out

    def to_json(self) -> dict:
        """The stable ``objlib scan --json`` shape (a test pins the keys)."""
        return {"root": self.root, "dry_run": self.dry_run, "new": self.new,
                "changed": self.changed, "unchanged": self.unchanged, "touched": self.touched,
                "restored": self.restored, "deleted": self.deleted,
                "renamed": [{"from": old, "to": new} for old, new in self.renamed],
                "skipped": {"total": self.skipped_total,
                            "by_reason": dict(sorted(self.skipped.items()))},
                "changes": self.changes, "refused": self.refused, "warnings": list(self.warnings),
                "files_found": self.files, "read_files": self.read_files,
                "read_bytes": self.read_bytes, "elapsed_s": round(self.elapsed_s, 3)}


def scan_library(settings: Settings, root: str | os.PathLike, *, dry_run: bool = False,
                 progress: ProgressFn | None = None, hash_workers: int | None = None,
                 now: float | None = None, max_delete: int | None = None,
                 allow_mass_delete: bool = False) -> ScanSummary:
    """Bring the catalogue up to date with the library at ``root``.

    ``dry_run`` computes the same summary and writes nothing (no catalogue is created).
    ``progress(bytes_read, bytes_to_read)`` is called while files are read; ``hash_workers``
    is the number of reading threads (default 4, 1 reads in this thread); ``now`` (epoch
    seconds) stamps every row this scan writes. ``max_delete`` (files) or ``allow_mass_delete``
    replace the settings' deletion limit for this scan. Raises MassDeleteRefused (writing
    nothing) when the scan would mark too many files deleted, LibraryError when the root cannot
    be scanned or belongs to another catalogue, ConfigError for a bad metadata pattern.
    """
    started = time.perf_counter()
    root_path = check_root(root)
    patterns = compile_patterns(tuple(settings.metadata_patterns))
    limit = DeleteLimit.of(settings, max_delete=max_delete, allow_mass_delete=allow_mass_delete)
    summary = ScanSummary(root=str(root_path), dry_run=dry_run)
    catalog = _open_for(settings, root_path, dry_run)
    try:
        known = _known_rows(catalog)
        listing = list_library(root_path, settings.extensions, settings.max_file_bytes)
        summary.files = len(listing.entries)
        summary.warnings += listing.warnings
        _guard_deletions(summary, known, listing, limit)
        parsed_with = fingerprint(patterns)
        recorded = catalog.get_meta(METADATA_KEY) if catalog is not None else None
        scan = _Scan(catalog, patterns, time.time() if now is None else now, dry_run, summary,
                     reuse_metadata=recorded == parsed_with)
        to_read = [(e, known.get(e.path)) for e in listing.entries
                   if not scan.decide_by_stat(e, known.get(e.path))]
        for (entry, row), content in _read_all(to_read, settings.max_file_bytes, progress,
                                               hash_workers):
            scan.decide_by_content(entry, row, content)
        scan.flush()
        present = {e.path for e in listing.entries} - scan.vanished
        scan.remove_gone(known, present, listing.unlisted_dirs)
        if catalog is not None and not dry_run and recorded != parsed_with:
            catalog.set_meta(METADATA_KEY, parsed_with)  # every row is parsed with it now
    finally:
        if catalog is not None:
            catalog.close()
    summary.elapsed_s = time.perf_counter() - started
    for warning in summary.warnings:
        log.warning("scan.warning", message=warning)
    log.debug("scan.finished", root=summary.root, dry_run=dry_run, new=summary.new,
              changed=summary.changed, unchanged=summary.unchanged, deleted=summary.deleted,
              skipped=summary.skipped_total, elapsed_s=round(summary.elapsed_s, 3))
    return summary


# ---------------------------------------------------------------------------- the catalogue


class _Known(NamedTuple):
    id: int
    path: str
    state: str
    size: int | None
    mtime_ns: int | None
    content_hash: str | None
    metadata_json: str | None
    metadata_quality: str | None
    skip_reason: str | None


def _open_for(settings: Settings, root: Path, dry_run: bool) -> Catalog | None:
    """The catalogue, checked to belong to ``root`` (claimed for it by the first real scan)."""
    if dry_run and not settings.library_db.exists():
        return None
    catalog = open_catalog(settings)
    try:
        if dry_run:
            stored = catalog.get_meta(ROOT_KEY)
        else:
            with catalog.write() as conn:
                conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                             "ON CONFLICT(key) DO NOTHING", (ROOT_KEY, str(root)))
                stored = conn.execute("SELECT value FROM meta WHERE key=?",
                                      (ROOT_KEY,)).fetchone()[0]
        if stored is not None and stored != str(root):
            raise LibraryError(
                f"the catalogue {settings.library_db} belongs to the library {stored}, not "
                f"{root}; use another home for this library, e.g. "
                f"objlib --home {settings.home}-{root.name or 'library'} scan {root}")
    except BaseException:
        catalog.close()
        raise
    return catalog


def _guard_deletions(summary: ScanSummary, known: dict[str, _Known], listing: Listing,
                     limit: DeleteLimit) -> None:
    """Refuse, before anything is written, a scan whose listing would mark too many rows
    deleted; a dry run only notes that the real scan would be refused."""
    live = sum(1 for row in known.values() if row.state != DELETED)
    present = {e.path for e in listing.entries}
    to_delete = sum(1 for _ in _gone(known, present, listing.unlisted_dirs))
    reason = guard.refusal(limit, live=live, to_delete=to_delete,
                           root_empty=not listing.entries)
    if reason is None:
        return
    if summary.dry_run:
        summary.refused = reason
        summary.warnings.append(f"the real scan would be refused: {reason}; if you really "
                                f"deleted them: {guard.confirm_hint(summary.root, to_delete)}")
        return
    raise guard.refused(reason, summary.root, live=live, to_delete=to_delete)


def _gone(known: dict[str, _Known], present: set[str],
          unlisted_dirs: list[str]) -> Iterator[tuple[str, _Known]]:
    """Rows whose file is gone (not below a folder that could not be listed: its files may
    well be there)."""
    if "" in unlisted_dirs:
        return
    hidden = tuple(f"{d}/" for d in unlisted_dirs if d)
    for path, row in known.items():
        if path in present or row.state == DELETED:
            continue
        if hidden and path.startswith(hidden):
            continue
        yield path, row


def _known_rows(catalog: Catalog | None) -> dict[str, _Known]:
    if catalog is None:
        return {}
    rows = catalog.query(f"SELECT {', '.join(_Known._fields)} FROM files")
    return {row[1]: _Known(*row) for row in rows}


# ---------------------------------------------------------------------------- decisions


class _Scan:
    """Decides each file against its row and records the decision (unless dry run)."""

    def __init__(self, catalog: Catalog | None, patterns, now: float, dry_run: bool,
                 summary: ScanSummary, *, reuse_metadata: bool = False):
        self.catalog = catalog
        self.patterns = patterns
        # every row's metadata was parsed with these patterns and this parser: a file whose
        # size and mtime did not change keeps it (parsing 10,000 paths was ~0.3 s of a
        # no-change re-scan's ~1 s)
        self.reuse_metadata = reuse_metadata
        self.now = now
        self.dry_run = dry_run or catalog is None
        self.summary = summary
        self.vanished: set[str] = set()
        self._new: list[NewFile] = []
        self._seen: list[int] = []
        self._new_by_hash: dict[str, list[str]] = {}

    def decide_by_stat(self, entry: Entry, row: _Known | None) -> bool:
        """Decide without reading the file if possible; False: the file must be read."""
        if entry.skip_reason is not None:
            self._skipped(entry.path, row, entry.size, entry.mtime_ns, entry.skip_reason)
            return True
        if row is None or (row.size, row.mtime_ns) != (entry.size, entry.mtime_ns):
            return False
        if row.state == SKIPPED and is_content_reason(row.skip_reason):
            self.summary.skipped[row.skip_reason] += 1
            self._seen.append(row.id)
            return True
        if row.state in (SKIPPED, DELETED):
            return False
        if self.reuse_metadata:
            self.summary.unchanged += 1
            self._seen.append(row.id)
            return True
        meta = self._metadata(entry.path, _declared_of(row))
        if _same_metadata(row, meta):
            self.summary.unchanged += 1
            self._seen.append(row.id)
        else:
            self.summary.touched += 1
            self._write(lifecycle.record_touched, row.id, size=entry.size,
                        mtime_ns=entry.mtime_ns, metadata=meta.values, quality=meta.quality,
                        now=self.now)
        return True

    def decide_by_content(self, entry: Entry, row: _Known | None, content: Content) -> None:
        if content.vanished:
            self.vanished.add(entry.path)
            return
        self.summary.read_files += 1
        self.summary.read_bytes += content.size or 0
        size = entry.size if content.size is None else content.size
        mtime_ns = entry.mtime_ns if content.mtime_ns is None else content.mtime_ns
        if content.skip_reason is not None:
            self._skipped(entry.path, row, size, mtime_ns, content.skip_reason)
            return
        digest = content.content_hash
        assert digest is not None, "a file read and not skipped has a hash"
        meta = self._metadata(entry.path, content.declared)
        stat = dict(size=size, mtime_ns=mtime_ns, metadata=meta.values, quality=meta.quality,
                    now=self.now)
        if row is None:
            self.summary.new += 1
            self._new_by_hash.setdefault(digest, []).append(entry.path)
            self._insert(NewFile(entry.path, size, mtime_ns, digest, meta.values, meta.quality))
        elif row.state == DELETED and row.content_hash == digest:
            self.summary.restored += 1
            self._write(lifecycle.restore, row.id, self.now)
            if (row.size, row.mtime_ns) != (size, mtime_ns) or not _same_metadata(row, meta):
                self._write(lifecycle.record_touched, row.id, **stat)
        elif row.state not in (DELETED, SKIPPED) and row.content_hash == digest:
            self.summary.touched += 1
            self._write(lifecycle.record_touched, row.id, **stat)
        else:
            self.summary.changed += 1
            self._write(lifecycle.record_changed, row.id, content_hash=digest, **stat)

    def remove_gone(self, known: dict[str, _Known], present: set[str],
                    unlisted_dirs: list[str]) -> None:
        """Rows whose file is gone become deleted."""
        for path, row in _gone(known, present, unlisted_dirs):
            self.summary.deleted += 1
            self._write(lifecycle.mark_deleted, row.id, self.now)
            renamed_to = self._new_by_hash.get(row.content_hash or "")
            if renamed_to:
                self.summary.renamed.append((path, renamed_to.pop(0)))

    def flush(self) -> None:
        if not self.dry_run and self.catalog is not None:  # (no catalogue: a dry run)
            if self._new:
                lifecycle.record_new_many(self.catalog, self._new, self.now)
            for i in range(0, len(self._seen), SEEN_BATCH):
                lifecycle.seen(self.catalog, self._seen[i:i + SEEN_BATCH], self.now)
        self._new, self._seen = [], []

    def _skipped(self, path: str, row: _Known | None, size, mtime_ns, reason: str) -> None:
        self.summary.skipped[reason] += 1
        if row is None:
            self._insert(NewFile(path, size, mtime_ns, skip_reason=reason))
        elif (row.state, row.skip_reason, row.size, row.mtime_ns) == (SKIPPED, reason, size,
                                                                     mtime_ns):
            self._seen.append(row.id)
        else:
            self._write(lifecycle.record_skipped, path, size=size, mtime_ns=mtime_ns,
                        reason=reason, now=self.now)

    def _insert(self, new: NewFile) -> None:
        self._new.append(new)
        if len(self._new) >= INSERT_BATCH:
            self.flush()

    def _metadata(self, path: str, declared: dict | None = None) -> PathMetadata:
        """The path's metadata, and the title and author the file declares (PDF, DOCX)."""
        meta = parse_path(path, self.patterns)
        if declared:
            meta = PathMetadata({**meta.values, **{k: declared[k] for k in DECLARED_KEYS
                                                   if k in declared}}, meta.quality)
        return meta

    def _write(self, fn, *args, **kwargs) -> None:
        if not self.dry_run:
            fn(self.catalog, *args, **kwargs)


def _declared_of(row: _Known) -> dict | None:
    """The declared title and author a row keeps (its file unchanged, they still hold)."""
    text = row.metadata_json
    if not text or not any(f'"{key}"' in text for key in DECLARED_KEYS):
        return None
    values = json.loads(text)
    return {k: values[k] for k in DECLARED_KEYS if k in values}


def _same_metadata(row: _Known, meta: PathMetadata) -> bool:
    return (row.metadata_quality == meta.quality
            and row.metadata_json == json.dumps(meta.values))


# ---------------------------------------------------------------------------- reading


def default_hash_workers() -> int:
    """Reading threads. Four, whatever the core count: from a cold page cache they overlap
    disk reads (measured 1.2-1.4 s for 10,000 files / 423 MB, against 2.0-2.4 s with one
    thread, on 2 cores); from a warm one they cost ~15% over a single thread."""
    return 4


def _read_all(items: list[tuple[Entry, _Known | None]], max_file_bytes: int,
              progress: ProgressFn | None, workers: int | None
              ) -> Iterator[tuple[tuple[Entry, _Known | None], Content]]:
    """Read the files, yielding results in order; report progress in bytes.

    Threads read batches of files (one future per file costs more than a small file's
    read), a bounded number of batches ahead, while the caller records results."""
    total = sum(entry.size or 0 for entry, _ in items)
    done = 0
    if progress:
        progress(0, total)

    def read_batch(batch):
        return [read_content(entry.abs_path, max_file_bytes) for entry, _ in batch]

    workers = workers or default_hash_workers()
    batches = _batches(items)
    if workers == 1:
        results: Iterable = ((batch, read_batch(batch)) for batch in batches)
        yield from _report(results, progress, total)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="objlib-hash") as pool:
        window: deque = deque()
        for batch in batches:
            window.append((batch, pool.submit(read_batch, batch)))
            if len(window) > 2 * workers:
                batch, future = window.popleft()
                yield from _report([(batch, future.result())], progress, total, done)
                done += sum(entry.size or 0 for entry, _ in batch)
        for batch, future in window:
            yield from _report([(batch, future.result())], progress, total, done)
            done += sum(entry.size or 0 for entry, _ in batch)


def _batches(items: list, max_files: int = READ_BATCH_FILES,
             max_bytes: int = READ_BATCH_BYTES) -> Iterator[list]:
    batch, size = [], 0
    for item in items:
        batch.append(item)
        size += item[0].size or 0
        if len(batch) >= max_files or size >= max_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _report(results: Iterable, progress: ProgressFn | None, total: int, done: int = 0):
    for batch, contents in results:
        for item, content in zip(batch, contents, strict=True):
            done += item[0].size or 0
            yield item, content
        if progress:
            progress(done, total)
