"""The page of a PDF a citation names, as plain functions and on real PDF files (written by
``scripts/sample_documents.py``, read back with pypdf): the page where the passage begins,
whatever its whitespace; a passage spanning pages gives its first page; a file gone,
changed since it was indexed, or unreadable gives no page, never an error; and the view
shows the page after the path."""

from __future__ import annotations

import hashlib

from rich.console import Console

from objlib.gemini.metadata import raw_file_id
from objlib.search import Citation, PageText, PdfPages, _expected_content
from objlib.views.search import citation_view
from scripts import sample_documents as sd

PAGES = [
    "The first page speaks of reason and of the senses that give it its material. " * 6,
    "The second page holds the passage. The lighthouse keeper measured every storm "
    "against the principle of identity. Then it goes on about other things. " * 3,
    "The third page closes the book with a word on values and on what one acts for. " * 6,
]


def page_of(pages: list[str], passage: str) -> int | None:
    return PageText(pages).page_of(passage)


def test_the_page_is_where_the_passage_begins_whatever_its_whitespace():

    assert page_of(PAGES, "The lighthouse keeper measured\n every  storm") == 2
    assert page_of(PAGES, "THE THIRD PAGE closes the book") == 3
    assert page_of(PAGES, PAGES[0][:50]) == 1


def test_a_passage_spanning_two_pages_gives_its_first():
    spanning = PAGES[0][-60:] + "\n" + PAGES[1][:80]

    assert page_of(PAGES, spanning) == 1


def test_a_leading_part_is_enough_when_the_rest_differs():
    extracted_otherwise = PAGES[2][:100] + " but the service's own extraction went on differently"

    assert page_of(PAGES, extracted_otherwise) == 3


def test_a_phrase_a_book_repeats_is_placed_by_the_longest_leading_part_found():
    repeated = "Reason is the faculty that identifies and integrates what the senses provide. "
    pages = [repeated * 3, repeated * 2 + "Here the second page ends.", "Page three."]
    passage = repeated + "Here the second page ends. Page three, in the service's words."

    assert page_of(pages, passage) == 2


def test_pages_are_read_only_as_far_as_the_passage_and_once():
    read = []

    def pages():
        for number, text in enumerate(PAGES, 1):
            read.append(number)
            yield text

    book = PageText(pages())

    assert book.page_of("The lighthouse keeper measured every storm") == 2
    assert read == [1, 2]
    assert book.page_of(PAGES[0][:60]) == 1 and read == [1, 2]
    assert book.page_of("The third page closes the book") == 3 and read == [1, 2, 3]
    assert book.page_of("Nowhere in this book at all, not once.") is None and read == [1, 2, 3]


def test_a_passage_not_in_the_pages_or_an_empty_one_has_no_page():

    assert page_of(PAGES, "A sentence that no page of this book holds at all.") is None
    assert page_of(PAGES, " \n ") is None


def write_pdf(path, pages=PAGES) -> str:
    data = sd.pdf_bytes(pages, title="A Book")
    path.write_bytes(data)
    return raw_file_id(hashlib.sha256(data).hexdigest())


def test_a_real_pdf_gives_the_page_and_is_read_once_per_search(tmp_path):
    book = tmp_path / "Book.pdf"
    title = write_pdf(book)
    pages = PdfPages()

    first = pages.page_of(str(book), _expected_content(title, None), "lighthouse keeper")
    book.unlink()  # the second citation of the same file does not read it again
    second = pages.page_of(str(book), _expected_content(title, None), "The third page")

    assert (first, second) == (2, 3)


def test_the_catalogues_hash_is_the_check_when_the_title_is_not_objlibs(tmp_path):
    book = tmp_path / "Book.pdf"
    write_pdf(book)
    digest = hashlib.sha256(book.read_bytes()).hexdigest()

    right = PdfPages().page_of(str(book), _expected_content("A Book", digest.upper()),
                               "lighthouse keeper")
    wrong = PdfPages().page_of(str(book), _expected_content("A Book", "0" * 64),
                               "lighthouse keeper")
    unknown = PdfPages().page_of(str(book), _expected_content("A Book", None),
                                 "lighthouse keeper")

    assert (right, wrong, unknown) == (2, None, None)


def test_a_file_gone_changed_or_unreadable_has_no_page(tmp_path):
    gone = tmp_path / "Gone.pdf"
    changed = tmp_path / "Changed.pdf"
    changed_title = write_pdf(changed)
    changed.write_bytes(sd.pdf_bytes(list(reversed(PAGES))))  # edited since it was indexed
    damaged = tmp_path / "Damaged.pdf"
    damaged.write_bytes(b"%PDF-1.4\nnot really a PDF")
    damaged_title = raw_file_id(hashlib.sha256(damaged.read_bytes()).hexdigest())
    pages = PdfPages()

    assert pages.page_of(str(gone), _expected_content("objlib-0", None), "lighthouse") is None
    assert pages.page_of(str(changed), _expected_content(changed_title, None),
                         "lighthouse keeper") is None
    assert pages.page_of(str(damaged), _expected_content(damaged_title, None),
                         "not really") is None


def rendered(citation: Citation) -> str:
    console = Console(width=100, record=True, color_system=None)
    console.print(citation_view(citation))
    return console.export_text()


def test_the_view_names_the_page_after_the_path_and_no_page_for_a_text_file():
    pdf = Citation(1, "Library/Scanned Book.pdf", "/l/Library/Scanned Book.pdf", "doc",
                   "objlib-x", {}, "the passage", "indexed", page=2)
    text = Citation(2, "Notes/a.txt", "/l/Notes/a.txt", "doc", "objlib-y", {}, "text",
                    "indexed")

    assert "[1] Library/Scanned Book.pdf, page 2" in rendered(pdf)
    assert "[2] Notes/a.txt\n" in rendered(text) and "page" not in rendered(text)
