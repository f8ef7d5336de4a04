"""The text File Search would index from a document's bytes.

``document_text(data, mime_type)`` is the one entry point (``state.py`` calls it when a raw
file or a store upload is finalized). It returns the text to chunk and index, or raises
``ValueError`` when the bytes cannot be read as that type (the import then fails, as the real
service fails a document it cannot read). A type it does not read returns ``""``: the document
is indexed with nothing to find.

Here: text types only (``text/*`` and the textual application types), decoded as UTF-8 with
undecodable bytes replaced.
"""

from __future__ import annotations

_TEXTUAL_APPLICATION_TYPES = frozenset({
    "application/json", "application/xml", "application/sql", "application/typescript",
    "application/dart", "application/ecmascript", "application/javascript",
    "application/x-javascript", "application/x-python", "application/x-sh",
    "application/x-shellscript", "application/x-csh", "application/x-zsh", "application/x-php",
    "application/x-powershell", "application/x-latex", "application/x-tex",
})


def document_text(data: bytes, mime_type: str) -> str:
    """The text of ``data`` as File Search would index it ("" for a type not read here)."""
    bare = (mime_type or "").split(";")[0].strip().lower()
    if bare.startswith("text/") or bare in _TEXTUAL_APPLICATION_TYPES:
        return data.decode("utf-8", errors="replace")
    return ""
