"""Walking the library and reading its files: what is looked at, what is eligible.

What the walk does with each name below the library root:

- **ignored** (never recorded): hidden names (a leading ``.``, so ``.DS_Store``, ``.git``,
  editor swap files), ``JUNK_NAMES`` (``__pycache__``, ``Thumbs.db``, ``desktop.ini``, ...),
  Office lock files (``~$...``), and names that are not valid UTF-8 (they cannot be stored;
  each is reported as a warning instead).
- **followed**: folders, and symlinks whose target is inside the library root. A folder
  that is its own ancestor (a symlink loop) is not entered again.
- **skipped, with a reason** (recorded, so a user sees why a file is not in the store): a
  symlink that escapes the library ("symlink outside library"), a broken symlink, a symlink
  loop, anything that is not a regular file, an extension not in ``settings.extensions``,
  an empty file, a file over ``settings.max_file_bytes`` or over the API's 100 MB per
  document (File Search refuses both empty and larger documents), a type File Search does not
  index (EPUB: ``filetypes.unsupported_reason``); and, found while reading, content that is
  not its extension's type ("content is a PDF document, not text", "binary file"), text that
  does not decode ("not valid UTF-8"), a truncated, damaged or encrypted PDF or DOCX, a file
  that cannot be read ("unreadable: permission denied"). See ``filetypes``.
- a folder that cannot be listed is reported as a warning; the scan leaves the catalogue
  rows below it alone instead of taking its files for deleted.

Reading a file is one pass in 1 MiB chunks that feeds SHA-256 and, for text, an incremental
decoder together (a character split across two chunks is fine; so is a BOM). The first chunk
is checked against the extension's type; a PDF, DOCX or EPUB is then opened as its type
(the page cache still holds it) and gives the title and author it declares.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from objlib.documents import Unreadable
from objlib.errors import LibraryError
from objlib.scan import filetypes
from objlib.scan.filetypes import BINARY, NOT_UTF8

CHUNK_BYTES = 1 << 20

JUNK_NAMES = frozenset({
    "__pycache__", "__MACOSX", "Thumbs.db", "ehthumbs.db", "desktop.ini", "Desktop.ini",
    "$RECYCLE.BIN", "System Volume Information", "Icon\r", "node_modules",
})

# reasons a file is skipped (the size-dependent ones are built by the functions below)
SYMLINK_OUTSIDE = "symlink outside library"
SYMLINK_BROKEN = "broken symlink"
SYMLINK_LOOP = "symlink loop"
NOT_REGULAR = "not a regular file"
EMPTY = "empty file"
UNREADABLE_PREFIX = "unreadable: "
TAIL_BYTES = 1024  # a PDF's %%EOF must be within its last 1024 bytes (as readers look)


def is_content_reason(reason: str | None) -> bool:
    """Reasons that only reading the content can change: with the same size and mtime, the
    file is not read again."""
    return filetypes.is_content_reason(reason)


def is_ignored(name: str) -> bool:
    """Hidden and junk names: not even recorded."""
    return name.startswith(".") or name.startswith("~$") or name in JUNK_NAMES


@dataclass(frozen=True, slots=True)
class Entry:
    """One file (or file-like name) found by the walk."""

    path: str  # relative to the root, "/"-separated
    abs_path: str
    size: int | None
    mtime_ns: int | None
    # why it is not eligible, as far as its name and stat tell; None: read it to know
    skip_reason: str | None = None


@dataclass
class Listing:
    entries: list[Entry] = field(default_factory=list)
    unlisted_dirs: list[str] = field(default_factory=list)  # relative paths
    warnings: list[str] = field(default_factory=list)


def check_root(root: str | os.PathLike) -> Path:
    """The library root, absolute and resolved; LibraryError when it cannot be scanned. An
    empty name is refused: Path("") is the current folder, never what the user meant."""
    if not os.fspath(root).strip():
        raise LibraryError("the library folder name is empty; give the library folder, "
                           "e.g. objlib scan ~/library")
    path = Path(root).expanduser()
    if not path.exists():
        raise LibraryError(f"library folder {path} does not exist")
    if not path.is_dir():
        raise LibraryError(f"{path} is not a directory; give the library folder")
    try:
        with os.scandir(path) as it:
            next(it, None)
    except PermissionError as exc:
        raise LibraryError(f"library folder {path} is not readable (permission denied)") from exc
    except OSError as exc:
        raise LibraryError(f"library folder {path} cannot be read: {exc.strerror}") from exc
    return path.resolve()


API_MAX_DOCUMENT_BYTES = 100_000_000  # File Search's limit per document: 100 MB (decimal,
                                      # the stricter reading of the docs' "100 MB")


def too_large_reason(size: int, max_bytes: int) -> str:
    if size > API_MAX_DOCUMENT_BYTES and max_bytes > API_MAX_DOCUMENT_BYTES:
        return f"too large: {size} bytes > 100 MB, the API's limit per document"
    return f"too large: {size} bytes > {human_bytes(max_bytes)}"


def _too_large(size: int, max_bytes: int) -> bool:
    return size > min(max_bytes, API_MAX_DOCUMENT_BYTES)


def human_bytes(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def stat_reason(name: str, size: int, extensions, max_file_bytes: int) -> str | None:
    """Why a regular file is not eligible, judging by its name and size only."""
    ext = os.path.splitext(name)[1].lower()
    if ext not in extensions:
        return f"unsupported extension {ext}" if ext else "no file extension"
    unsupported = filetypes.unsupported_reason(name)
    if unsupported is not None:
        return unsupported
    if size == 0:
        return EMPTY
    if _too_large(size, max_file_bytes):
        return too_large_reason(size, max_file_bytes)
    return None


def list_library(root: Path, extensions, max_file_bytes: int) -> Listing:
    """Every entry below ``root`` (resolved), in a stable order (sorted by name per folder)."""
    root_real = str(root)
    listing = Listing()
    root_st = os.stat(root_real)
    # (absolute folder, relative folder, identities of the folder and its ancestors)
    stack = [(root_real, "", frozenset({(root_st.st_dev, root_st.st_ino)}))]
    while stack:
        folder, rel_folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            listing.unlisted_dirs.append(rel_folder)
            listing.warnings.append(f"cannot list {rel_folder or '.'}: {exc.strerror}")
            continue
        subfolders = []
        for child in children:
            name = child.name
            if is_ignored(name):
                continue
            rel = f"{rel_folder}/{name}" if rel_folder else name
            if not _storable(rel):
                listing.warnings.append(f"ignored a name that is not valid UTF-8: {rel!r}")
                continue
            try:
                sub = _classify(child, rel, root_real, ancestors, extensions, max_file_bytes,
                                listing.entries)
            except FileNotFoundError:
                continue  # vanished while we looked: as if it had never been listed
            if sub is not None:
                subfolders.append(sub)
        stack.extend(reversed(subfolders))
    return listing


def _classify(child: os.DirEntry, rel: str, root_real: str, ancestors: frozenset,
              extensions, max_file_bytes: int, entries: list[Entry]):
    """Append the entry for a file; return a (folder, rel, ancestors) to descend into."""
    if child.is_symlink():
        lst = child.stat(follow_symlinks=False)
        try:
            st = os.stat(child.path)
        except OSError as exc:
            reason = SYMLINK_LOOP if exc.errno == errno.ELOOP else SYMLINK_BROKEN
            entries.append(Entry(rel, child.path, None, lst.st_mtime_ns, reason))
            return None
        if not is_inside(root_real, os.path.realpath(child.path)):
            entries.append(Entry(rel, child.path, None, lst.st_mtime_ns, SYMLINK_OUTSIDE))
            return None
    else:
        st = child.stat(follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        identity = (st.st_dev, st.st_ino)
        if identity in ancestors:
            entries.append(Entry(rel, child.path, None, st.st_mtime_ns, SYMLINK_LOOP))
            return None
        return child.path, rel, ancestors | {identity}
    if not stat.S_ISREG(st.st_mode):
        entries.append(Entry(rel, child.path, None, st.st_mtime_ns, NOT_REGULAR))
        return None
    skip_reason = stat_reason(child.name, st.st_size, extensions, max_file_bytes)
    entries.append(Entry(rel, child.path, st.st_size, st.st_mtime_ns, skip_reason))
    return None


def is_inside(root_real: str, target_real: str) -> bool:
    """The rule for symlinks: followed only if their resolved target is the library root or
    below it (both paths resolved). The worker applies it again when it opens a file."""
    return target_real == root_real or target_real.startswith(root_real + os.sep)


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Content:
    """What one read pass learnt about a file."""

    content_hash: str | None = None
    skip_reason: str | None = None
    vanished: bool = False
    # the title and author a PDF, DOCX or EPUB declares (document_title, author)
    declared: dict | None = None
    # the stat of the file that was read (it may differ from the listing's)
    size: int | None = None
    mtime_ns: int | None = None


VANISHED = Content(vanished=True)


def _open_fd(path: str) -> int:
    # O_NONBLOCK: a file replaced by a FIFO since the listing must not hang the scan
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))


def read_content(path: str, max_file_bytes: int) -> Content:
    """SHA-256 and eligibility of a file's content, in one read pass of 1 MiB chunks.

    Never raises for the file's sake: a file that is gone is ``VANISHED``; one that cannot
    be read, is not its extension's type, or does not decode (text) or open (PDF, DOCX)
    comes back with a ``skip_reason``.
    """
    try:
        fd = _open_fd(path)
    except FileNotFoundError:
        return VANISHED
    except OSError as exc:
        return Content(skip_reason=unreadable_reason(exc))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return Content(skip_reason=NOT_REGULAR, mtime_ns=st.st_mtime_ns)
        if _too_large(st.st_size, max_file_bytes):
            return Content(skip_reason=too_large_reason(st.st_size, max_file_bytes),
                           size=st.st_size, mtime_ns=st.st_mtime_ns)
        ftype = filetypes.type_for(path)
        reason, digest, size, tail = _hash_checked(fd, ftype)
        if size == 0 and reason is None:
            reason = EMPTY
        declared = None
        if reason is None and not ftype.is_text:
            try:
                with open(fd, "rb", closefd=False) as stream:
                    declared = filetypes.check_document(ftype, stream, tail) or None
            except Unreadable as exc:
                reason = str(exc)
        return Content(digest if reason is None else None, reason,
                       size=size if reason is None else st.st_size, mtime_ns=st.st_mtime_ns,
                       declared=declared)
    except OSError as exc:
        return Content(skip_reason=unreadable_reason(exc))
    finally:
        os.close(fd)


def _hash_checked(fd: int, ftype: filetypes.FileType
                  ) -> tuple[str | None, str | None, int, bytes]:
    """(skip reason, sha256 hex, bytes read, the last bytes); stops at the first sign that
    the content is not ``ftype`` (its first chunk, a NUL byte or a decoding error in text)."""
    digest = hashlib.sha256()
    decoder = None
    size = 0
    tail = b""
    while True:
        chunk = os.read(fd, CHUNK_BYTES)
        if not chunk:
            break
        if size == 0:
            reason = filetypes.content_reason(ftype, chunk)
            if reason is not None:
                return reason, None, len(chunk), b""
            if ftype.is_text:
                try:
                    codec, codec_name = filetypes.text_codec(ftype, chunk)
                except Unreadable as exc:
                    return str(exc), None, len(chunk), b""
                decoder = codecs.getincrementaldecoder(codec)("strict")
        first = size == 0
        size += len(chunk)
        if decoder is not None:
            if not first and b"\x00" in chunk:  # the first chunk's sniff looked already
                return BINARY, None, size, b""
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return _not_valid(codec_name), None, size, b""
        else:
            tail = (tail + chunk[-TAIL_BYTES:])[-TAIL_BYTES:]
        digest.update(chunk)
    if decoder is not None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:  # the file ends inside a multi-byte character
            return _not_valid(codec_name), None, size, b""
    return None, digest.hexdigest(), size, tail


def _not_valid(codec_name: str) -> str:
    return NOT_UTF8 if codec_name == "UTF-8" else f"not valid {codec_name}"


def unreadable_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return UNREADABLE_PREFIX + "permission denied"
    return UNREADABLE_PREFIX + (exc.strerror or type(exc).__name__).lower()
