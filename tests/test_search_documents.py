"""``objlib search`` finds passages inside documents, with the real SDK against the emulator:
a sentence on page 2 of a PDF book is cited from that file with its page, and one inside a
DOCX from that file (no page). The files are real (``scripts/sample_documents.py``), sent by
the worker steps in-process (``sync``: what a consumer runs)."""

from __future__ import annotations

import pytest

from objlib.scan import scan_library
from scripts import sample_documents as sd
from scripts.make_sample_library import DOCX_PASSAGE, PDF_PASSAGE, PDF_PASSAGE_PAGE
from tests.support.search import cited, run, sync

PDF = "Books/Scanned Book.pdf"
DOCX = "Notes/Meetings/minutes.docx"
TEXT = "Notes/Reading/on reason.txt"
SENTENCES = ["Reason is the faculty that identifies and integrates what the senses provide.",
             "A concept is a mental integration of two or more units.",
             "Values are what one acts to gain and keep.",
             "Every definition names the essential characteristic of its units."]


def filler(words: int, shift: int) -> str:
    """Readable text of about ``words`` words; ``shift`` varies the order of its sentences."""
    out, i = [], shift
    while sum(len(s.split()) for s in out) < words:
        out.append(SENTENCES[i % len(SENTENCES)])
        i += 1
    return " ".join(out)


@pytest.fixture
def documents(settings, library, emulator):
    pages = [filler(300, page) for page in range(3)]  # a 200-word chunk begins on each page
    pages[PDF_PASSAGE_PAGE - 1] += " " + PDF_PASSAGE
    (library / PDF).parent.mkdir(parents=True)
    (library / PDF).write_bytes(sd.pdf_bytes(pages, title="Scanned Book", author="A. Writer"))
    (library / DOCX).parent.mkdir(parents=True)
    (library / DOCX).write_bytes(sd.docx_bytes(
        ["Minutes of the library committee.", filler(250, 1), DOCX_PASSAGE, filler(100, 2)],
        title="Committee Minutes"))
    (library / TEXT).parent.mkdir(parents=True)
    (library / TEXT).write_text(filler(400, 3), encoding="utf-8")
    scan_library(settings, library)
    sync(settings)
    return library


def test_a_passage_on_a_pdf_page_is_cited_from_that_file_with_its_page(documents):
    data = cited(PDF_PASSAGE)
    shown = run(PDF_PASSAGE)

    top = data["citations"][0]
    assert top["path"] == PDF and top["page"] == PDF_PASSAGE_PAGE == 2
    assert " ".join(PDF_PASSAGE.split()) in " ".join(top["text"].split())
    assert top["metadata"]["document_title"] == "Scanned Book"
    assert shown.exit_code == 0, shown.output
    assert f"[1] {PDF}, page 2" in shown.output


def test_a_passage_inside_a_docx_is_cited_from_that_file_without_a_page(documents):
    data = cited(DOCX_PASSAGE)

    top = data["citations"][0]
    assert top["path"] == DOCX and top["page"] is None
    assert DOCX_PASSAGE in " ".join(top["text"].split())
    assert all(c["page"] is None for c in data["citations"] if c["path"] != PDF)


def test_a_pdf_changed_since_it_was_indexed_is_cited_without_a_page(documents):
    (documents / PDF).write_bytes(sd.pdf_bytes(["An edited book, not yet scanned again."]))

    top = cited(PDF_PASSAGE)["citations"][0]

    assert top["path"] == PDF and top["page"] is None
