"""Reading the document formats objlib sends: what a file declares about itself (title,
author) and its text.

- **PDF** with ``pypdf`` (a kept library: a PDF's cross-reference table, object streams,
  filters and encryption are not ours to write);
- **DOCX** and **EPUB** from their own XML, with ``zipfile`` and ``xml.etree``: a DOCX keeps
  its title and author in ``docProps/core.xml`` and its text in ``word/document.xml``
  (``w:t`` runs in ``w:p`` paragraphs); an EPUB names its package document in
  ``META-INF/container.xml``, and the package gives the title and creators (Dublin Core) and
  the reading order (the spine) of its XHTML files;
- **HTML** as text with ``html.parser`` (script and style left out), decoded with the
  charset its ``<meta>`` declares in its first 1024 bytes (the HTML standard's prescan),
  else UTF-8.

Used by the scan (a file objlib may send must open as its type: ``check_*``, and its declared
title and author go into the document's metadata) and by the emulator (the text it indexes,
``objlib.emulator.extract``). Every failure is ``Unreadable`` with a one-line message fit
for ``objlib failures --skipped`` ("encrypted PDF: ...", "damaged DOCX: ...").
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import TYPE_CHECKING, BinaryIO
from xml.etree import ElementTree

if TYPE_CHECKING:
    from pypdf import PdfReader

# pypdf logs every repair it makes to a slightly odd PDF; the user only needs our verdict
logging.getLogger("pypdf").setLevel(logging.ERROR)

MAX_XML_BYTES = 64 << 20  # one XML part read from a zip: a bound against zip bombs
_REASON_CHARS = 160

DC = "{http://purl.org/dc/elements/1.1/}"
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF = "{http://www.idpf.org/2007/opf}"
# EPUB font obfuscation (IDPF, Adobe) uses encryption.xml too, but leaves the text readable
_FONT_OBFUSCATION = frozenset({"http://www.idpf.org/2008/embedding",
                               "http://ns.adobe.com/pdf/enc#RC"})


class Unreadable(ValueError):
    """The content cannot be read as its type; the message is one line, for a skip reason."""


def one_line(text: object, limit: int = _REASON_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    flat = " ".join(str(text).split()) or type(text).__name__
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def _declared(title: str | None, authors: list[str]) -> dict:
    out = {}
    title = " ".join((title or "").split())
    authors = [" ".join(a.split()) for a in authors if a and a.strip()]
    if title:
        out["document_title"] = title
    if authors:
        out["author"] = "; ".join(dict.fromkeys(authors))
    return out


# ---------------------------------------------------------------------------- PDF


def open_pdf(stream: BinaryIO) -> PdfReader:
    """A reader of a PDF that opens without a password and has pages; Unreadable otherwise.

    pypdf is imported here, when a PDF is first read: importing it takes 170-300 ms
    (measured), which a no-change re-scan (target 1 s, 0.4 s without it) must not pay."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(stream, strict=False)
        if reader.is_encrypted:
            raise Unreadable("encrypted PDF: File Search cannot read a password-protected "
                             "PDF; save a copy without encryption")
        if len(reader.pages) == 0:
            raise Unreadable("damaged PDF: it has no pages")
    except Unreadable:
        raise
    except Exception as exc:  # pypdf raises many kinds for a broken file: each means damaged
        raise Unreadable(f"damaged PDF: {one_line(exc)}") from None
    return reader


def pdf_properties(reader: PdfReader) -> dict:
    """``document_title`` and ``author`` from the PDF's document information, when set."""
    try:
        info = reader.metadata
        if info is None:
            return {}
        return _declared(info.title, [info.author] if info.author else [])
    except Exception:  # a damaged info dictionary: the document is still readable
        return {}


def pdf_text(reader: PdfReader) -> str:
    """The text of every page, pages separated by a form feed (``\\f``, as pdftotext does),
    so page N is ``text.split("\\f")[N - 1]``."""
    return "\f".join(pdf_page_texts(reader))


def pdf_page_texts(reader: PdfReader) -> Iterator[str]:
    """Each page's text in turn, extracted when asked for ("" for a damaged page)."""
    for page in reader.pages:
        try:
            yield page.extract_text() or ""
        except Exception:  # one damaged page's content stream loses that page only
            yield ""


# ---------------------------------------------------------------------------- DOCX and EPUB


def open_zip(stream: BinaryIO, kind: str) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(stream)
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise Unreadable(f"damaged {kind}: not a readable ZIP archive ({one_line(exc, 60)})") \
            from None
    if any(info.flag_bits & 0x1 for info in infos):
        raise Unreadable(f"encrypted {kind}: its parts are password-protected")
    return archive


def _xml(archive: zipfile.ZipFile, name: str, kind: str) -> ElementTree.Element:
    try:
        with archive.open(name) as part:
            data = part.read(MAX_XML_BYTES + 1)
    except KeyError:
        raise Unreadable(f"damaged {kind}: {name} is missing") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise Unreadable(f"damaged {kind}: {name} cannot be read ({one_line(exc, 60)})") \
            from None
    if len(data) > MAX_XML_BYTES:
        raise Unreadable(f"damaged {kind}: {name} is over {MAX_XML_BYTES >> 20} MB")
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise Unreadable(f"damaged {kind}: {name} is not well-formed XML ({exc})") from None


def check_docx(archive: zipfile.ZipFile) -> None:
    if "word/document.xml" not in archive.namelist():
        raise Unreadable("content is a ZIP archive without word/document.xml, not a DOCX")


