"""Eligibility by content type: each type File Search indexes is scanned as pending with the
MIME type objlib sends and the title/author it declares; every disguised or broken file is
skipped with a one-line reason and never read again while it stays the same."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from objlib.catalog import open_catalog
from objlib.scan import filetypes, scan_library
from objlib.settings import Settings
from scripts import sample_documents as sd

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT = "The quick brown fox considers the law of identity.\n" * 40
PDF = sd.pdf_bytes(["Page one of the book.", "Page two of the book."], title="A Book",
                   author="Ada Lovelace")
DOCX_BYTES = sd.docx_bytes(["Minutes of the meeting.", "Second paragraph."],
                           title="Minutes", author="R. Secretary")


def put(root: Path, rel: str, data: bytes | str, mtime_s: int | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mtime_s is not None:
        os.utime(path, (mtime_s, mtime_s))
    return path


def rows(settings) -> dict[str, dict]:
    catalog = open_catalog(settings)
    try:
        return {r["path"]: dict(r) for r in catalog.query("SELECT * FROM files")}
    finally:
        catalog.close()


def reason_of(settings, lib: Path, rel: str, data: bytes | str) -> str | None:
    put(lib, rel, data)
    scan_library(settings, lib)
    return rows(settings)[rel]["skip_reason"]


# ---------------------------------------------------------------------------- eligible types


def test_every_default_type_is_pending_with_the_mime_type_it_is_sent_as(settings, library):
    files = {"a.txt": (TEXT, "text/plain"), "b.md": ("# Title\n\n" + TEXT, "text/markdown"),
             "c.pdf": (PDF, "application/pdf"), "d.docx": (DOCX_BYTES, DOCX),
             "e.html": (sd.html_bytes("Page", ["A paragraph."]), "text/html")}
    for rel, (data, _) in files.items():
        put(library, rel, data)

    summary = scan_library(settings, library)

    assert summary.new == 5 and summary.skipped_total == 0
    assert {p: r["state"] for p, r in rows(settings).items()} == dict.fromkeys(files, "pending")
    assert {rel: filetypes.mime_type(rel) for rel in files} == {
        rel: mime for rel, (_, mime) in files.items()}


def test_the_default_extensions_are_the_issue_s_six():
    assert Settings(home=Path("x")).extensions == (".txt", ".md", ".pdf", ".docx", ".html",
                                                   ".epub")


def test_a_pdf_and_a_docx_add_the_title_and_author_they_declare(settings, library):
    put(library, "Books/Some Book.pdf", PDF)
    put(library, "Notes/minutes.docx", DOCX_BYTES)

    scan_library(settings, library)

    import json
    found = {p: json.loads(r["metadata_json"]) for p, r in rows(settings).items()}
    assert found["Books/Some Book.pdf"] == {"category": "Books", "title": "Some Book",
                                            "document_title": "A Book",
                                            "author": "Ada Lovelace"}
    assert found["Notes/minutes.docx"]["document_title"] == "Minutes"
    assert found["Notes/minutes.docx"]["author"] == "R. Secretary"


def test_a_rescan_keeps_the_declared_metadata_without_reading_or_touching(settings, library):
    put(library, "Books/Some Book.pdf", PDF, mtime_s=1_000)
    scan_library(settings, library)
    before = rows(settings)["Books/Some Book.pdf"]

    summary = scan_library(settings, library)

    assert (summary.unchanged, summary.touched, summary.read_files) == (1, 0, 0)
    assert rows(settings)["Books/Some Book.pdf"]["metadata_json"] == before["metadata_json"]


def test_a_document_that_declares_nothing_has_the_path_metadata_only(settings, library):
    put(library, "plain.pdf", sd.pdf_bytes(["no info"]))
    scan_library(settings, library)
    assert rows(settings)["plain.pdf"]["metadata_json"] == '{"title": "plain"}'


def test_an_html_file_decodes_with_the_charset_it_declares(settings, library):
    put(library, "latin.html", sd.html_bytes("Café", ["déjà vu"], charset="iso-8859-1"))
    undeclared = "<html><body>déjà vu</body></html>".encode("latin-1")

    assert reason_of(settings, library, "undeclared.html", undeclared) == "not valid UTF-8"
    assert rows(settings)["latin.html"]["state"] == "pending"


def test_an_html_file_that_does_not_decode_with_its_declared_charset_is_skipped(settings,
                                                                              library):
    lying = b'<meta charset="utf-8"><p>' + "déjà".encode("latin-1") + b"</p>"
    unknown = b'<meta charset="klingon-8"><p>hello</p>'
    ascii_declared = b'<meta charset="us-ascii"><p>' + "é".encode() + b"</p>"

    assert reason_of(settings, library, "lying.html", lying) == "not valid UTF-8"
    assert reason_of(settings, library, "unknown.html", unknown) == (
        "HTML declares an unknown charset klingon-8")
    assert reason_of(settings, library, "ascii.html", ascii_declared) == (
        "not valid ascii (the charset it declares)")


def test_an_enabled_extension_no_table_knows_is_sent_as_plain_text(home, library):
    (home / "config.toml").write_text('extensions = [".org", ".py"]\n')
    put(library, "notes.org", TEXT)
    put(library, "tool.py", "print('hello')\n")

    scan_library(Settings.load(home), library)

    assert {p: r["state"] for p, r in rows(Settings.load(home)).items()} == {
        "notes.org": "pending", "tool.py": "pending"}
    assert (filetypes.mime_type("notes.org"), filetypes.mime_type("tool.py")) == (
        "text/plain", "text/x-python")


def test_an_enabled_type_file_search_does_not_index_is_skipped_by_its_name(home, library):
    (home / "config.toml").write_text('extensions = [".png", ".txt"]\n')
    assert reason_of(Settings.load(home), library, "cover.png", b"\x89PNG\r\n\x1a\n") == (
        "image/png (.png) is not a type File Search indexes")


# ---------------------------------------------------------------------------- EPUB

def test_an_epub_is_skipped_because_file_search_does_not_list_it(settings, library):
    epub = sd.epub_bytes(["Chapter one."], title="A Book", author="B. Author")
    assert reason_of(settings, library, "Books/book.epub", epub) == (
        "EPUB: not a type File Search indexes (application/epub+zip is not in its list)")


def test_an_epub_would_be_checked_and_give_its_title_and_author():
    """If File Search's list grows to EPUB, the scan's check is ready (documents.py)."""
    epub = sd.epub_bytes(["Chapter one."], title="A Book", author="B. Author")
    declared = filetypes.check_document(filetypes.type_for("a.epub"), io.BytesIO(epub), b"")
    assert declared == {"document_title": "A Book", "author": "B. Author"}


# ---------------------------------------------------------------------------- disguised, broken


def _zip(entries: dict[str, str], encrypted: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    data = bytearray(buffer.getvalue())
    if encrypted:  # zipfile cannot encrypt: set the "encrypted" flag where a reader sees it
        central = data.index(b"PK\x01\x02")
        data[6] |= 0x1  # the local header's general purpose flags
        data[central + 8] |= 0x1  # the central directory's
    return bytes(data)


BROKEN = [
    ("renamed.txt", PDF, "content is a PDF document, not text (rename it .pdf)"),
    ("notes.pdf", TEXT, "content is text, not a PDF (rename it .txt)"),
    ("truncated.pdf", PDF[:len(PDF) // 2], "truncated PDF: no %%EOF marker at its end"),
    ("locked.pdf", sd.encrypted_pdf(PDF), "encrypted PDF: File Search cannot read a "
     "password-protected PDF; save a copy without encryption"),
    ("empty pages.pdf", sd.pdf_bytes([]), "damaged PDF: it has no pages"),
    ("garbled.pdf", b"%PDF-1.4\n" + b"\x01garbage" * 50 + b"\n%%EOF\n", None),
    ("picture.pdf", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "content is image/png, not a PDF"),
    ("agenda.docx", TEXT, "content is text, not a DOCX (rename it .txt)"),
    ("cut.docx", DOCX_BYTES[:len(DOCX_BYTES) // 2], None),
    ("not word.docx", _zip({"hello.txt": "hi"}),
     "content is a ZIP archive without word/document.xml, not a DOCX"),
    ("sealed.docx", _zip({"word/document.xml": "<x/>"}, encrypted=True),
     "encrypted DOCX: its parts are password-protected"),
    ("protected.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),
     "content is an OLE container (an encrypted or legacy Office file), not a DOCX"),
    ("book.html", PDF, "content is a PDF document, not HTML (rename it .pdf)"),
    ("wide.txt", "UTF-16 text\n".encode("utf-16"), "UTF-16 text: save it as UTF-8"),
    ("zipped.md", DOCX_BYTES, "content is a ZIP archive, not text"),
]


@pytest.mark.parametrize("rel, data, expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_disguised_or_broken_file_is_skipped_with_a_one_line_reason(settings, library, rel,
                                                                      data, expected):
    reason = reason_of(settings, library, rel, data)

    assert reason is not None and "\n" not in reason and len(reason) < 200
    if expected is None:  # the library's own wording: the kind of damage is what we promise
        assert reason.startswith("damaged "), reason
    else:
        assert reason == expected
    assert filetypes.is_content_reason(reason)
    assert rows(settings)[rel]["state"] == "skipped"


def test_a_broken_file_is_not_read_again_until_it_changes(settings, library, monkeypatch):
    put(library, "book.pdf", PDF[:100], mtime_s=1_000)
    scan_library(settings, library)
    reads = []
    real = filetypes.check_document
    monkeypatch.setattr(filetypes, "check_document",
                        lambda *a: reads.append(a) or real(*a))

    again = scan_library(settings, library)
    put(library, "book.pdf", PDF, mtime_s=2_000)  # downloaded in full at last
    fixed = scan_library(settings, library)

    assert again.read_files == 0 and again.skipped_total == 1
    assert fixed.changed == 1 and len(reads) == 1
    assert rows(settings)["book.pdf"]["state"] == "pending"


def test_a_pdf_header_after_some_junk_is_still_a_pdf(settings, library):
    put(library, "prefixed.pdf", b"\r\n" + PDF)
    scan_library(settings, library)
    assert rows(settings)["prefixed.pdf"]["state"] == "pending"


def test_declared_metadata_fits_the_20_entry_limit_with_every_path_key():
    from objlib.gemini.metadata import MAX_ENTRIES, build_custom_metadata
    from objlib.scan.metadata import KEYS

    values = {key: f"v {key}" for key in KEYS}
    values.update(objlib_catalog="c1", objlib_file_id=1, objlib_version=1, path="a.pdf",
                  content_hash="ab" * 32, quality="complete", document_title="A Book",
                  author="Ada Lovelace")

    entries = build_custom_metadata(values)

    assert len(values) == len(entries) == MAX_ENTRIES
    assert {"document_title", "author", "objlib_catalog"} <= {e["key"] for e in entries}
