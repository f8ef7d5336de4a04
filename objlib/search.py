"""`objlib search`: ask the store objlib maintains, and map every passage the answer cites back
to the local file it came from.

    result = search(settings, "What is objectivity?", ["course=OPAR", "year>=1991"])

- **The filter.** Each ``--filter`` is AIP-160 as the API takes it (``course = "OPAR" AND
  year >= 1991``), or a shorthand for the metadata objlib itself writes: ``key=value``,
  ``key!=value``, ``key>=N`` (also ``<``, ``<=``, ``>``) and the original tool's
  ``key:value``. A shorthand's value is quoted, or not, by the key's type: the numbers objlib
  sends as ``numericValue`` (lesson, year, quarter, week, episode, objlib_file_id,
  objlib_version) stay numbers, every other value becomes a quoted string. Several filters
  are joined with AND. The filter is sent as built; a service that cannot parse it answers
  400, which is reported with the filter and how to write one.
- **The call** goes through the shared rate limiter and circuit breaker (``throttle.db``),
  like every worker request: a search waits for its slot (at most ``WAIT_FOR_SLOT_S``)
  rather than crowd out the workers or hammer a service the breaker has seen failing.
- **The citations.** Every document objlib imports carries ``objlib_catalog`` and
  ``objlib_file_id`` metadata, and its display name is the raw file's id (``objlib-`` and
  20 hex digits of the content's SHA-256). A passage is mapped to its catalogue row by the
  first, else by the second; the row gives the local path, the path's metadata and the
  document recorded for the file. A passage of a document this catalogue does not know
  keeps its own metadata and no path.
- **The page of a PDF.** When the cited file is a PDF (by its extension), it is read here
  (pypdf, imported only then: a search of text files pays nothing), once per search however
  many passages it gives, and the passage's page is the page where its text begins
  (``PageText``): the whitespace of both normalised (and case folded), the first page where
  the whole passage is, reading pages only up to there; else, the text the service extracted
  differing from pypdf's further on, where the longest leading part of the passage that the
  pages hold first occurs (at least ``PAGE_MIN_CHARS``). A passage spanning pages gives its
  first page.
  Only a file whose bytes are those of the cited document (the SHA-256 behind its display
  name, else the catalogue's hash) is read; a file gone, changed, unreadable, or without the
  passage gives no page, never an error.
- **Errors**, each with its fix: no catalogue, no store yet, nothing indexed yet, the store
  lost, an unparsable filter, no API key (or a refused one), the API unreachable, a rate
  limit that does not clear.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from objlib.catalog import Catalog
from objlib.catalog.read import existing_catalog
from objlib.errors import ObjlibError, StoreLost
from objlib.gemini.metadata import raw_file_id
from objlib.log import get_logger
from objlib.scan.metadata import INT_KEYS, KEYS
from objlib.settings import Settings
from objlib.store import LOST_KEY, mark_store_lost, store_lost_message
from objlib.throttle import Deferred, Throttle

log = get_logger("objlib.search")

DEFAULT_MODEL = "gemini-2.5-flash"
WAIT_FOR_SLOT_S = 30.0
OBJLIB_KEYS = ("objlib_catalog", "objlib_file_id", "objlib_version", "path", "content_hash",
               "quality")
NUMERIC_KEYS = frozenset(INT_KEYS) | {"objlib_file_id", "objlib_version"}
FILTER_HELP = ('AIP-160, e.g. course = "OPAR" AND year >= 1991 (quote text, not numbers), '
               "or a shorthand such as course=OPAR or year>=1991")
_SHORTHAND = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|!=|=|>|<|:)\s*(.+?)\s*$")
_AIP_SYNTAX = re.compile(r"[()<>=!\"']|\b(?:AND|OR|NOT)\b")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
PAGE_MIN_CHARS = 30  # the shortest leading part of a passage taken as its place on a page


class SearchError(ObjlibError):
    """A search that could not be made; the message says why and what to do."""


@dataclass(frozen=True)
class Citation:
    number: int                # 1-based, as the answer's [n] markers
    path: str | None           # relative to the library root; None: not this catalogue's
    absolute_path: str | None
    document: str | None       # the document the catalogue records for the file
    title: str                 # the document's display name (the raw file's id)
    metadata: dict             # the path's metadata (course, lesson, year, ...)
    text: str                  # the cited passage
    state: str | None = None   # the catalogue row's state now (indexed, deleted, ...)
    page: int | None = None    # a PDF's page (1-based) where the passage begins


@dataclass(frozen=True)
class SearchResult:
    question: str
    answer: str
    citations: tuple[Citation, ...]
    filter: str | None         # the metadataFilter sent
    store: str
    model: str
    top_k: int | None
    supports: tuple[tuple[str, tuple[int, ...]], ...] = field(default=())  # (text, numbers)
    elapsed_s: float = 0.0

    def to_json(self) -> dict:
        return {"question": self.question, "answer": self.answer, "filter": self.filter,
                "store": self.store, "model": self.model, "top_k": self.top_k,
                "elapsed_s": round(self.elapsed_s, 3),
                "citations": [asdict(c) for c in self.citations],
                "supports": [{"text": text, "citations": list(numbers)}
                             for text, numbers in self.supports]}


# ------------------------------------------------------------------------------ the filter


def metadata_keys(settings: Settings) -> dict[str, str]:
    """The custom-metadata keys objlib writes: ``{key: "number" | "string"}`` (the built-in
    path keys, objlib's own, and the named groups of the user's metadata_patterns)."""
    names = [*KEYS, *OBJLIB_KEYS]
    for pattern in settings.metadata_patterns:
        try:
            names.extend(re.compile(pattern).groupindex)
        except re.error:
            continue  # the scan reports a bad pattern; here it only adds no key
    return {name: "number" if name in NUMERIC_KEYS else "string" for name in names}


def filter_expression(expr: str, keys: dict[str, str]) -> str:
    """One ``--filter`` as AIP-160: a shorthand on a key objlib writes is quoted by the key's
    type; anything else is passed on as it is."""
    text = expr.strip()
    if not text:
        raise SearchError(f"--filter is empty: write {FILTER_HELP}")
    m = _SHORTHAND.match(text)
    if not m or m.group(1) not in keys or _AIP_SYNTAX.search(m.group(3)):
        return text
    key, op, value = m.groups()
    op = "=" if op == ":" else op
    if keys[key] == "number":
        if not _NUMBER.match(value):
            raise SearchError(f"--filter {expr!r}: {key} is a number (objlib sends it as a "
                              f"numericValue); give one, e.g. {key}{op}3")
        return f"{key} {op} {value}"
    if op not in ("=", "!="):
        raise SearchError(f"--filter {expr!r}: {key} is text, and File Search compares text "
                          f"with = and != only (e.g. {key}={value})")
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{key} {op} "{quoted}"'


def build_filter(filters, keys: dict[str, str]) -> str | None:
    """Every ``--filter`` as one AIP-160 expression (joined with AND); None for none."""
    parts = [filter_expression(f, keys) for f in filters]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else " AND ".join(f"({p})" for p in parts)


# ------------------------------------------------------------------------------ the search


def search(settings: Settings, question: str, filters=(), *, top_k: int | None = None,
           model: str = DEFAULT_MODEL, gemini=None) -> SearchResult:
    """Ask the catalogue's store ``question``; the answer with numbered citations mapped
    to local files. ``gemini``: a client to use (default: one behind the shared throttle)."""
    if not question.strip():
        raise SearchError('the question is empty: objlib search "what is objectivity?"')
    expression = build_filter(filters, metadata_keys(settings))
    started = time.monotonic()
    catalog = existing_catalog(settings)
    try:
        store = _store(catalog)
        _check_indexed(catalog)
        client, closers = (gemini, []) if gemini is not None else _client(settings)
        try:
            answer = _ask(client, catalog, store, question, expression, top_k, model)
        finally:
            for close in closers:
                close()
        pages = PdfPages()
        citations = tuple(_citation(catalog, pages, i + 1, passage)
                          for i, passage in enumerate(answer.passages))
    finally:
        catalog.close()
    supports = tuple((s.text, tuple(i + 1 for i in s.passages)) for s in answer.supports)
    return SearchResult(question=question, answer=answer.text, citations=citations,
                        filter=expression, store=store, model=model, top_k=top_k,
                        supports=supports, elapsed_s=time.monotonic() - started)


def _store(catalog: Catalog) -> str:
    store = catalog.get_meta("store")
    if not store:
        raise SearchError("no store yet: nothing has been sent to Gemini from this catalogue. "
                          "Run `objlib upload` (or `objlib enqueue` and a worker) first")
    if catalog.get_meta(LOST_KEY):
        raise StoreLost(store_lost_message(store))
    return store


def _check_indexed(catalog: Catalog) -> None:
    indexed, in_flight = catalog.query(
        "SELECT sum(state = 'indexed'), sum(state IN ('pending', 'queued', 'uploading', "
        "'importing')) FROM files")[0]
    if not indexed:
        waiting = (f" ({in_flight} file(s) are on their way: see `objlib status`)"
                   if in_flight else " (run `objlib upload`)")
        raise SearchError(f"nothing indexed yet: no file of this catalogue is searchable"
                          f"{waiting}")


def _client(settings: Settings):
    """A GeminiClient whose requests take their slot from the shared rate limiter (and feed
    the circuit breaker); a search waits for a slot up to WAIT_FOR_SLOT_S."""
    from objlib.gemini.client import GeminiClient
    from objlib.recovery import process_owner

    throttle = Throttle.from_settings(settings)
    holder = f"search:{process_owner()}"

    def on_request(call: str, cost: int) -> None:
        deadline = time.monotonic() + WAIT_FOR_SLOT_S
        while True:
            try:
                return throttle.acquire(holder, cost)
            except Deferred as d:
                if time.monotonic() + d.delay_s > deadline:
                    raise SearchError(
                        f"the shared rate limiter holds requests for {d.delay_s:.0f} s more "
                        f"({d.reason}): the workers are using the quota, or the service "
                        "has been failing. Try again then (`objlib status` shows the "
                        "breaker and the rate)") from None
                time.sleep(d.delay_s)

    client = GeminiClient.from_env(settings, on_request=on_request,
                                   on_response=lambda call, status: throttle.record(status))
    return client, [client.close, throttle.close]


def _ask(client, catalog: Catalog, store: str, question: str, expression: str | None,
         top_k: int | None, model: str):
    from objlib.gemini.errors import BadApiKey, GeminiError, RateLimited, Unavailable

    try:
        return client.search([store], question, metadata_filter=expression, top_k=top_k,
                             model=model)
    except (BadApiKey, SearchError):
        raise
    except Unavailable as err:
        raise SearchError(f"the Gemini API is unreachable ({err.message}). Check the network "
                          "(or GOOGLE_GEMINI_BASE_URL, for the emulator) and try again") from err
    except RateLimited as err:
        wait = f" in {err.retry_after_s:.0f} s" if err.retry_after_s else " in a minute"
        raise SearchError(f"the Gemini API is rate limiting ({err.message}); try again"
                          f"{wait}") from err
    except GeminiError as err:
        if err.code == 404:
            _check_store(client, catalog, store, err)
            raise SearchError(f"the API does not know the model {model!r} ({err.message}); "
                              "choose one that File Search supports, e.g. --model "
                              f"{DEFAULT_MODEL}") from err
        if err.code == 400 and expression:
            raise SearchError(f"the service refused the filter {expression!r}: "
                              f"{err.message.rstrip('.')}. Write {FILTER_HELP}") from err
        raise SearchError(f"the search failed: {err.message}") from err


def _check_store(client, catalog: Catalog, store: str, err: Exception) -> None:
    """After a 404: if the store itself is gone, record it (status, reconcile and workers
    then know) and say how to recover."""
    from objlib.gemini.errors import Gone

    try:
        client.get_store(store)
    except Gone:
        mark_store_lost(catalog, store, time.time())
        raise StoreLost(store_lost_message(store)) from err


# ------------------------------------------------------------------------------ citations


def _citation(catalog: Catalog, pages: PdfPages, number: int, passage) -> Citation:
    row = _row_of(catalog, passage)
    if row is None:
        mine = {k: v for k, v in passage.custom_metadata.items() if not k.startswith("objlib_")}
        return Citation(number, None, None, None, passage.title, mine, passage.text)
    root = catalog.get_meta("library_root")
    absolute = f"{root}/{row['path']}" if root else None
    page = None
    if absolute and row["path"].lower().endswith(".pdf"):
        page = pages.page_of(absolute, _expected_content(passage.title, row["content_hash"]),
                             passage.text)
    return Citation(number, row["path"], absolute, row["document"], passage.title,
                    json.loads(row["metadata_json"] or "{}"), passage.text, row["state"], page)


def _expected_content(title: str, content_hash: str | None):
    """A test of a file's SHA-256 (hex): is it the cited document's content? By the raw file
    id that is the document's display name, else by the catalogue's hash."""
    if title.startswith("objlib-"):
        return lambda digest: raw_file_id(digest) == title
    return lambda digest: bool(content_hash) and digest == str(content_hash).lower()


class PdfPages:
    """The PDFs a search cites, each opened once and its pages read only as far as its
    passages need (None: gone, changed, or unreadable)."""

    def __init__(self):
        self._books: dict[str, PageText | None] = {}

    def page_of(self, path: str, is_cited_content, passage: str) -> int | None:
        if path not in self._books:
            self._books[path] = _open_pdf(path, is_cited_content)
        book = self._books[path]
        if book is None:
            return None
        try:
            return book.page_of(passage)
        except Exception as exc:  # a page pypdf cannot get through: no page, never an error
            log.debug("search.page_skipped", path=path, reason=type(exc).__name__)
            self._books[path] = None
            return None


def _open_pdf(path: str, is_cited_content) -> PageText | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
        if not is_cited_content(hashlib.sha256(data).hexdigest()):
            log.debug("search.page_skipped", path=path, reason="changed since it was indexed")
            return None
        from objlib import documents

        return PageText(documents.pdf_page_texts(documents.open_pdf(documents.as_stream(data))))
    except Exception as exc:  # gone, unreadable, damaged: the citation just has no page
        log.debug("search.page_skipped", path=path, reason=type(exc).__name__)
        return None


class PageText:
    """The text of a document's pages, whitespace normalised and case folded, the pages
    joined by one space, read from ``pages`` only as far as a look-up needs (pypdf takes
    ~20 ms a page: a 300-page book is seconds)."""

    def __init__(self, pages: Iterable[str]):
        self._pages = iter(pages)
        self._done = False
        self.text = ""
        self.starts: list[int] = []  # where each page begins in text

    def _read_page(self) -> bool:
        page = None if self._done else next(self._pages, None)
        if page is None:
            self._done = True
            return False
        flat = " ".join(page.split()).casefold()
        self.starts.append(len(self.text) + 1 if self.starts else 0)
        self.text = f"{self.text} {flat}" if len(self.starts) > 1 else flat
        return True

    def page_of(self, passage: str) -> int | None:
        """The 1-based page where ``passage`` begins: the first page where the whole of it
        is (pages read up to there only), else where the longest leading part of it that
        the pages hold first occurs (at least ``PAGE_MIN_CHARS`` characters, or all of a
        shorter passage: a book repeats short phrases, the longest part tells where this
        one is); None when not even that is there."""
        flat = " ".join(passage.split()).casefold()
        if not flat:
            return None
        searched = 0
        while True:
            at = self.text.find(flat, max(0, searched - len(flat)))
            if at >= 0:
                return bisect.bisect_right(self.starts, at)
            searched = len(self.text)
            if not self._read_page():
                break
        return _longest_leading_part(self.text, self.starts, flat)


def _longest_leading_part(text: str, starts: list[int], flat: str) -> int | None:
    shortest = min(len(flat), PAGE_MIN_CHARS)
    if flat[:shortest] not in text:
        return None
    found, missing = shortest, len(flat)  # a leading part of `found` chars is there
    while missing - found > 1:  # what matches is monotonic in length: bisect it
        middle = (found + missing) // 2
        if flat[:middle] in text:
            found = middle
        else:
            missing = middle
    return bisect.bisect_right(starts, text.find(flat[:found]))

def _row_of(catalog: Catalog, passage):
    """The catalogue row a passage came from: by objlib_file_id (if the document is this
    catalogue's), else by the raw file id that is the document's display name."""
    meta = passage.custom_metadata
    columns = "SELECT path, document, metadata_json, state, content_hash FROM files"
    if meta.get("objlib_catalog") in (None, catalog.id) and meta.get("objlib_file_id") is not None:
        try:
            file_id = int(float(meta["objlib_file_id"]))
        except (TypeError, ValueError):
            file_id = None
        rows = catalog.query(f"{columns} WHERE id=?", (file_id,)) if file_id else []
        if rows:
            return rows[0]
    if meta.get("objlib_catalog") not in (None, catalog.id):
        return None
    for row in catalog.query(f"{columns} WHERE content_hash IS NOT NULL AND "
                             "substr(content_hash, 1, 20) = ?",
                             (passage.title.removeprefix("objlib-")[:20],)):
        if raw_file_id(row["content_hash"]) == passage.title:
            return row
    return None