def docx_properties(archive: zipfile.ZipFile) -> dict:
    if "docProps/core.xml" not in archive.namelist():
        return {}
    try:
        core = _xml(archive, "docProps/core.xml", "DOCX")
    except Unreadable:
        return {}  # the properties are optional; the document itself may be fine
    return _declared(core.findtext(f"{DC}title"), [e.text or "" for e in core.iter(f"{DC}creator")])


def docx_text(archive: zipfile.ZipFile) -> str:
    """The text of ``word/document.xml``: one line a paragraph, tabs and breaks kept."""
    body = _xml(archive, "word/document.xml", "DOCX")
    paragraphs = []
    for paragraph in body.iter(f"{_W}p"):
        parts = []
        for node in paragraph.iter():
            if node.tag == f"{_W}t":
                parts.append(node.text or "")
            elif node.tag == f"{_W}tab":
                parts.append("\t")
            elif node.tag in (f"{_W}br", f"{_W}cr"):
                parts.append("\n")
        paragraphs.append("".join(parts))
    return "\n".join(paragraphs)


def _epub_package(archive: zipfile.ZipFile) -> tuple[str, ElementTree.Element]:
    """(the package document's path, its root element)."""
    try:
        with archive.open("mimetype") as part:
            declared = part.read(64).decode("ascii", "replace").strip()
    except KeyError:
        raise Unreadable("content is a ZIP archive without an EPUB mimetype entry, "
                         "not an EPUB") from None
    if declared != "application/epub+zip":
        raise Unreadable(f"content is a ZIP archive of type {one_line(declared, 40)}, "
                         "not an EPUB")
    container = _xml(archive, "META-INF/container.xml", "EPUB")
    rootfile = container.find(f".//{_CONTAINER}rootfile")
    path = rootfile.get("full-path") if rootfile is not None else None
    if not path:
        raise Unreadable("damaged EPUB: META-INF/container.xml names no package document")
    return path, _xml(archive, path, "EPUB")


def check_epub(archive: zipfile.ZipFile) -> None:
    _epub_package(archive)
    if "META-INF/encryption.xml" in archive.namelist():
        encryption = _xml(archive, "META-INF/encryption.xml", "EPUB")
        algorithms = {e.get("Algorithm") for e in encryption.iter()
                      if e.tag.endswith("EncryptionMethod")}
        if algorithms - _FONT_OBFUSCATION:
            raise Unreadable("encrypted EPUB (DRM): its content cannot be read")


def epub_properties(archive: zipfile.ZipFile) -> dict:
    _, package = _epub_package(archive)
    metadata = package.find(f"{_OPF}metadata")
    if metadata is None:
        return {}
    return _declared(metadata.findtext(f"{DC}title"),
                     [e.text or "" for e in metadata.iter(f"{DC}creator")])


def epub_text(archive: zipfile.ZipFile) -> str:
    """The text of the spine's XHTML documents, in reading order, one after another."""
    path, package = _epub_package(archive)
    folder = path.rpartition("/")[0]
    manifest = {item.get("id"): item.get("href") for item in package.iter(f"{_OPF}item")}
    texts = []
    for ref in package.iter(f"{_OPF}itemref"):
        href = manifest.get(ref.get("idref"))
        if not href:
            continue
        name = f"{folder}/{href}" if folder else href
        try:
            with archive.open(name) as part:
                texts.append(html_text(part.read(MAX_XML_BYTES)))
        except KeyError:
            continue  # a spine entry the archive lacks: the rest is still the book
    return "\n\n".join(t for t in texts if t)


# ---------------------------------------------------------------------------- HTML

_META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def html_charset(head: bytes) -> str | None:
    """The charset a ``<meta charset>`` or ``<meta http-equiv content="...; charset=">``
    declares in the first 1024 bytes (where the HTML standard's prescan looks), or None."""
    match = _META_CHARSET.search(head[:1024])
    return match.group(1).decode("ascii").lower() if match else None


def html_codec(head: bytes) -> tuple[str, str]:
    """(codec, what the encoding's choice is based on) for an HTML file: a BOM, else the
    declared charset, else UTF-8. Unreadable for a charset Python does not know."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "BOM"
    charset = html_charset(head)
    if charset is None:
        return "utf-8", "default"
    try:
        return codecs.lookup(charset).name, "declared"
    except LookupError:
        raise Unreadable(f"HTML declares an unknown charset {one_line(charset, 40)}") \
            from None


class _TextOnly(HTMLParser):
    _SKIP = frozenset({"script", "style", "template", "noscript", "head"})
    _BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
                        "section", "article", "blockquote", "pre", "title", "table", "hr"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.title: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self.skipping += 1
        if tag == "title":
            self._in_title = True
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self._SKIP and self.skipping:
            self.skipping -= 1
        if tag == "title":
            self._in_title = False
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._in_title:
            self.title.append(data)
        elif not self.skipping:
            self.parts.append(data)


def html_text(data: bytes) -> str:
    """The visible text of an HTML document (its ``<title>`` first, on its own line)."""
    try:
        codec, _ = html_codec(data)
    except Unreadable:
        codec = "utf-8"
    parser = _TextOnly()
    parser.feed(data.decode(codec, "replace"))
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    title = " ".join("".join(parser.title).split())
    return "\n".join(([title] if title else []) + [line for line in lines if line])


def as_stream(data: bytes) -> BinaryIO:
    return io.BytesIO(data)
