"""``--state-dir DIR``: the emulator's stores, raw files, documents and operations survive a
restart, as the real service's do.

The state lives in ``DIR/state.json`` (the bytes of unfinished uploads in ``DIR/uploads/``,
appended as chunks arrive, so a session cut off between two chunks resumes after a restart;
the documents' text and chunks in ``DIR/search.db``, SQLite written as it changes, see
``search.py``). A killed emulator may restart with a document that state.json still names
but whose chunks were deleted (it is then never found), or with chunks of a document it
forgot (never searched: only the state's documents are).
It is read once at start and written atomically
(a temporary file, fsync, ``os.replace``) by a background thread whenever it changed, at most
every ``interval_s``, and once more at stop. So a clean stop (Ctrl+C, ``Emulator.stop()``)
loses nothing; a killed emulator loses at most the last ``interval_s`` of changes. Writing the
whole state is simple and fast enough for the libraries the emulator serves (a few thousand
objects: a few milliseconds); it is skipped when nothing changed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from objlib.emulator.search import SearchIndex
from objlib.emulator.state import State

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
INDEX_FILE = "search.db"
SAVE_INTERVAL_S = 0.2


class StateDir:
    """Keeps ``state`` in ``directory``: :meth:`load` at start, :meth:`start` the saver,
    :meth:`stop` it with a last save."""

    def __init__(self, directory: str | os.PathLike, state: State,
                 interval_s: float = SAVE_INTERVAL_S):
        self.path = Path(directory) / STATE_FILE
        self.index_path = Path(directory) / INDEX_FILE
        self.state = state
        state.spool_dir = Path(directory) / "uploads"
        self.interval_s = interval_s
        self._written: str | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self) -> bool:
        """Restore the state saved in the directory (creating the directory if needed).
        False when there is none yet; ValueError when the file is not a saved state."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open_index()
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        try:
            snapshot = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{self.path} is not an emulator state: {exc}") from None
        try:
            self.state.restore(snapshot)
        except ValueError as exc:
            raise ValueError(f"{self.path}: {exc}") from None
        self._written = text
        return True

    def _open_index(self) -> None:
        """The search index (documents' text and chunks) lives in ``DIR/search.db``, written
        as it changes (SQLite), not in the JSON snapshot."""
        if self.state.index.path != self.index_path:
            with self.state.lock:
                self.state.index.close()
                self.state.index = SearchIndex(self.index_path)

    def save(self) -> bool:
        """Write the state if it changed since the last write; True if it wrote."""
        with self._lock:
            text = json.dumps(self.state.snapshot(), separators=(",", ":"))
            if text == self._written:
                return False
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._written = text
            return True

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="emulator-state-saver",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the saver and write the state one last time."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            thread.join(timeout=5)
        self.save()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.save()
            except OSError:  # a full disk: keep serving, try again at the next interval
                log.exception("emulator state not saved to %s", self.path)
