"""Small, real documents of every type objlib sends, written by our own code (no binary
fixtures copied from elsewhere), deterministically: the same arguments give the same bytes.

    pdf_bytes(["page one text", "page two text"], title="A Book", author="A. Writer")
    encrypted_pdf(pdf_bytes([...]), password="secret")   # pypdf's writer encrypts (RC4-128)
    docx_bytes(["paragraph", ...], title=..., author=...)
    epub_bytes(["chapter text", ...], title=..., author=...)
    html_bytes("Title", ["paragraph", ...], charset="utf-8")

The PDF is the smallest valid one: a catalog, a page tree, Helvetica, one content stream a
page (text lines with ``Tj``/``T*``), an information dictionary and a byte-exact cross
reference table. pypdf reads it back (tests prove it), and so does any viewer. Used by
``make_sample_library.py`` and by the tests.
"""

from __future__ import annotations

import hashlib
import io
import re
import textwrap
import zipfile
from xml.sax.saxutils import escape

_ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same input gives the same bytes


def _pdf_string(text: str) -> bytes:
    data = text.encode("latin-1", "replace")
    return b"(" + data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _page_stream(text: str) -> bytes:
    lines = []
    for paragraph in text.split("\n"):
        lines += textwrap.wrap(paragraph, 90) or [""]
    body = b"".join(_pdf_string(line) + b" Tj T*\n" for line in lines[:60])
    return b"BT\n/F1 10 Tf\n12 TL\n50 780 Td\n" + body + b"ET\n"


