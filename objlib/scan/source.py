"""The file a worker uploads: opened without blocking, checked, then streamed and checked again.

    with open_source(root, "Notes/a.txt", size=row.size, content_hash=row.content_hash,
                     max_bytes=settings.max_file_bytes) as source:   # may raise Refused
        reader = source.reader()          # a file object the SDK reads in 8 MiB chunks
        upload(reader)
        reader.matches(row.content_hash)  # False: the file changed while it was sent

A path can become something else between the scan and the upload, and the worker must then
fail that file at once, never hang or read without bound:

- The path is resolved and must stay inside the library root (the scan's symlink rule,
  ``walk.is_inside``); the resolved path is opened with ``O_NOFOLLOW`` so its last part cannot
  turn into a symlink in between.
- ``O_NONBLOCK``: opening a FIFO for reading otherwise waits for a writer — forever, with
  the worker thread stuck in ``open()`` where no signal gets it out. With it, the open
  returns at once and ``fstat`` *on the open descriptor* (not on the path, which could be
  swapped again) says what was opened: anything but a regular file is refused, and so is a
  size over ``max_file_bytes`` or other than the scan's, before a byte is read.
- The content is hashed in 1 MiB chunks and must be the scan's; then the upload reads the
  same descriptor from offset 0 through ``Reader``, which serves exactly the checked size and
  hashes what it serves. The bytes sent are the bytes that were checked only if that second
  hash matches too (the file could be rewritten in place during the upload); the caller
  deletes the raw file otherwise. Memory stays at one chunk, whatever the file's size.

``Refused`` carries the failure class (``vanished``, ``unreadable``, ``ineligible``,
``changed``) and a message naming the path; ``objlib failures`` says what to do for each.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat

from objlib.scan.walk import CHUNK_BYTES, human_bytes, is_inside

_FLAGS = (os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
          | getattr(os, "O_NOFOLLOW", 0))
_RESCAN = "run `objlib scan`"

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class Refused(Exception):
    """The file cannot be uploaded as the scan saw it; ``error_class`` says why."""

    def __init__(self, error_class: str, message: str):
        super().__init__(message)
        self.error_class = error_class


class SourceChanged(OSError):
    """The file shrank while the upload read it (raised inside the SDK's read loop, which
    would otherwise resend empty chunks forever)."""


def open_source(root: str, rel_path: str, *, size: int | None, content_hash: str,
                max_bytes: int) -> Source:
    """The file at ``root/rel_path``, open and checked against the scan's size and hash."""
    path = os.path.join(root, rel_path)
    root_real = os.path.realpath(root)
    real = os.path.realpath(path)
    if not is_inside(root_real, real):
        raise Refused("ineligible", f"{rel_path} now leads outside the library (to {real}); "
                      f"{_RESCAN}")
    try:
        fd = os.open(real, _FLAGS)
    except FileNotFoundError:
        raise Refused("vanished", f"{rel_path} vanished since the scan; {_RESCAN}") from None
    except OSError as exc:
        raise Refused("unreadable", f"cannot read {rel_path}: {exc.strerror or exc}") from None
    source = Source(fd, rel_path)
    try:
        source.check(size, content_hash, max_bytes)
    except BaseException:
        source.close()
        raise
    return source


class Source:
    """An open, checked library file (owns the descriptor; use it as a context manager)."""

    def __init__(self, fd: int, rel_path: str):
        self.fd, self.rel_path, self.size = fd, rel_path, 0

    def check(self, size: int | None, content_hash: str, max_bytes: int) -> None:
        st = os.fstat(self.fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((k for test, k in _KINDS if test(st.st_mode)), "not a regular file")
            raise Refused("ineligible", f"{self.rel_path} is no longer a regular file but "
                          f"{kind}; {_RESCAN}")
        if st.st_size > max_bytes:
            raise Refused("ineligible", f"{self.rel_path} is now too large: {st.st_size} bytes "
                          f"> {human_bytes(max_bytes)}; {_RESCAN}")
        self.size = st.st_size
        if (size is not None and st.st_size != size) or self._hash() != content_hash:
            raise Refused("changed", f"{self.rel_path} changed since the scan; {_RESCAN} to "
                          "pick up the new version")

    def _hash(self) -> str | None:
        digest, offset = hashlib.sha256(), 0
        try:
            while offset < self.size:
                chunk = os.pread(self.fd, min(CHUNK_BYTES, self.size - offset), offset)
                if not chunk:
                    return None  # shorter than fstat said: it is being rewritten
                digest.update(chunk)
                offset += len(chunk)
        except OSError as exc:
            raise Refused("unreadable", f"cannot read {self.rel_path}: "
                          f"{exc.strerror or exc}") from None
        return digest.hexdigest()

    def reader(self) -> Reader:
        return Reader(self.fd, self.size)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Reader(io.RawIOBase):
    """A read-only, seekable view of the first ``size`` bytes of a descriptor that hashes
    what it serves in order. A file object is what the SDK streams from (a path would make
    it send the base name in a header, which breaks on leading spaces and non-ASCII)."""

    def __init__(self, fd: int, size: int):
        super().__init__()
        self._fd, self.size = fd, size
        self._pos = 0
        self._digest = hashlib.sha256()
        self.hashed_bytes = 0  # served in order from offset 0, and hashed
        self.out_of_order = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        want = self.size - self._pos if n is None or n < 0 else min(n, self.size - self._pos)
        if want <= 0:
            return b""
        data = os.pread(self._fd, want, self._pos)
        if len(data) < want:  # rare for a regular file; only EOF stops it for good
            parts = [data]
            while (got := sum(map(len, parts))) < want:
                more = os.pread(self._fd, want - got, self._pos + got)
                if not more:
                    raise SourceChanged(f"the file shrank below {self.size} bytes while it "
                                        "was uploaded")
                parts.append(more)
            data = b"".join(parts)
        self._account(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def _account(self, data: bytes) -> None:
        if self._pos == self.hashed_bytes and not self.out_of_order:
            self._digest.update(data)
            self.hashed_bytes += len(data)
        else:  # a re-read: what was sent can no longer be proven from one pass
            self.out_of_order = True
        self._pos += len(data)

    @property
    def sent_anything(self) -> bool:
        return self.hashed_bytes > 0 or self.out_of_order

    def matches(self, content_hash: str) -> bool:
        """True when every byte served, in order, hashes to ``content_hash``."""
        return (not self.out_of_order and self.hashed_bytes == self.size
                and self._digest.hexdigest() == content_hash)
