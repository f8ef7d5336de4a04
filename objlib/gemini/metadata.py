"""What objlib sends as a document's custom metadata, display name and raw file id.

The API's limits (reference docs, and a 400 seen in the field):

- at most 20 ``customMetadata`` entries per document;
- a ``string_value`` of at most 256 characters, counted in UTF-8 *bytes*
  ("string_value cannot be more than 256 characters long", allenhutchison/obsidian-gemini#858);
  we apply the same cap to each value of a string list;
- a display name of at most 512 characters;
- resource ids of at most 40 characters from ``[a-z0-9-]``.

Value mapping: ``str`` -> ``string_value`` (stripped; empty skipped; clipped to 256 bytes),
``bool`` -> ``string_value`` ``"true"``/``"false"`` (readable, and it stays a flag when read
back, where 0/1 would come back as a float), ``int``/``float`` -> ``numeric_value`` (NaN and
infinities skipped: JSON cannot carry them), ``date``/``datetime`` -> ISO string, a list or
tuple -> ``string_list_value`` of its non-empty items as strings, ``None`` skipped. Any other
type is a programming error and raises ``TypeError``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from collections.abc import Mapping

MAX_ENTRIES = 20
MAX_STRING_BYTES = 256
MAX_DISPLAY_NAME_CHARS = 512
MAX_ID_CHARS = 40

# Entries kept first when there are more than MAX_ENTRIES; unknown keys follow alphabetically.
PRIORITY = (
    "objlib_catalog", "objlib_file_id", "objlib_version", "path", "content_hash", "category",
    "course", "lesson", "year", "quarter", "week", "topic", "series", "date", "episode", "quality",
    "document_title", "author",  # what a PDF or DOCX declares (objlib.scan.filetypes)
)
_RANK = {key: i for i, key in enumerate(PRIORITY)}

RAW_FILE_PREFIX = "objlib-"
RAW_ID_HEX_DIGITS = 20
_HEX = re.compile(r"[0-9a-f]{32,}")


def build_custom_metadata(values: Mapping[str, object]) -> list[dict]:
    """The ``customMetadata`` list for ``values``: at most 20 entries, in priority order.

    >>> build_custom_metadata({"year": 2024, "path": "a/b.txt", "tags": ["x", "y"]})
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'key': 'path', 'string_value': 'a/b.txt'}, {'key': 'year', 'numeric_value': 2024.0},
     {'key': 'tags', 'string_list_value': {'values': ['x', 'y']}}]
    """
    entries = []
    for key in sorted(values, key=lambda k: (_RANK.get(k, len(PRIORITY)), k)):
        entry = _entry(key, values[key])
        if entry is not None:
            entries.append(entry)
    return entries[:MAX_ENTRIES]


def _entry(key: str, value: object) -> dict | None:
    if not isinstance(key, str) or not key.strip():
        raise TypeError(f"custom metadata key must be a non-empty string, not {key!r}")
    key = key.strip()
    if value is None:
        return None
    if isinstance(value, bool):
        return {"key": key, "string_value": "true" if value else "false"}
    if isinstance(value, (int, float)):
        number = float(value)
        return {"key": key, "numeric_value": number} if math.isfinite(number) else None
    if isinstance(value, (str, dt.date)):
        text = _string(value)
        return {"key": key, "string_value": text} if text else None
    if isinstance(value, (list, tuple)):
        items = [text for text in (_string(v) for v in value if v is not None) if text]
        return {"key": key, "string_list_value": {"values": items}} if items else None
    raise TypeError(f"custom metadata {key!r}: cannot send a {type(value).__name__}")


def _string(value: object) -> str:
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    return clip_utf8(_clean(text, collapse=False), MAX_STRING_BYTES).strip()


def clip_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, never inside a character."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def display_name(text: str, *, fallback: str = "untitled") -> str:
    """A display name the API takes: control characters and unpaired surrogates removed,
    runs of white space made one space, stripped (leading spaces once made an import hang),
    at most 512 characters. ``fallback`` if nothing is left.

    >>> display_name("  Lesson 1\\t/ notes.txt\\n")
    'Lesson 1 / notes.txt'
    """
    return _clean(text)[:MAX_DISPLAY_NAME_CHARS].strip() or fallback


def _clean(text: str, collapse: bool = True) -> str:
    # Cc: control characters, Cf: invisible format characters, Cs: lone surrogates (from
    # undecodable file names; they cannot be encoded as UTF-8). Metadata values keep their
    # inner spaces (a path must stay recognisable); display names are collapsed too.
    kept = "".join(" " if ch.isspace() else ch for ch in text
                   if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    return " ".join(kept.split()) if collapse else kept


def raw_file_id(content_hash: str) -> str:
    """The id objlib chooses for a raw file: ``objlib-`` and the first 20 hex digits (80 bits)
    of the content's SHA-256, so the same content always maps to the same ``files/<id>``.

    27 characters: a document id is the raw file's id, ``-`` and 12 more characters, and
    resource ids are at most 40 characters, so the document id keeps the whole raw id.

    >>> raw_file_id("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855")
    'objlib-e3b0c44298fc1c149afb'
    """
    digest = content_hash.strip().lower()
    if not _HEX.fullmatch(digest):
        raise ValueError(f"not a hex digest of at least 32 digits: {content_hash!r}")
    return RAW_FILE_PREFIX + digest[:RAW_ID_HEX_DIGITS]