def pdf_bytes(pages: list[str], *, title: str | None = None, author: str | None = None) -> bytes:
    """A valid PDF with one page per item of ``pages`` (about 60 lines of 90 characters fit)."""
    count = len(pages)
    page_ids = [5 + 2 * i for i in range(count)]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % i for i in page_ids)
           + b"] /Count %d >>" % count,
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    info = b"<< /Producer (objlib sample library)"
    if title:
        info += b" /Title " + _pdf_string(title)
    if author:
        info += b" /Author " + _pdf_string(author)
    objects[4] = info + b" >>"
    for page_id, text in zip(page_ids, pages, strict=True):
        stream = _page_stream(text)
        objects[page_id] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
                            % (page_id + 1))
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + \
            b"endstream"
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number]
    file_id = hashlib.md5(bytes(out)).hexdigest().encode()
    out += (b"trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R /ID [<%s> <%s>] >>\n"
            % (size, file_id, file_id))
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def encrypted_pdf(plain: bytes, password: str = "secret") -> bytes:
    """``plain`` encrypted with a user password by pypdf's writer (RC4-128, which pypdf
    implements itself). pypdf draws a random second file identifier at every write; it is
    set back to the first one (same length, so no offset moves) for reproducible bytes."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(plain)))
    writer.encrypt(user_password=password, owner_password=password + "-owner",
                   algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    data = buffer.getvalue()
    match = re.search(rb"/ID \[ <([0-9a-f]+)> <([0-9a-f]+)> \]", data)
    if match:
        data = data[:match.start(2)] + match.group(1) + data[match.end(2):]
    return data


def _zip(entries: list[tuple[str, str | bytes]], stored_first: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, (name, data) in enumerate(entries):
            info = zipfile.ZipInfo(name, _ZIP_DATE)
            info.compress_type = (zipfile.ZIP_STORED if stored_first and i == 0
                                  else zipfile.ZIP_DEFLATED)
            archive.writestr(info, data)
    return buffer.getvalue()


_CORE = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
         '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/'
         'metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/">'
         '{title}{author}</cp:coreProperties>')


def docx_bytes(paragraphs: list[str], *, title: str | None = None,
               author: str | None = None) -> bytes:
    """A minimal valid DOCX (WordprocessingML): content types, relationships, the document
    and its core properties."""
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = "".join(f'<w:p><w:r><w:t xml:space="preserve">{escape(p)}</w:t></w:r></w:p>'
                   for p in paragraphs)
    document = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                f'<w:document xmlns:w="{w}"><w:body>{body}</w:body></w:document>')
    types = ('<?xml version="1.0" encoding="UTF-8"?>\n<Types xmlns="http://schemas.'
             'openxmlformats.org/package/2006/content-types"><Default Extension="rels" '
             'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
             '<Default Extension="xml" ContentType="application/xml"/><Override PartName='
             '"/word/document.xml" ContentType="application/vnd.openxmlformats-'
             'officedocument.wordprocessingml.document.main+xml"/><Override PartName='
             '"/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.'
             'core-properties+xml"/></Types>')
    rels = ('<?xml version="1.0" encoding="UTF-8"?>\n<Relationships xmlns="http://schemas.'
            'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type='
            '"http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            'officeDocument" Target="word/document.xml"/><Relationship Id="rId2" Type='
            '"http://schemas.openxmlformats.org/package/2006/relationships/metadata/'
            'core-properties" Target="docProps/core.xml"/></Relationships>')
    core = _CORE.format(title=f"<dc:title>{escape(title)}</dc:title>" if title else "",
                        author=f"<dc:creator>{escape(author)}</dc:creator>" if author else "")
    return _zip([("[Content_Types].xml", types), ("_rels/.rels", rels),
                 ("word/document.xml", document), ("docProps/core.xml", core)])


def epub_bytes(chapters: list[str], *, title: str, author: str | None = None) -> bytes:
    """A minimal valid EPUB 3: the stored ``mimetype`` first, the container, the package
    (metadata, manifest, spine) and one XHTML file a chapter."""
    container = ('<?xml version="1.0"?>\n<container version="1.0" xmlns="urn:oasis:names:tc:'
                 'opendocument:xmlns:container"><rootfiles><rootfile full-path="OEBPS/'
                 'content.opf" media-type="application/oebps-package+xml"/></rootfiles>'
                 '</container>')
    items = "".join(f'<item id="c{i}" href="chapter{i}.xhtml" '
                    f'media-type="application/xhtml+xml"/>' for i in range(len(chapters)))
    spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
    creator = f"<dc:creator>{escape(author)}</dc:creator>" if author else ""
    identifier = hashlib.sha256("".join(chapters).encode()).hexdigest()[:16]
    package = ('<?xml version="1.0" encoding="UTF-8"?>\n<package xmlns="http://www.idpf.org/'
               '2007/opf" version="3.0" unique-identifier="id"><metadata xmlns:dc="http://'
               f'purl.org/dc/elements/1.1/"><dc:identifier id="id">urn:objlib:{identifier}'
               f'</dc:identifier><dc:title>{escape(title)}</dc:title>{creator}'
               f'<dc:language>en</dc:language></metadata><manifest>{items}</manifest>'
               f'<spine>{spine}</spine></package>')
    entries: list[tuple[str, str | bytes]] = [
        ("mimetype", "application/epub+zip"), ("META-INF/container.xml", container),
        ("OEBPS/content.opf", package)]
    for i, text in enumerate(chapters):
        paragraphs = "".join(f"<p>{escape(p)}</p>" for p in text.split("\n") if p.strip())
        entries.append((f"OEBPS/chapter{i}.xhtml",
                        '<?xml version="1.0" encoding="UTF-8"?>\n<html xmlns="http://www.w3.'
                        f'org/1999/xhtml"><head><title>Chapter {i + 1}</title></head><body>'
                        f'{paragraphs}</body></html>'))
    return _zip(entries, stored_first=True)


def html_bytes(title: str, paragraphs: list[str], *, charset: str = "utf-8") -> bytes:
    """An HTML page declaring ``charset`` in a ``<meta>``, encoded with it."""
    body = "".join(f"<p>{escape(p)}</p>\n" for p in paragraphs)
    page = (f'<!DOCTYPE html>\n<html><head><meta charset="{charset}">\n'
            f"<title>{escape(title)}</title>\n<style>p {{ margin: 1em }}</style>\n"
            f"<script>var hidden = 'not text';</script></head>\n"
            f"<body><h1>{escape(title)}</h1>\n{body}</body></html>\n")
    return page.encode(charset)
