"""``GeminiClient``: the calls objlib makes to the Gemini Files and File Search APIs.

Callers never see SDK types: every answer is one of the frozen dataclasses below and every
failure a :class:`objlib.gemini.errors.GeminiError`. Every HTTP exchange goes through
``GeminiClient._call``, which

- calls ``on_request(call, cost)`` first (the queue's global throttle; it may raise any
  exception to stop the call, and that exception propagates untouched),
- runs the SDK call and turns any SDK/transport exception into a ``GeminiError``
  (``classify``),
- calls ``on_response(call, status)`` afterwards: 200, the error's HTTP status, or None when
  no response came back (as the circuit breaker should count it: a full store's 429 is
  reported as 400, see ``errors.breaker_status``). A failing ``on_response`` is logged, never
  raised: the answer of a call that succeeded (an import's operation name) must not be lost to
  a bookkeeping hook.

The SDK's own retries are off; retrying is the queue's job. The SDK client is built on first
use (never at import: workers fork) and rebuilt if the process has forked since.
"""

from __future__ import annotations

import io
import ipaddress
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from google import genai
from google.genai import types

from objlib import retry
from objlib.gemini import metadata as md
from objlib.gemini.errors import (
    KEY_VARIABLES,
    BadApiKey,
    GeminiError,
    Gone,
    MissingApiKey,
    RateLimited,
    Transient,
    breaker_status,
    classify,
    register_secret,
    status_of,
)
from objlib.log import get_logger

API_VERSION = "v1beta"
UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024  # the SDK sends resumable uploads in 8 MiB chunks
EMULATOR_KEY = "emulator-no-key"  # sent to a loopback base URL when no key is set
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space
PAGE_SIZE_MAX = 20  # stores and documents: the API's maximum page size
DEFAULT_SEARCH_MODEL = "gemini-2.5-flash"  # a model File Search supports
_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")

OnRequest = Callable[[str, int], None]
OnResponse = Callable[[str, "int | None"], None]

if TYPE_CHECKING:
    from objlib.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True)
class Store:
    name: str  # fileSearchStores/<id>
    display_name: str
    active_documents: int
    pending_documents: int
    failed_documents: int
    size_bytes: int


@dataclass(frozen=True)
class RawFile:
    name: str  # files/<id>
    state: str  # PROCESSING | ACTIVE | FAILED | STATE_UNSPECIFIED
    size_bytes: int | None
    expires_at: float | None  # epoch seconds (raw files are deleted after 48 h)


