"""What a file is: its type by extension, checked against its content, and the MIME type
objlib sends for it.

A file is eligible when its extension is enabled (``settings.extensions``), maps to a type
that File Search's published list has (``objlib.supported_types``), and its content is that
type:

    extension       type (on the wire)                                  content must be
    .txt            text/plain                                          UTF-8 text (a BOM ok)
    .md .markdown   text/markdown                                       UTF-8 text
    .html .htm      text/html                                           text in the charset its
                                                                        <meta> declares, else UTF-8
    .pdf            application/pdf                                     a PDF that opens without
                                                                        a password, with pages
    .docx           application/vnd.openxmlformats-...wordprocessingml  a ZIP with word/document.xml
    .epub           application/epub+zip                                (not in File Search's list:
                                                                        skipped, without reading)
    other           Python's built-in table (``mimetypes``, not the     text types: UTF-8 text;
                    system's, so every machine agrees); a text type     zip-based Office: a ZIP
                    not in File Search's list, or an extension no
                    table knows, is sent as text/plain

Plain text has no place to declare another encoding that File Search is documented to read,
so ``.txt``/``.md`` must be UTF-8; an HTML file carries its declaration inside it, so the
declared charset is used (and checked: the whole file must decode with it).

**Detection is the standard library's, on the first chunk the scan reads anyway**
(``sniff``): ``%PDF-`` (for a ``.pdf``, within its first 1024 bytes, as readers accept), a
ZIP local header, an OLE container, a UTF-16 BOM, a NUL byte. That is all eligibility needs,
and it adds a few µs a text file (0.06 s of CPU over the bench's 10,000 files, measured
against the previous read path). ``filetype`` (a kept library) is asked only to *name* a
binary file's content for its skip reason ("content is image/png, not text"): it costs
20-70 µs a call (measured on 8 KiB heads), 0.6 s on the 10,000-file bench if run on every
file; ``puremagic`` cost ~0.5 ms a call.

Then the type's own check (``documents``): a PDF must end with ``%%EOF`` (else truncated),
open with pypdf, not be encrypted and have pages; a DOCX must be a readable ZIP holding
``word/document.xml``, its parts not encrypted.

Every reason is one line. ``is_content_reason`` tells the scan which reasons only reading
the content can change (such a file is not read again while its size and mtime stay).
"""

from __future__ import annotations

import functools
import mimetypes
import os
from dataclasses import dataclass
from typing import BinaryIO

from objlib import documents
from objlib.documents import Unreadable
from objlib.supported_types import EPUB, is_supported

TEXT, HTML, PDF, DOCX, EPUB_KIND, ZIP, OLE, BINARY_KIND = (
    "text", "html", "pdf", "docx", "epub", "zip", "ole", "binary")


@dataclass(frozen=True, slots=True)
class FileType:
    mime_type: str
    kind: str  # how the content is checked: text, html, pdf, docx, epub, zip, ole
    name: str  # for reasons: "text", "a PDF", ...
    is_text: bool = False  # decoded while hashed (a field, not a property: read per file)

    def __post_init__(self):
        object.__setattr__(self, "is_text", self.kind in (TEXT, HTML))


_OOXML = "application/vnd.openxmlformats-officedocument."
_DOCX_MIME = _OOXML + "wordprocessingml.document"
_BY_EXTENSION = {
    ".txt": FileType("text/plain", TEXT, "text"),
    ".text": FileType("text/plain", TEXT, "text"),
    ".md": FileType("text/markdown", TEXT, "text"),
    ".markdown": FileType("text/markdown", TEXT, "text"),
    ".html": FileType("text/html", HTML, "HTML"),
    ".htm": FileType("text/html", HTML, "HTML"),
    ".xhtml": FileType("text/html", HTML, "HTML"),
    ".pdf": FileType("application/pdf", PDF, "a PDF"),
    ".docx": FileType(_DOCX_MIME, DOCX, "a DOCX"),
    ".epub": FileType(EPUB, EPUB_KIND, "an EPUB"),
    ".xlsx": FileType(_OOXML + "spreadsheetml.sheet", ZIP, "an XLSX"),
    ".pptx": FileType(_OOXML + "presentationml.presentation", ZIP, "a PPTX"),
    ".dotx": FileType(_OOXML + "wordprocessingml.template", ZIP, "a DOTX"),
    ".odt": FileType("application/vnd.oasis.opendocument.text", ZIP, "an ODT"),
    ".rst": FileType("text/x-rst", TEXT, "text"),
    ".rtf": FileType("text/rtf", TEXT, "RTF text"),  # Python says application/rtf: not listed
    ".csv": FileType("text/csv", TEXT, "text"),
    ".tsv": FileType("text/tab-separated-values", TEXT, "text"),
    ".yaml": FileType("text/yaml", TEXT, "text"),
    ".yml": FileType("text/yaml", TEXT, "text"),
}
# application types whose content is text (checked as text)
_TEXTUAL_APPLICATION = frozenset({
    "application/json", "application/xml", "application/sql", "application/typescript",
    "application/ecmascript", "application/dart", "application/x-sh", "application/x-csh",
    "application/x-zsh", "application/x-shellscript", "application/x-php",
    "application/x-powershell", "application/x-latex", "application/x-tex",
    "application/vnd.jupyter", "application/ms-java",
})
_OLE_TYPES = frozenset({"application/msword", "application/vnd.ms-excel", "application/x-hwp"})
_PLAIN = _BY_EXTENSION[".txt"]
_BUILTIN = mimetypes.MimeTypes()  # Python's own table only: /etc/mime.types differs per machine


