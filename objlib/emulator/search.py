"""The emulator's retrieval: documents split into chunks as File Search splits them, kept in
an SQLite FTS5 full-text index and ranked with ``bm25()``. It is **lexical**: a passage is
found by the words it shares with the question (stemmed by FTS5's Porter tokenizer), not by
meaning as the real service's embeddings find it. Shapes, filters, states and deletions are
faithful; the ranking is only plausible.

Chunking (``whiteSpaceConfig``) [doc: WhiteSpaceConfig reference: "Tokens are defined as words
for this chunking algorithm ... words split by whitespace"; the upper limit is 512 words]:
a chunk holds at most ``maxTokensPerChunk`` whitespace-separated words and repeats the last
``maxOverlapTokens`` words of the chunk before it. Limits as measured on the real API by a
third party (zenn.dev/kozoka_ai, "Gemini File Search Tool"): ``maxTokensPerChunk`` 21..512,
``maxOverlapTokens`` 0..maxTokensPerChunk-1; outside them the emulator answers 400
[unknown: the wording]. The defaults when no config is sent are not documented [unknown]: the
emulator uses 200 words with 20 of overlap (the figures Google's examples use).

Storage: without a state directory everything is in memory; with one, in ``DIR/search.db``
(``persist.py`` opens it), so a restart keeps what it indexed. The raw files' text is kept
from upload to import (``raw_texts``). Every call runs under the state's lock.

Indexed when first needed: ``add_document`` gives the document its key at once (so the
documents keep their import order) and keeps its text and chunking in ``pending``; the
chunking and the FTS5 inserts run for every pending document, in key order, before the
next search or chunk count (``index_pending``). A search therefore sees exactly what an
index built at import would hold, and an import costs the service a row instead of the
split and the full-text inserts (~9.5 ms of the emulator's CPU for a 40 KB text: ~70 % of
what it spent per file on the ``instant`` profile, on the cores objlib shares with it).
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

MAX_TOKENS_PER_CHUNK = (21, 512)   # (lowest, highest) accepted
DEFAULT_MAX_TOKENS_PER_CHUNK = 200
DEFAULT_MAX_OVERLAP_TOKENS = 20
DEFAULT_TOP_K = 10
MAX_TOP_K = 100

_SPACES = re.compile(r"(\s+)")
_TERMS = re.compile(r"\w+")
# left out of a question's terms: they are in nearly every chunk, so they only cost time
# (bm25 scores every chunk that holds a term) and add nothing to the ranking
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers him his how i if in into is it its itself just me more
most my no nor not now of off on once only or other our ours out over own same she should so
some such than that the their theirs them then there these they this those through to too
under until up very was we were what when where which while who whom why will with would
you your yours
""".split())

_SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_texts(file_id TEXT PRIMARY KEY, text TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS documents(k INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS pending(doc INTEGER PRIMARY KEY, text TEXT NOT NULL,
                                   max_words INTEGER NOT NULL, overlap_words INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunk_text(id INTEGER PRIMARY KEY, doc INTEGER NOT NULL,
                                      seq INTEGER NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunk_text_doc ON chunk_text(doc);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(
    text, content='chunk_text', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS chunk_text_added AFTER INSERT ON chunk_text BEGIN
    INSERT INTO chunks(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunk_text_removed AFTER DELETE ON chunk_text BEGIN
    INSERT INTO chunks(chunks, rowid, text) VALUES ('delete', old.id, old.text);
END;
"""


@dataclass(frozen=True)
class Hit:
    document: str   # the document's resource name
    seq: int        # the chunk's place in its document
    text: str
    score: float    # bm25: lower is better


def chunking(config) -> tuple[int, int]:
    """``(maxTokensPerChunk, maxOverlapTokens)`` from a ``chunkingConfig`` (camelCase or
    snake_case), with the defaults; ValueError outside the accepted ranges."""
    config = config or {}
    if not isinstance(config, dict):
        raise ValueError("chunkingConfig must be an object.")
    white = _either(config, "whiteSpaceConfig", "white_space_config") or {}
    if not isinstance(white, dict):
        raise ValueError("chunkingConfig.whiteSpaceConfig must be an object.")
    size = _number(_either(white, "maxTokensPerChunk", "max_tokens_per_chunk"))
    overlap = _number(_either(white, "maxOverlapTokens", "max_overlap_tokens"))
    size = DEFAULT_MAX_TOKENS_PER_CHUNK if size in (None, 0) else size
    low, high = MAX_TOKENS_PER_CHUNK
    if not _whole(size) or not low <= size <= high:
        raise ValueError(f"maxTokensPerChunk must be a whole number from {low} to {high}; "
                         f"got {size!r}.")
    overlap = min(DEFAULT_MAX_OVERLAP_TOKENS, size - 1) if overlap is None else overlap
    if not _whole(overlap) or not 0 <= overlap < size:
        raise ValueError(f"maxOverlapTokens must be a whole number from 0 to "
                         f"maxTokensPerChunk - 1 ({size - 1}); got {overlap!r}.")
    return int(size), int(overlap)


def _either(data: dict, camel: str, snake: str):
    return data[camel] if camel in data else data.get(snake)


def _number(value):
    """proto3 JSON takes an integer as a number or as a string of one."""
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return value


def _whole(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and float(value).is_integer()


def split(text: str, max_words: int, overlap_words: int) -> list[str]:
    """``text`` in chunks of at most ``max_words`` whitespace-separated words, each repeating
    the last ``overlap_words`` of the one before; a chunk keeps the text's own spacing."""
    parts = _SPACES.split(text.strip())  # word, space, word, ..., word
    words = (len(parts) + 1) // 2 if parts != [""] else 0
    chunks, start, step = [], 0, max_words - overlap_words
    while start < words:
        last = min(start + max_words, words) - 1
        chunks.append("".join(parts[2 * start:2 * last + 1]))
        if last == words - 1:
            break
        start += step
    return chunks


def match_query(question: str, operator: str = "OR") -> str | None:
    """An FTS5 query for the words of ``question`` but the most common English ones (all of
    them if nothing else is left), each quoted so that no word is read as FTS5 syntax,
    joined by ``operator`` (OR: any of them; AND: all of them); None when it has no word."""
    terms = list(dict.fromkeys(t.lower() for t in _TERMS.findall(question)))
    terms = [t for t in terms if t not in STOPWORDS] or terms
    return f" {operator} ".join(f'"{t}"' for t in terms) or None


class SearchIndex:
    """Raw files' text, and documents' chunks in an FTS5 index. ``path`` None: in memory."""

    def __init__(self, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.conn = sqlite3.connect(":memory:" if path is None else str(path),
                                    isolation_level=None, check_same_thread=False)
        if path is not None:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)
        self._keys = dict(self.conn.execute("SELECT name, k FROM documents"))

    def close(self) -> None:
        self.conn.close()

    def reset(self) -> None:
        with self._transaction():
            for table in ("raw_texts", "chunk_text", "documents", "pending"):
                self.conn.execute(f"DELETE FROM {table}")
        self._keys = {}

    def _transaction(self):
        return _Transaction(self.conn)

    # -- raw files: their text from upload to import

    def keep_raw_text(self, file_id: str, text: str | None, error: str | None = None) -> None:
        self.conn.execute("INSERT OR REPLACE INTO raw_texts(file_id, text, error) "
                          "VALUES (?, ?, ?)", (file_id, text, error))

    def raw_text(self, file_id: str) -> tuple[str | None, str | None]:
        """``(text, error)`` kept for a raw file; ``(None, None)`` when nothing was kept."""
        row = self.conn.execute("SELECT text, error FROM raw_texts WHERE file_id=?",
                                (file_id,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def forget_raw_text(self, file_id: str) -> None:
        self.conn.execute("DELETE FROM raw_texts WHERE file_id=?", (file_id,))

    # -- documents

    def add_document(self, name: str, text: str, chunking: tuple[int, int]) -> None:
        """``text`` as the document ``name``, in chunks of ``chunking`` (``(maxTokensPerChunk,
        maxOverlapTokens)``), indexed before the next search (``index_pending``)."""
        with self._transaction():
            self._drop(name)
            key = self.conn.execute("INSERT INTO documents(name) VALUES (?)", (name,)).lastrowid
            self.conn.execute("INSERT INTO pending(doc, text, max_words, overlap_words) "
                              "VALUES (?, ?, ?, ?)", (key, text, *chunking))
        self._keys[name] = key

    def index_pending(self) -> int:
        """Chunk and index every document added since the last call, in the order they were
        added; the number indexed."""
        pending = self.conn.execute("SELECT doc, text, max_words, overlap_words FROM pending "
                                    "ORDER BY doc").fetchall()
        if not pending:
            return 0
        with self._transaction():
            for key, text, max_words, overlap_words in pending:
                self.conn.executemany(
                    "INSERT INTO chunk_text(doc, seq, text) VALUES (?, ?, ?)",
                    [(key, seq, chunk) for seq, chunk in enumerate(split(text, max_words,
                                                                         overlap_words))])
            self.conn.execute("DELETE FROM pending")
        return len(pending)

    def drop_documents(self, names) -> None:
        with self._transaction():
            for name in names:
                self._drop(name)

    def _drop(self, name: str) -> None:
        key = self._keys.pop(name, None)
        if key is not None:
            self.conn.execute("DELETE FROM pending WHERE doc=?", (key,))
            self.conn.execute("DELETE FROM chunk_text WHERE doc=?", (key,))
            self.conn.execute("DELETE FROM documents WHERE k=?", (key,))

    def chunk_count(self, name: str) -> int:
        self.index_pending()
        key = self._keys.get(name)
        return 0 if key is None else self.conn.execute(
            "SELECT count(*) FROM chunk_text WHERE doc=?", (key,)).fetchone()[0]

    def query(self, question: str, documents, top_k: int) -> list[Hit]:
        """The ``top_k`` chunks of ``documents`` (names) that best match ``question`` (bm25;
        ties by document and chunk order). Chunks holding every word of the question come
        first; only when fewer than ``top_k`` hold them all are the chunks holding any word
        ranked (bm25 scores every chunk a query matches: with common words, nearly all)."""
        self.index_pending()
        keys = {self._keys[d]: d for d in documents if d in self._keys}
        every, anyone = match_query(question, "AND"), match_query(question, "OR")
        if anyone is None or not keys or top_k <= 0:
            return []
        hits = []
        if every is not None and every != anyone:
            hits = self._ranked(every, keys, top_k)
        return hits if len(hits) >= top_k else self._ranked(anyone, keys, top_k)

    def _ranked(self, match: str, keys: dict[int, str], top_k: int) -> list[Hit]:
        if 2 * len(keys) < len(self._keys):  # a few documents: rank only theirs
            rows = self.conn.execute(
                "SELECT t.doc, t.seq, t.text, bm25(chunks) AS score FROM chunks "
                "JOIN chunk_text t ON t.id = chunks.rowid "
                "WHERE chunks MATCH ? AND t.doc IN (SELECT value FROM json_each(?)) "
                "ORDER BY score, t.doc, t.seq LIMIT ?",
                (match, json.dumps(list(keys)), top_k)).fetchall()
            return [Hit(keys[doc], seq, text, score) for doc, seq, text, score in rows]
        return self._top_of_all(match, keys, top_k)

    def _top_of_all(self, match: str, keys: dict[int, str], top_k: int) -> list[Hit]:
        """Most documents may be returned: rank every chunk (FTS5's own ``ORDER BY rank
        LIMIT``, the fastest form), keep the allowed ones, and ask for more until ``top_k``
        are found or every match was seen."""
        wanted = 2 * top_k
        while True:
            ranked = self.conn.execute(
                "SELECT rowid, rank FROM chunks WHERE chunks MATCH ? ORDER BY rank LIMIT ?",
                (match, wanted)).fetchall()
            score = dict(ranked)
            rows = self.conn.execute(
                "SELECT id, doc, seq, text FROM chunk_text WHERE id IN "
                "(SELECT value FROM json_each(?))", (json.dumps(list(score)),)).fetchall()
            hits = sorted((Hit(keys[doc], seq, text, score[i]) for i, doc, seq, text in rows
                           if doc in keys), key=lambda h: (h.score, h.document, h.seq))
            if len(hits) >= top_k or len(ranked) < wanted:
                return hits[:top_k]
            wanted *= 4


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN")
        return self.conn

    def __exit__(self, exc_type, *rest):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
