"""The emulator's text extraction (``objlib.emulator.extract.document_text``): a passage
inside a generated PDF, DOCX, EPUB or HTML file is in the text the search index gets."""

from __future__ import annotations

import pytest

from objlib.emulator.extract import ExtractError, document_text
from scripts import sample_documents as sd

PASSAGE = "The lighthouse keeper measured every storm against the principle of identity."
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def test_a_passage_on_a_pdf_page_is_found_and_its_page_is_known():
    pdf = sd.pdf_bytes(["Front matter.", "Chapter one.\n" + PASSAGE, "The end."])

    text = document_text(pdf, "application/pdf")

    assert PASSAGE in " ".join(text.split())
    pages = text.split("\f")
    assert len(pages) == 3 and PASSAGE in " ".join(pages[1].split())


def test_a_passage_in_a_docx_is_found():
    docx = sd.docx_bytes(["Minutes.", PASSAGE, "Adjourned."], title="Minutes")
    text = document_text(docx, DOCX)
    assert PASSAGE in text.splitlines()


def test_a_passage_in_an_epub_chapter_is_found_in_reading_order():
    epub = sd.epub_bytes(["First chapter.", "Second chapter.\n" + PASSAGE], title="Book")
    text = document_text(epub, "application/epub+zip")
    assert PASSAGE in text and text.index("First chapter.") < text.index(PASSAGE)


def test_html_gives_its_visible_text_in_its_declared_charset():
    page = sd.html_bytes("Essay", ["Déjà vu at the café.", PASSAGE], charset="iso-8859-1")

    text = document_text(page, "text/html; charset=iso-8859-1")

    assert "Déjà vu at the café." in text and PASSAGE in text
    assert "not text" not in text and "margin" not in text  # script and style left out


@pytest.mark.parametrize("mime_type", ["text/plain", "text/markdown", "application/json"])
def test_text_types_are_utf8_with_the_bom_dropped(mime_type):
    assert document_text("\ufeffcafé ".encode() + PASSAGE.encode(), mime_type) == (
        "café " + PASSAGE)


def test_a_type_with_no_reader_gives_no_text():
    assert document_text(b"\xd0\xcf\x11\xe0 legacy word", "application/msword") == ""


@pytest.mark.parametrize("data, mime_type, start", [
    (sd.encrypted_pdf(sd.pdf_bytes([PASSAGE])), "application/pdf", "encrypted PDF"),
    (b"%PDF-1.4\n\x01garbage\n%%EOF\n", "application/pdf", "damaged PDF"),
    (b"plain text, not a zip", DOCX, "damaged DOCX"),
])
def test_content_that_cannot_be_read_as_its_type_raises(data, mime_type, start):
    with pytest.raises(ExtractError) as exc:
        document_text(data, mime_type)
    assert str(exc.value).startswith(start)