def extension(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def type_for(path: str) -> FileType:
    """The type a file's extension stands for (``text/plain`` when no table knows it)."""
    return _type_of_extension(extension(path))


@functools.lru_cache(maxsize=256)
def _type_of_extension(ext: str) -> FileType:
    known = _BY_EXTENSION.get(ext)
    if known is not None:
        return known
    mime, _ = _BUILTIN.guess_type("x" + ext, strict=False)
    if mime is None:  # an extension the user enabled that no table knows: text, as plain text
        return _PLAIN
    if mime.startswith("text/") or mime in _TEXTUAL_APPLICATION:
        return FileType(mime, TEXT, "text") if is_supported(mime) else _PLAIN
    if mime in _OLE_TYPES:
        return FileType(mime, OLE, f"an Office file ({mime})")
    if mime == "application/zip":
        return FileType(mime, ZIP, "a ZIP archive")
    return FileType(mime, BINARY_KIND, mime)


def mime_type(path: str) -> str:
    """The MIME type objlib sends for an eligible file (the upload's and the document's)."""
    return type_for(path).mime_type


def unsupported_reason(path: str) -> str | None:
    """Why a file with an enabled extension is still not sent, judging by its type alone:
    File Search does not index that type. None when it does."""
    ftype = type_for(path)
    if ftype.mime_type == EPUB:
        return "EPUB: not a type File Search indexes (application/epub+zip is not in its list)"
    if ftype.kind == BINARY_KIND or not is_supported(ftype.mime_type):
        return f"{ftype.mime_type} ({extension(path)}) is not a type File Search indexes"
    return None


# ---------------------------------------------------------------------------- content

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_WHAT = {PDF: "a PDF document", ZIP: "a ZIP archive",
         OLE: "an OLE container (an encrypted or legacy Office file)",
         "utf16": "UTF-16 text"}
_RENAME = {PDF: " (rename it .pdf)", TEXT: " (rename it .txt)"}


def sniff(head: bytes) -> str:
    """What the first bytes of a file say it is: pdf, zip, ole, utf16, binary or text."""
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(_ZIP_MAGIC):
        return ZIP
    if head.startswith(_OLE_MAGIC):
        return OLE
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf16"
    if b"\x00" in head:
        return BINARY_KIND
    return TEXT


def _named(head: bytes) -> str | None:
    """What ``filetype`` calls this content (None: it does not know). Imported here: only odd
    files get this far, and its import (~10-30 ms) would be paid by every worker process."""
    import filetype

    guess = filetype.guess(head[:8192])
    return guess.mime if guess is not None else None


def content_reason(ftype: FileType, head: bytes) -> str | None:
    """Why the first chunk of a file shows it is not its extension's type; None when it may
    be (the rest of the file and the type's own check decide)."""
    found = sniff(head)
    if ftype.is_text:
        if found == TEXT:
            return None
        if found == "utf16":
            return "UTF-16 text: save it as UTF-8"
        if found == BINARY_KIND:
            name = _named(head)
            return f"content is {name}, not {ftype.name}" if name else BINARY
        return f"content is {_WHAT[found]}, not {ftype.name}" + _RENAME.get(found, "")
    expected = {PDF: PDF, DOCX: ZIP, EPUB_KIND: ZIP, ZIP: ZIP, OLE: OLE}.get(ftype.kind)
    if found == expected or (expected == PDF and b"%PDF-" in head[:1024]):
        return None  # (readers accept a PDF header after some junk)
    if found in (TEXT, "utf16"):
        what = "text"
    elif found == BINARY_KIND:
        what = _named(head) or "unrecognised binary data"
    else:
        what = _WHAT[found]
    return f"content is {what}, not {ftype.name}" + _RENAME.get(found, "")


def text_codec(ftype: FileType, head: bytes) -> tuple[str, str]:
    """(Python codec, name for a reason) a text file must decode with."""
    if ftype.kind == HTML:
        codec, basis = documents.html_codec(head)
        if basis == "declared" and codec != "utf-8":
            return codec, f"{codec} (the charset it declares)"
    return "utf-8", "UTF-8"


_LABEL = {DOCX: "DOCX", EPUB_KIND: "EPUB", ZIP: "ZIP archive"}


def check_document(ftype: FileType, stream: BinaryIO, tail: bytes) -> dict:
    """Check a non-text file's structure; returns the title and author it declares
    (``document_title``, ``author``). Raises Unreadable with the skip reason."""
    if ftype.kind == PDF:
        if b"%%EOF" not in tail:
            raise Unreadable("truncated PDF: no %%EOF marker at its end")
        return documents.pdf_properties(documents.open_pdf(stream))
    if ftype.kind in (DOCX, EPUB_KIND, ZIP):
        archive = documents.open_zip(stream, _LABEL[ftype.kind])
        with archive:
            if ftype.kind == DOCX:
                documents.check_docx(archive)
                return documents.docx_properties(archive)
            if ftype.kind == EPUB_KIND:
                documents.check_epub(archive)
                return documents.epub_properties(archive)
    return {}


# ---------------------------------------------------------------------------- reasons

BINARY = "binary file"
NOT_UTF8 = "not valid UTF-8"
# skip reasons that only the content can change: a file skipped for one of them is not read
# again while its size and mtime stay the same
_CONTENT_PREFIXES = ("binary file", "not valid ", "content is ", "truncated ", "damaged ",
                     "encrypted ", "UTF-16 ", "HTML declares ")


def is_content_reason(reason: str | None) -> bool:
    return reason is not None and reason.startswith(_CONTENT_PREFIXES)