@dataclass(frozen=True)
class Operation:
    name: str
    done: bool  # True only when the API said done: true (a missing done is not done)
    error: dict | None  # {"code", "message", ...} when the operation failed
    document: str | None  # full name fileSearchStores/<s>/documents/<d>, once known


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk the answer is grounded on (a ``groundingChunks[]`` entry)."""

    title: str  # the document's display name (objlib: the raw file's id)
    text: str
    store: str | None  # fileSearchStores/<id>
    custom_metadata: dict  # the document's metadata, decoded as Document.custom_metadata


@dataclass(frozen=True)
class Support:
    """A piece of the answer and the passages (indexes into Answer.passages) it rests on."""

    text: str
    passages: tuple[int, ...]


@dataclass(frozen=True)
class Answer:
    text: str
    passages: tuple[Passage, ...]
    supports: tuple[Support, ...]


@dataclass(frozen=True)
class Document:
    name: str  # fileSearchStores/<s>/documents/<d>
    display_name: str
    state: str  # STATE_PENDING | STATE_ACTIVE | STATE_FAILED | STATE_UNSPECIFIED
    custom_metadata: dict  # {key: str | float | list[str]}
    create_time: float | None  # epoch seconds


class GeminiClient:
    """One client per process. Build it with :meth:`from_env`.

    >>> client = GeminiClient.from_env(settings)            # doctest: +SKIP
    >>> store = client.ensure_store(settings.store_name)   # doctest: +SKIP
    """

    def __init__(self, *, api_key: str, base_url: str | None = None, timeout_s: float = 120.0,
                 on_request: OnRequest | None = None, on_response: OnResponse | None = None,
                 retry_wait_s: float = 1.0, retry_wait_max_s: float = 120.0):
        register_secret(api_key)
        self.retry_wait_s, self.retry_wait_max_s = retry_wait_s, retry_wait_max_s
        self._api_key = api_key
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.on_request = on_request
        self.on_response = on_response
        self._sdk_client = None
        self._sdk_pid: int | None = None
        self._sdk_lock = threading.Lock()
        self._inherited = None  # a client built before a fork: kept alive, never used or closed

    @classmethod
    def from_env(cls, settings: Settings, *, on_request: OnRequest | None = None,
                 on_response: OnResponse | None = None) -> GeminiClient:
        """Key from ``GEMINI_API_KEY`` (else ``GOOGLE_API_KEY``), stripped; base URL from
        ``GOOGLE_GEMINI_BASE_URL`` when set. No key is needed for a loopback base URL (the
        emulator); anywhere else a missing key raises :class:`MissingApiKey` at once. A key
        with whitespace or control characters inside raises :class:`BadApiKey`."""
        base_url = os.environ.get("GOOGLE_GEMINI_BASE_URL", "").strip() or None
        variable, key = next(((v, os.environ.get(v, "").strip()) for v in KEY_VARIABLES
                              if os.environ.get(v, "").strip()), (None, ""))
        if key and not _KEY_CHARS.fullmatch(key):
            # sent as an HTTP header, such a key fails every request with an error that
            # quotes it; refused here, by a message that does not
            raise BadApiKey(f"{variable} has whitespace, control or non-ASCII characters "
                            "inside (a line break pasted with it?): an API key is one line "
                            "of printable ASCII; set it again (the value is not shown)")
        if not key:
            if base_url is None or not is_loopback(base_url):
                raise MissingApiKey(
                    "GEMINI_API_KEY is not set: export it with your Gemini API key "
                    "(or set GOOGLE_GEMINI_BASE_URL to a local emulator such as "
                    "http://127.0.0.1:8765)")
            key = EMULATOR_KEY
        return cls(api_key=key, base_url=base_url, timeout_s=settings.request_timeout_s,
                   on_request=on_request, on_response=on_response,
                   retry_wait_s=settings.backoff_base_s, retry_wait_max_s=settings.backoff_max_s)

    def __repr__(self) -> str:
        return f"GeminiClient(base_url={self.base_url!r}, timeout_s={self.timeout_s})"

    # --- stores -----------------------------------------------------------------------------

    def ensure_store(self, display_name: str) -> Store:
        """The store called ``display_name`` (the oldest, if several are); created if none."""
        wanted = md.display_name(display_name)
        matches = [s for s in self._pages("list_stores", lambda c: c.file_search_stores.list(
            config={"page_size": PAGE_SIZE_MAX})) if s.display_name == wanted]
        if matches:
            return _store(min(matches, key=_age_key))
        return _store(self._call("create_store", lambda c: c.file_search_stores.create(
            config={"display_name": wanted})))

    def get_store(self, name: str) -> Store:
        return _store(self._call("get_store", lambda c: c.file_search_stores.get(name=name)))

    def delete_store(self, name: str, force: bool = True) -> bool:
        """Delete a store (with its documents when ``force``). False if it was already gone."""
        return self._delete("delete_store", lambda c: c.file_search_stores.delete(
            name=name, config={"force": force}))

    # --- raw files --------------------------------------------------------------------------

    def upload_file(self, source: str | os.PathLike | bytes | io.IOBase, *, file_id: str,
                    display_name: str, mime_type: str = "text/plain") -> RawFile:
        """Upload ``source`` as ``files/<file_id>``, idempotently and without asking first:
        the upload itself is the question. A 409 (ALREADY_EXISTS: an earlier run or another
        worker uploaded this content id) is answered by one ``files.get``; that raw file is
        reused unless it is FAILED or of another size, in which case it is deleted and the
        upload sent once more. A new file costs the upload alone (start + chunks).

        ``source`` is a path, bytes, or a seekable binary file object, which the SDK streams
        from in 8 MiB chunks (``UPLOAD_CHUNK_BYTES``): its size is found by seeking to the end
        and it is read once, in order, from where it stands (a 409 comes with the start
        request, before any byte is read). Prefer bytes or a file object: for a path the SDK
        sends the base name in an HTTP header, which fails for names with leading spaces or
        non-ASCII characters; a file object sends no name."""
        name = _file_name(file_id)
        size = _source_size(source)  # a vanished local file raises OSError before any request
        config = {"name": name, "display_name": md.display_name(display_name),
                  "mime_type": mime_type}

        def upload(client):
            file = io.BytesIO(source) if isinstance(source, bytes) else source
            return client.files.upload(file=file, config=config)

        for _ in range(2):
            try:
                return _raw_file(self._call("upload_file", upload, cost=upload_cost(size)))
            except GeminiError as err:
                if err.code != 409:
                    raise
            existing = self._reusable_file(name, size)
            if existing is not None:
                return existing
        raise Transient(f"{name} exists and cannot be reused; it was deleted, and the upload "
                        "met it again (another worker is uploading it)", call="upload_file")

    def _reusable_file(self, name: str, size: int) -> RawFile | None:
        """The raw file ``name`` that an upload met (409), if it can stand for this upload;
        None if it is gone meanwhile, or was FAILED or of another size (then it is deleted)."""
        try:
            existing = self.get_file(name)
        except Gone:
            return None
        if existing.state != "FAILED" and existing.size_bytes in (None, size):
            return existing
        log.debug("gemini.replace_raw_file", name=name, state=existing.state,
                  size_bytes=existing.size_bytes, local_bytes=size)
        self.delete_file(name)
        return None

    def get_file(self, name: str) -> RawFile:
        name = _file_name(name)
        return _raw_file(self._call("get_file", lambda c: c.files.get(name=name)))

    def delete_file(self, name: str) -> bool:
        """False if the raw file was already gone (deleted, or expired: the API says 403)."""
        name = _file_name(name)
        return self._delete("delete_file", lambda c: c.files.delete(name=name))

    # --- import, operations, documents ------------------------------------------------------

    def import_file(self, store: str, file_name: str, custom_metadata: list[dict]) -> str:
        """Start importing raw file ``file_name`` into ``store``; the operation's name.
        Not idempotent: every call that reaches the API creates a document."""
        config = {"custom_metadata": list(custom_metadata)} if custom_metadata else None
        op = self._call("import_file", lambda c: c.file_search_stores.import_file(
            file_search_store_name=store, file_name=_file_name(file_name), config=config))
        return op.name

    def get_operation(self, name: str) -> Operation:
        """The state of an import (or store upload) operation."""
        kind = (types.UploadToFileSearchStoreOperation if "/upload/operations/" in name
                else types.ImportFileOperation)
        return _operation(name, self._call("get_operation", lambda c: c.operations.get(
            kind.model_validate({"name": name}))))

    def get_document(self, name: str) -> Document:
        return _document(self._call("get_document", lambda c: c.file_search_stores.documents.get(
            name=name)))

    def list_documents(self, store: str, page_size: int = PAGE_SIZE_MAX, *,
                       transient_retries: int = 0) -> Iterator[Document]:
        """Every document of ``store``, page after page (one pass; oldest first). A long
        listing may ask the same page again up to ``transient_retries`` times on a transient
        error or a 429, rather than lose every page read so far, after the wait of the one
        in-process retry policy (``objlib.retry``: the service's Retry-After, else backoff,
        with jitter); each ask passes the ``on_request`` hook, so a shared rate limit still
        applies."""
        page_size = max(1, min(page_size, PAGE_SIZE_MAX))
        for doc in self._pages("list_documents", lambda c: c.file_search_stores.documents.list(
                parent=store, config={"page_size": page_size}), transient_retries):
            yield _document(doc)

    def delete_document(self, name: str) -> bool:
        """Delete a document with its chunks; False if it was already gone."""
        return self._delete("delete_document", lambda c: c.file_search_stores.documents.delete(
            name=name, config={"force": True}))

    # --- searching ------------------------------------------------------------------------

    def search(self, stores: list[str], question: str, *, metadata_filter: str | None = None,
               top_k: int | None = None, model: str = DEFAULT_SEARCH_MODEL) -> Answer:
        """Ask ``model`` the ``question`` with the File Search tool over ``stores``
        (``metadata_filter``: AIP-160, sent as it is); the answer and what grounds it."""
        tool = types.Tool(file_search=types.FileSearch(
            file_search_store_names=list(stores), metadata_filter=metadata_filter or None,
            top_k=top_k))
        config = types.GenerateContentConfig(tools=[tool])
        return _answer(self._call("search", lambda c: c.models.generate_content(
            model=model, contents=question, config=config)))

    # --- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        client, self._sdk_client = self._sdk_client, None
        if client is not None:
            client.close()

    def __enter__(self) -> GeminiClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _sdk(self):
        # worker threads share this client: build the SDK client once, under a lock (a second
        # genai.Client replacing the first would be garbage-collected, and its __del__ closes
        # the connections another thread is still using)
        with self._sdk_lock:
            return self._sdk_locked()

    def _sdk_locked(self):
        if self._sdk_client is None or self._sdk_pid != os.getpid():
            if self._sdk_client is not None:  # forked: the parent's connections are not ours
                self._inherited, self._sdk_client = self._sdk_client, None
            options = {"api_version": API_VERSION, "timeout": int(self.timeout_s * 1000)}
            if self.base_url:
                options["base_url"] = self.base_url
            self._sdk_client = genai.Client(api_key=self._api_key, vertexai=False,
                                            http_options=types.HttpOptions(**options))
            self._sdk_pid = os.getpid()
        return self._sdk_client

    def _call(self, call: str, request: Callable, *, cost: int = 1):
        """One HTTP exchange (or one resumable upload): hooks around it, errors classified."""
        if self.on_request is not None:
            self.on_request(call, cost)
        started = time.monotonic()
        try:
            result = request(self._sdk())
        except OSError:  # the local file, not the API (transport errors are no OSError):
            log.debug("gemini.local_file_error", call=call)  # nothing for the breaker
            raise
        except Exception as exc:
            err = classify(exc, call=call)
            status = status_of(exc)
            self._responded(call, status, breaker_status(err, status), started)
            raise err from exc
        self._responded(call, 200, 200, started)
        return result

    def _responded(self, call: str, status: int | None, counted: int | None,
                   started: float) -> None:
        """Log the answer's ``status``; pass ``on_response`` the status the circuit breaker
        should count (``counted``)."""
        log.debug("gemini.call", call=call, status=status,
                  elapsed_ms=round((time.monotonic() - started) * 1000, 1))
        if self.on_response is None:
            return
        try:
            self.on_response(call, counted)
        except Exception as exc:  # noqa: BLE001 - a bookkeeping hook must not lose an answer
            log.warning("gemini.on_response_failed", call=call, error=repr(exc))

    def _pages(self, call: str, first_page: Callable, transient_retries: int = 0) -> Iterator:
        """Every item of a listing; each page is one ``_call`` (the SDK's pager keeps its
        page token until a page arrives, so asking again asks for the same page)."""
        pager = self._call_again_if_transient(call, first_page, transient_retries)
        while True:
            yield from pager.page
            if not pager.config.get("page_token"):
                return
            self._call_again_if_transient(call, lambda _client: pager.next_page(),
                                          transient_retries)

    def _call_again_if_transient(self, call: str, request: Callable, retries: int):
        return retry.call(lambda: self._call(call, request),
                          retry_on=lambda exc: isinstance(exc, (Transient, RateLimited)),
                          attempts=retries + 1, wait_initial_s=self.retry_wait_s,
                          wait_max_s=self.retry_wait_max_s)

    def _delete(self, call: str, request: Callable) -> bool:
        try:
            self._call(call, request)
        except Gone:
            return False
        return True


def _source_size(source) -> int:
    """Bytes an upload of ``source`` sends (a file object: from where it stands to its end)."""
    if isinstance(source, bytes):
        return len(source)
    if isinstance(source, io.IOBase):
        start = source.tell()
        size = source.seek(0, os.SEEK_END) - start
        source.seek(start)
        return size
    return os.path.getsize(source)


def upload_cost(size_bytes: int) -> int:
    """HTTP requests of one resumable upload: the start, then one per 8 MiB chunk (>= 1)."""
    return 1 + max(1, math.ceil(size_bytes / UPLOAD_CHUNK_BYTES))


def is_loopback(base_url: str) -> bool:
    """True when ``base_url`` points at this machine (127.0.0.0/8, ::1, localhost)."""
    host = (urlsplit(base_url if "//" in base_url else "//" + base_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- SDK objects -> our dataclasses ----------------------------------------------------------


def _file_name(file_id: str) -> str:
    bare = file_id.removeprefix("files/")
    if not _ID.fullmatch(bare):
        raise ValueError(f"not a valid raw file id (<= 40 of [a-z0-9-]): {file_id!r}")
    return "files/" + bare


def _text(value) -> str:
    """An SDK enum, string or None as plain text."""
    value = getattr(value, "value", value)
    return "" if value is None else str(value)


def _epoch_s(when: datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


def _age_key(s) -> tuple:
    """Sorts oldest first; a store without a create time last."""
    return (s.create_time is None, _epoch_s(s.create_time) or 0.0)


def _store(s) -> Store:
    return Store(name=s.name, display_name=s.display_name or "",
                 active_documents=s.active_documents_count or 0,
                 pending_documents=s.pending_documents_count or 0,
                 failed_documents=s.failed_documents_count or 0,
                 size_bytes=s.size_bytes or 0)


def _raw_file(f) -> RawFile:
    return RawFile(name=f.name, state=_text(f.state) or "STATE_UNSPECIFIED",
                   size_bytes=f.size_bytes, expires_at=_epoch_s(f.expiration_time))


def _document(d) -> Document:
    return Document(name=d.name, display_name=d.display_name or "",
                    state=_text(d.state) or "STATE_UNSPECIFIED",
                    custom_metadata=_decode_metadata(d.custom_metadata or []),
                    create_time=_epoch_s(d.create_time))


def _decode_metadata(entries) -> dict:
    decoded: dict[str, Any] = {}
    for entry in entries:
        if entry.string_list_value is not None:
            decoded[entry.key] = list(entry.string_list_value.values or [])
        elif entry.numeric_value is not None:
            decoded[entry.key] = float(entry.numeric_value)
        else:
            decoded[entry.key] = entry.string_value
    return decoded


def _answer(response) -> Answer:
    candidate = (response.candidates or [None])[0]
    if candidate is None:
        return Answer("", (), ())
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    grounding = candidate.grounding_metadata
    if grounding is None:
        return Answer(text, (), ())
    passages = tuple(_passage(chunk) for chunk in grounding.grounding_chunks or [])
    supports = tuple(
        Support(text=s.segment.text or "" if s.segment else "",
                passages=tuple(i for i in s.grounding_chunk_indices or []
                               if 0 <= i < len(passages)))
        for s in grounding.grounding_supports or [])
    return Answer(text, passages, supports)


def _passage(chunk) -> Passage:
    context = chunk.retrieved_context
    if context is None:  # another kind of source (web, maps): kept so the indexes still hold
        web = chunk.web
        return Passage(title=(web.title or web.uri or "") if web else "", text="", store=None,
                       custom_metadata={})
    return Passage(title=context.title or "", text=context.text or "",
                   store=context.file_search_store,
                   custom_metadata=_decode_metadata(context.custom_metadata or []))


def _operation(name: str, op) -> Operation:
    response = getattr(op, "response", None)
    document = getattr(response, "document_name", None)
    if document and not document.startswith("fileSearchStores/"):
        # seen in the wild: a bare document id (and a bare parent) in the response
        store = _store_of_operation(name) or _store_name(getattr(response, "parent", None))
        document = f"{store}/documents/{document.rsplit('/', 1)[-1]}" if store else document
    return Operation(name=op.name or name, done=op.done is True,
                     error=dict(op.error) if op.error else None, document=document or None)


def _store_of_operation(name: str) -> str | None:
    head, sep, _ = name.partition("/operations/")
    return head.removesuffix("/upload") if sep and head.startswith("fileSearchStores/") else None


def _store_name(parent: str | None) -> str | None:
    if not parent:
        return None
    return parent if parent.startswith("fileSearchStores/") else f"fileSearchStores/{parent}"
