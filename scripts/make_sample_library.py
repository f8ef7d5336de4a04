#!/usr/bin/env python3
"""Generate a realistic sample library, deterministically (same seed -> same tree, same bytes).

    python scripts/make_sample_library.py --files 10000 --out /tmp/library --seed 7

The tree follows the library's conventions:

    Courses/<Course>/<Course> - Lesson N - <Topic>.txt
    Courses/<Course>/YearY/QQ/<Course> - Week W - <Topic>.txt
    Courses/<Course>/<Course> - Year Y - QQ - Week W - <Topic>.txt
    MOTM/MOTM_YYYY-MM-DD_<Topic>.md
    Podcasts/<Series>/Episode N [id] <Title>.txt
    Books/<Title>.txt                     1-3 MB, about one per 200 files (one from 50 files)
    Notes/<Folder>/<Title>.md
    Books/Scanned Book.pdf, Books/The Logic of Induction.pdf, Notes/Meetings/minutes.docx,
    Notes/Reading/*.html, Books/Philosophy of Values.epub     (``DOCUMENTS``, with 20+ files)

``PDF_PASSAGE`` is a sentence on page ``PDF_PASSAGE_PAGE`` of ``Scanned Book.pdf`` and
``DOCX_PASSAGE`` one in ``minutes.docx``: what a search of the demo can look for.

Transcripts are 5-100 KB (log-uniform, so most are small) of readable pseudo-text. With 20
files or more the tree also holds real documents of every other type objlib sends
(``DOCUMENTS``: PDF books with a title and author, a DOCX, HTML pages, and an EPUB, which File
Search does not index), written by ``sample_documents.py``, and the bad inputs a real library
has (``BAD_INPUTS``): an empty file, a binary file, a Latin-1 file, a hidden file and a hidden
folder, a ``Thumbs.db``, a PDF renamed ``.txt``, text named ``.pdf``, a truncated and an
encrypted PDF, a DOCX that is not a ZIP and one that is a broken ZIP, and files with odd
names (spaces, quotes, unicode, a leading space). ``--files`` counts every file written, bad
ones included.

Importable: ``make_library(out, files, seed)`` returns the list of relative paths written.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from scripts import sample_documents as sd

WORDS = """
reason reality existence identity consciousness concept perception knowledge truth logic
value virtue purpose happiness rational self interest justice honesty integrity productive
pride independence freedom rights government law force trade man mind nature art beauty
sense life action choice volition thought emotion premise principle standard measure
definition essence unit abstraction integration context hierarchy induction deduction
certainty proof evidence axiom causality entity attribute relation motion time space
character hero plot theme style novel romantic history culture philosophy ethics politics
economics capitalism market profit money wealth production work goal achievement effort
""".split()
CONNECTIVES = """
the a of and to in that is is not as by for with from on which it this because therefore
but so thus every each no any its their our must can cannot only also
""".split()
COURSES = [
    "Introduction to Logic", "Philosophy of Education", "The Art of Thinking",
    "Objective Communication", "History of Philosophy", "Principles of Grammar",
    "Ethics of Emergencies", "Epistemology Seminar", "Art and Romanticism",
    "Economics for Everyone", "Rights and Government", "Advanced Writing",
]
SERIES = ["Philosophy for Living", "The Thinking Hour", "Reason Radio", "Ideas in Action",
          "Mind Matters"]
NOTE_FOLDERS = ["Reading", "Meetings", "Drafts", "Quotes"]

# name -> what it is, relative path; written when files >= MIN_FOR_BAD_INPUTS
BAD_INPUTS = {
    "empty": "Notes/Drafts/empty.txt",
    "binary": "Notes/Drafts/scan-output.txt",
    "latin1": "Notes/Drafts/old letter latin1.txt",
    "hidden_file": "Notes/.hidden note.txt",
    "hidden_folder": "Notes/.obsidian/workspace.md",
    "junk": "Courses/Thumbs.db",
    "pdf_as_text": "Notes/Drafts/exported slides.txt",
    "text_as_pdf": "Books/Not Really a Book.pdf",
    "truncated_pdf": "Books/Half Downloaded.pdf",
    "encrypted_pdf": "Books/Locked Book.pdf",
    "docx_not_zip": "Notes/Meetings/agenda.docx",
    "docx_broken_zip": "Notes/Meetings/recovered.docx",
    "odd_quotes": "Notes/Quotes/He said \"why?\" & 'because'.txt",
    "odd_unicode": "Notes/Quotes/Café naïve — 日本語 résumé.md",
    "odd_leading_space": "Notes/ leading space.md",
}
MIN_FOR_BAD_INPUTS = 20
# name -> relative path of the good documents of other types (with the bad inputs)
DOCUMENTS = {
    "pdf": "Books/Scanned Book.pdf",
    "pdf_two": "Books/The Logic of Induction.pdf",
    "docx": "Notes/Meetings/minutes.docx",
    "html": "Notes/Reading/Why Reason Matters.html",
    "html_latin1": "Notes/Reading/Old Essay.html",
    "epub": "Books/Philosophy of Values.epub",
}
# a sentence the search can look for, and the page of its PDF it is on
PDF_PASSAGE = "The lighthouse keeper measured every storm against the principle of identity."
PDF_PASSAGE_PAGE = 2
DOCX_PASSAGE = "The committee resolved to catalogue every lecture before the winter term."


class _Text:
    """Readable pseudo-text, fast: files are built from a seeded pool of sentences."""

    def __init__(self, rng: random.Random, pool_size: int = 3000):
        self.rng = rng
        self.sentences = [self._sentence() for _ in range(pool_size)]

    def _sentence(self) -> str:
        rng = self.rng
        words = [rng.choice(WORDS if rng.random() < 0.6 else CONNECTIVES)
                 for _ in range(rng.randint(6, 22))]
        words[0] = words[0].capitalize()
        return " ".join(words) + rng.choice(".....?!")

    def body(self, n_bytes: int) -> str:
        """Paragraphs (speaker turns, like a transcript) of just under ``n_bytes``."""
        rng = self.rng
        average = sum(len(s) for s in self.sentences[:200]) / 200 + 1
        picked = rng.choices(self.sentences, k=max(1, int(1.1 * n_bytes / average)))
        paragraphs, i = [], 0
        while i < len(picked):
            step = rng.randint(3, 9)
            speaker = rng.choice(("Speaker", "Q", "A"))
            paragraphs.append(f"{speaker}: " + " ".join(picked[i:i + step]))
            i += step
        text = "\n\n".join(paragraphs)  # ASCII: one byte a character
        return text[:text.rfind(" ", 0, n_bytes - 1)].rstrip() + "\n"

    def title(self, words: tuple[int, int] = (2, 5)) -> str:
        n = self.rng.randint(*words)
        return " ".join(w.capitalize() for w in self.rng.sample(WORDS, n))


def _transcript_bytes(rng: random.Random) -> int:
    return int(math.exp(rng.uniform(math.log(5_200), math.log(100_000))))


def make_library(out: str | Path, files: int, seed: int = 1) -> list[str]:
    """Write ``files`` files under ``out`` (created; must be empty or missing). Returns the
    relative paths written, in order."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; give a new folder")
    rng = random.Random(seed)
    text = _Text(rng)
    written: list[str] = []

    def write(rel: str, data: bytes | str) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        written.append(rel)

    bad = {**_documents(text), **_bad_inputs(text)} if files >= MIN_FOR_BAD_INPUTS else {}
    for rel, data in bad.items():
        write(rel, data)
    books = max(1 if files >= 50 else 0, files // 200)
    for _ in range(books):
        title = _unique(text.title((2, 4)), written, "Books/{}.txt")
        write(f"Books/{title}.txt", f"{title}\n\n" + text.body(rng.randint(1_000_000, 3_000_000)))
    counters: dict = {}
    for i in range(files - len(written)):
        rel = _good_path(rng, text, counters, i)
        title = f"{Path(rel).stem}\n\n"
        write(rel, title + text.body(_transcript_bytes(rng) - len(title.encode())))
    return written


def _good_path(rng: random.Random, text: _Text, counters: dict, i: int) -> str:
    """A unique path following one of the conventions (counters keep numbers unique)."""
    roll = rng.random()
    topic = text.title()
    if roll < 0.40:
        course = rng.choice(COURSES)
        n = counters[course, "lesson"] = counters.get((course, "lesson"), 0) + 1
        return f"Courses/{course}/{course} - Lesson {n} - {topic}.txt"
    if roll < 0.62:
        course = rng.choice(COURSES)
        k = counters[course, "week"] = counters.get((course, "week"), -1) + 1
        year, quarter, week = 1 + k // 40, 1 + (k // 10) % 4, 1 + k % 10
        if roll < 0.57:
            return f"Courses/{course}/Year{year}/Q{quarter}/{course} - Week {week} - {topic}.txt"
        return f"Courses/{course}/{course} - Year {year} - Q{quarter} - Week {week} - {topic}.txt"
    if roll < 0.74:
        k = counters["motm"] = counters.get("motm", -1) + 1
        day = date(2005, 1, 2) + timedelta(days=7 * k)
        return f"MOTM/MOTM_{day.isoformat()}_{topic.replace(' ', '_')}.md"
    if roll < 0.92:
        series = rng.choice(SERIES)
        n = counters[series] = counters.get(series, 0) + 1
        episode_id = "".join(rng.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(6))
        return f"Podcasts/{series}/Episode {n} [{episode_id}] {topic}.txt"
    return f"Notes/{rng.choice(NOTE_FOLDERS)}/{topic} {i}.md"


def _pages(text: _Text, count: int, passage: str | None = None, on_page: int = 0) -> list[str]:
    pages = [text.body(3_000) for _ in range(count)]
    if passage:
        pages[on_page - 1] = pages[on_page - 1].rstrip() + "\n" + passage + "\n"
    return pages


def _documents(text: _Text) -> dict[str, bytes]:
    """Real PDF, DOCX, HTML and EPUB files (the EPUB is skipped: File Search lacks it)."""
    return {
        DOCUMENTS["pdf"]: sd.pdf_bytes(_pages(text, 3, PDF_PASSAGE, PDF_PASSAGE_PAGE),
                                       title="Scanned Book", author="Ada Lovelace"),
        DOCUMENTS["pdf_two"]: sd.pdf_bytes(_pages(text, 2), title="The Logic of Induction",
                                           author="John Herschel"),
        DOCUMENTS["docx"]: sd.docx_bytes(
            ["Minutes of the library committee.", *text.body(2_000).split("\n\n"),
             DOCX_PASSAGE], title="Committee Minutes", author="R. Secretary"),
        DOCUMENTS["html"]: sd.html_bytes("Why Reason Matters", text.body(3_000).split("\n\n")),
        DOCUMENTS["html_latin1"]: sd.html_bytes(
            "Old Essay", ["Déjà vu: an essay from the café years.",
                          *text.body(1_500).split("\n\n")], charset="iso-8859-1"),
        DOCUMENTS["epub"]: sd.epub_bytes([text.body(3_000), text.body(3_000)],
                                         title="Philosophy of Values", author="B. Author"),
    }


def _bad_inputs(text: _Text) -> dict[str, bytes | str]:
    rng = text.rng
    binary = bytes(rng.randrange(256) for _ in range(4096))
    book = sd.pdf_bytes(_pages(text, 2), title="Half Downloaded")
    return {
        BAD_INPUTS["empty"]: b"",
        BAD_INPUTS["binary"]: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + binary,
        BAD_INPUTS["latin1"]: "Cher ami, voilà ma lettre: déjà très énervé.\n".encode("latin-1"),
        BAD_INPUTS["hidden_file"]: text.body(2_000),
        BAD_INPUTS["hidden_folder"]: '{"workspace": true}\n',
        BAD_INPUTS["junk"]: binary[:512],
        BAD_INPUTS["pdf_as_text"]: sd.pdf_bytes([text.body(1_500)], title="Slides"),
        BAD_INPUTS["text_as_pdf"]: text.body(3_000),
        BAD_INPUTS["truncated_pdf"]: book[:len(book) // 2],
        BAD_INPUTS["encrypted_pdf"]: sd.encrypted_pdf(sd.pdf_bytes(
            [text.body(2_500)], title="Locked Book", author="A. Keeper")),
        BAD_INPUTS["docx_not_zip"]: text.body(1_000),
        BAD_INPUTS["docx_broken_zip"]: b"PK\x03\x04" + binary,
        BAD_INPUTS["odd_quotes"]: text.body(6_000),
        BAD_INPUTS["odd_unicode"]: "Café naïve — 日本語 résumé\n\n" + text.body(6_000),
        BAD_INPUTS["odd_leading_space"]: text.body(6_000),
    }


def _unique(title: str, written: list[str], template: str) -> str:
    candidate, n = title, 1
    while template.format(candidate) in written:
        n += 1
        candidate = f"{title} {n}"
    return candidate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000, help="how many files (default 1000)")
    parser.add_argument("--out", required=True, help="folder to create (must be empty)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    paths = make_library(args.out, args.files, args.seed)
    total = sum((Path(args.out) / p).stat().st_size for p in paths)
    print(f"wrote {len(paths)} files, {total / 1e6:.1f} MB, to {args.out} "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
