"""The text the emulator indexes for a document: ``document_text(data, mime_type)``.

What File Search does with each type is its own business; the emulator needs the words of
a document so that a search finds a passage inside a PDF book as it finds one in a
transcript. Per type (``objlib.documents`` reads the formats, for the scan too):

- ``application/pdf``: pypdf's text of every page, pages separated by a form feed
  (``\\f``), so a passage's page is ``text[:offset].count("\\f") + 1``;
- DOCX (``...wordprocessingml.document``): the paragraphs of ``word/document.xml``;
- ``application/epub+zip``: the spine's XHTML in reading order (File Search refuses EPUB,
  and so does the emulator before it gets here; kept for when the list grows);
- ``text/html``: the visible text (no script or style), decoded with its declared charset;
- any other ``text/*`` or textual application type (JSON, XML, code): UTF-8 (a BOM
  dropped, undecodable bytes replaced);
- anything else (an OLE Word file, XLSX, ...): no text (""): the document is indexed with
  nothing to find.

Content that cannot be read as its type (a damaged or encrypted PDF, a DOCX that is not a
ZIP) raises ``ExtractError``, with a one-line message.
"""

from __future__ import annotations

import io

from objlib import documents
from objlib.documents import Unreadable
from objlib.supported_types import EPUB, bare

ExtractError = Unreadable

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_TEXTUAL_APPLICATION = frozenset({
    "application/json", "application/xml", "application/sql", "application/typescript",
    "application/ecmascript", "application/dart", "application/x-sh", "application/x-csh",
    "application/x-zsh", "application/x-shellscript", "application/x-php",
    "application/x-powershell", "application/x-latex", "application/x-tex",
    "application/vnd.jupyter", "application/ms-java", "application/javascript",
})


def document_text(data: bytes, mime_type: str) -> str:
    """The text of a document of ``mime_type`` (parameters ignored) for the search index."""
    kind = bare(mime_type)
    if kind == "application/pdf":
        return documents.pdf_text(documents.open_pdf(io.BytesIO(data)))
    if kind == DOCX:
        with documents.open_zip(io.BytesIO(data), "DOCX") as archive:
            documents.check_docx(archive)
            return documents.docx_text(archive)
    if kind == EPUB:
        with documents.open_zip(io.BytesIO(data), "EPUB") as archive:
            return documents.epub_text(archive)
    if kind in ("text/html", "application/xhtml+xml"):
        return documents.html_text(data)
    if kind.startswith("text/") or kind in _TEXTUAL_APPLICATION:
        return data.decode("utf-8-sig", "replace")
    return ""
