"""Every type objlib sends, end to end: a scanned library of text, Markdown, PDF, DOCX and
HTML files, real huey_consumer processes, the real SDK over HTTP against the emulator. Each
document is indexed with its own MIME type (the upload's, which the document keeps) and the
title/author its file declares; the disguised and broken files never reach the store."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import types

from objlib.catalog import open_catalog
from objlib.enqueue import enqueue
from objlib.scan import scan_library
from scripts import sample_documents as sd
from tests.support.catalogue import file_states
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT = "Reason is the faculty that identifies the material provided by the senses.\n" * 20


def test_each_type_is_indexed_with_its_mime_type_and_the_broken_ones_are_never_sent(
        settings, library, emulator, consumers):
    good = {
        "notes.txt": (TEXT, "text/plain"),
        "essay.md": ("# Essay\n\n" + TEXT, "text/markdown"),
        "Books/A Book.pdf": (sd.pdf_bytes(["Page one.", TEXT], title="A Book",
                                          author="Ada Lovelace"), "application/pdf"),
        "minutes.docx": (sd.docx_bytes(["Minutes.", TEXT], title="Minutes",
                                       author="R. Secretary"), DOCX),
        "page.html": (sd.html_bytes("Page", [TEXT]), "text/html"),
    }
    bad = {"renamed.txt": good["Books/A Book.pdf"][0], "fake.pdf": TEXT.encode(),
           "locked.pdf": sd.encrypted_pdf(good["Books/A Book.pdf"][0]),
           "agenda.docx": TEXT.encode(), "book.epub": sd.epub_bytes(["One."], title="E")}
    for rel, data in [*((r, d) for r, (d, _) in good.items()), *bad.items()]:
        path = library / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    summary = scan_library(settings, library)
    assert (summary.new, summary.skipped_total) == (len(good), len(bad))

    enqueue(settings)
    consumers(workers=4)
    wait_for(lambda: file_states(settings).get("indexed") == len(good), 60, 0.2,
             "every good file indexed")

    catalog = open_catalog(settings)
    store = catalog.get_meta("store")
    client = genai.Client(api_key="test-key", http_options=types.HttpOptions(
        base_url=emulator.base_url, timeout=30_000))
    documents = list(client.file_search_stores.documents.list(parent=store))
    by_path = {next(m.string_value for m in d.custom_metadata if m.key == "path"): d
               for d in documents}
    assert {p: d.mime_type for p, d in by_path.items()} == {
        rel: mime for rel, (_, mime) in good.items()}
    pdf_meta = {m.key: m.string_value for m in by_path["Books/A Book.pdf"].custom_metadata}
    assert (pdf_meta["document_title"], pdf_meta["author"]) == ("A Book", "Ada Lovelace")
    raw_types = {f.mime_type for f in client.files.list()}
    assert raw_types == {mime for _, mime in good.values()}
    skipped = {r["path"]: r["state"] for r in catalog.query(
        f"SELECT path, state FROM files WHERE path IN ({','.join('?' * len(bad))})",
        tuple(bad))}
    assert skipped == dict.fromkeys(bad, "skipped")
