"""The in-memory model of the Gemini Files and File Search API: raw files, resumable uploads,
File Search stores, documents and long-running operations.

Domain rules live here and break with ``ApiError(http_code, status, message)``, which the
server renders as the real API's error JSON. Nothing here knows about HTTP, latency knobs or
faults: callers pass the durations (``active_after_s``, ``index_after_s``) and the indexing
``outcome`` that ``behaviour.py`` chose.

Time is lazy. A raw file is PROCESSING until its ``active_at``; a document is STATE_PENDING and
its operation not done until ``ready_at``. Every read settles whatever has come due, so there
are no background threads. ``now()`` is the wall clock plus ``skew_s``; ``advance(seconds)``
moves it forward so tests can expire a raw file (48 h) without sleeping.

One re-entrant lock guards everything. Public methods return *copies* of the model objects,
settled at the time of the call, so callers can render them outside the lock.

Choices where the real service is unverified (documented, deliberate):

- a missing store, document or operation answers 404 NOT_FOUND; a missing, deleted or expired
  raw file answers 403 PERMISSION_DENIED, as the real Files API does;
- importFile of a raw file that is still PROCESSING (only with an ``activate`` latency) answers
  400 FAILED_PRECONDITION; of a missing one, 403 PERMISSION_DENIED (the permission check on
  the file comes first);
- what cannot be indexed (``check_indexable``) and the storage limit (``_check_storage``) are
  checked after that, in this order; their wording is the emulator's except the storage
  limit's, which is the real one (see the package docstring for every source);
- deleting a document without ``force`` answers 400 FAILED_PRECONDITION unless the document is
  STATE_FAILED (it holds no chunks); field experience says a delete needs ``force=True``;
- a document id is ``{raw file id}-{12 random}`` even when that exceeds 40 characters (a long
  client-chosen raw id): match documents to raw files by ``displayName``, which is exact; an
  uploaded document's id (and its operation's) is ``{slug of its display name}-{12 random}``;
- a store's ``sizeBytes`` is the input size of its ACTIVE documents (the 3x of the storage
  limit is not shown there);
- lists are ordered by creation (files too), and page tokens stay valid when items are deleted
  between pages (a token names the first item of the next page, not an offset).
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import random
import re
import string
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from objlib.emulator.extract import document_text
from objlib.emulator.search import DEFAULT_TOP_K, MAX_TOP_K, Hit, SearchIndex, chunking
from objlib.supported_types import bare, is_supported

FILE_TTL_S = 48 * 3600
MAX_METADATA = 20
MAX_FILE_BYTES = 2 * 1000 ** 3        # Files API: 2 GB per file
MAX_DOCUMENT_BYTES = 100 * 1000 ** 2  # File Search: 100 MB per document
DEFAULT_STORAGE_LIMIT_BYTES = 1000 ** 3  # the free tier's 1 GB of File Search storage
STORED_BYTES_PER_INPUT_BYTE = 3       # "stored size is about 3x the input" (embeddings)
MAX_DISPLAY_NAME = 512
DEFAULT_EMBEDDING_MODEL = "models/gemini-embedding-001"
IMPORT_RESPONSE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.ImportFileResponse"
UPLOAD_RESPONSE_TYPE = (
    "type.googleapis.com/google.ai.generativelanguage.v1main.UploadToFileSearchStoreResponse"
)
SNAPSHOT_FORMAT = 1
INDEX_FAILED_MESSAGE = "Failed to index the document: an internal error occurred."

# page sizes: (default, maximum)
FILES_PAGE = (10, 100)
STORES_PAGE = (10, 20)
DOCUMENTS_PAGE = (10, 20)

PENDING, ACTIVE, FAILED = "STATE_PENDING", "STATE_ACTIVE", "STATE_FAILED"
DOCUMENT_STATES = (PENDING, ACTIVE, FAILED)
OUTCOMES = ("active", "failed", "never_done")

_ID_CHARS = string.ascii_lowercase + string.digits
_CLIENT_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")


class ApiError(Exception):
    """A domain error carrying the real API's HTTP code, canonical status and message."""

    def __init__(self, http_code: int, status: str, message: str, *,
                 details: list | None = None, headers: dict | None = None):
        super().__init__(f"{http_code} {status}: {message}")
        self.http_code = http_code
        self.status = status
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def to_api(self) -> dict:
        error = {"code": self.http_code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def key_not_valid() -> ApiError:
    """What the real API answers a wrong API key: 400 INVALID_ARGUMENT with an ErrorInfo
    (reason API_KEY_INVALID) and a LocalizedMessage, as seen in public reports."""
    message = "API key not valid. Please pass a valid API key."
    return ApiError(400, "INVALID_ARGUMENT", message, details=[
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
         "domain": "googleapis.com",
         "metadata": {"service": "generativelanguage.googleapis.com"}},
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
         "message": message}])


def not_found(what: str, name: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} {name} not found.")


def file_denied(file_id: str) -> ApiError:
    return ApiError(403, "PERMISSION_DENIED",
                    f"You do not have permission to access the File {file_id} or it may not exist.")


def timestamp(epoch_s: float) -> str:
    """RFC 3339 with microseconds and a Z, as the API renders times."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def proto_json(fields: dict) -> dict:
    """``fields`` without proto3's default values, as the real API renders a message: a zero
    counter or size, an empty string and an empty list are left out (the SDK reads None)."""
    return {k: v for k, v in fields.items() if v not in (None, "", "0", 0, False, [], {})}


def file_id_of(name: str) -> str:
    """``files/abc`` or ``abc`` -> ``abc``."""
    return name.removeprefix("files/")


# ---------------------------------------------------------------------------------- models


@dataclass
class RawFile:
    id: str
    display_name: str | None
    mime_type: str
    size_bytes: int
    sha256_hex: str
    create_time: float
    active_at: float
    state: str = "PROCESSING"
    source: str = "UPLOADED"
    seq: int = 0

    @property
    def name(self) -> str:
        return f"files/{self.id}"

    @property
    def expire_time(self) -> float:
        return self.create_time + FILE_TTL_S

    def to_api(self, base_url: str = "", version: str = "v1beta") -> dict:
        out = {"name": self.name, "mimeType": self.mime_type, "sizeBytes": str(self.size_bytes),
               "createTime": timestamp(self.create_time),
               "updateTime": timestamp(self.active_at if self.state == "ACTIVE"
                                       else self.create_time),
               "expirationTime": timestamp(self.expire_time),
               # the real service: base64 of the hex digest *text*
               "sha256Hash": base64.b64encode(self.sha256_hex.encode()).decode(),
               "uri": f"{base_url}/{version}/{self.name}", "state": self.state,
               "source": self.source, "displayName": self.display_name}
        return proto_json(out)


@dataclass
class Store:
    id: str
    display_name: str | None
    embedding_model: str
    create_time: float
    seq: int
    counts: dict = field(default_factory=dict)   # filled in by the state when read
    size_bytes: int = 0

    @property
    def name(self) -> str:
        return f"fileSearchStores/{self.id}"

    def to_api(self) -> dict:
        out = {"name": self.name, "createTime": timestamp(self.create_time),
               "updateTime": timestamp(self.create_time),
               "activeDocumentsCount": str(self.counts.get(ACTIVE, 0)),
               "pendingDocumentsCount": str(self.counts.get(PENDING, 0)),
               "failedDocumentsCount": str(self.counts.get(FAILED, 0)),
               "sizeBytes": str(self.size_bytes), "embeddingModel": self.embedding_model,
               "displayName": self.display_name}
        return proto_json(out)


@dataclass
class Document:
    store: str                 # the store's name, fileSearchStores/...
    id: str
    display_name: str
    raw_file: str              # the raw file id the document came from
    custom_metadata: list[dict]
    mime_type: str
    size_bytes: int
    create_time: float
    seq: int
    state: str = PENDING
    update_time: float = 0.0
    ready_at: float | None = None   # when a PENDING document turns into `final_state`
    final_state: str = ACTIVE

    @property
    def name(self) -> str:
        return f"{self.store}/documents/{self.id}"

    def metadata_dict(self) -> dict:
        """``{key: value}`` for reports (the API shape is a list of typed entries)."""
        out = {}
        for entry in self.custom_metadata:
            value = next(v for k, v in entry.items() if k != "key")
            out[entry["key"]] = value["values"] if isinstance(value, dict) else value
        return out

    def to_api(self) -> dict:
        out = {"name": self.name, "displayName": self.display_name,
               "createTime": timestamp(self.create_time),
               "updateTime": timestamp(self.update_time or self.create_time),
               "state": self.state, "sizeBytes": str(self.size_bytes), "mimeType": self.mime_type,
               "customMetadata": copy.deepcopy(self.custom_metadata)}
        return proto_json(out)


@dataclass
class Operation:
    name: str
    kind: str                  # "import" or "upload"
    store: str
    document: str
    raw_file: str
    create_time: float
    done_at: float | None      # None: it never reports done
    failed: bool = False
    done: bool = False
    mime_type: str = ""
    size_bytes: int = 0

    def to_api(self, initial: bool = False) -> dict:
        """The Operation JSON; ``initial``: as importFile / the upload finalize answer it,
        never ``done`` yet (the real service's first answer carries no ``done``)."""
        out: dict = {"name": self.name}
        if self.done and not initial:
            out["done"] = True
        if self.done and self.failed and not initial:
            out["error"] = {"code": 13, "message": INDEX_FAILED_MESSAGE}  # no details: omitted
        elif self.kind == "upload":
            # the real upload finalize already names the document, before it is done
            out["response"] = proto_json({
                "@type": UPLOAD_RESPONSE_TYPE, "parent": self.store,
                "documentName": self.document, "mimeType": self.mime_type,
                "sizeBytes": str(self.size_bytes)})
        elif self.done and not initial:
            out["response"] = {"@type": IMPORT_RESPONSE_TYPE, "parent": self.store,
                               "documentName": self.document}
        return out

    def report(self) -> dict:
        """For /_emulator/operations: when it was created and when it became done."""
        return {"name": self.name, "kind": self.kind, "store": self.store,
                "document": self.document, "file": self.raw_file, "created": self.create_time,
                "done_at": self.done_at if self.done else None,
                "error": INDEX_FAILED_MESSAGE if self.done and self.failed else None}


@dataclass
class Upload:
    """A resumable upload session, between its start and its finalize chunk."""

    id: str
    kind: str                  # "file" (files.upload) or "store" (uploadToFileSearchStore)
    mime_type: str
    size_bytes: int | None     # as announced at start, if it was
    display_name: str | None = None
    file_id: str | None = None           # client-chosen id (files.upload)
    store: str | None = None              # target store (uploadToFileSearchStore)
    custom_metadata: list[dict] = field(default_factory=list)
    received: int = 0
    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)
    chunking_config: dict | None = None   # uploadToFileSearchStore's chunkingConfig
    data: bytearray | None = None         # the bytes so far, while they may be indexed


# ---------------------------------------------------------------------------------- helpers


def parse_custom_metadata(entries) -> list[dict]:
    """Validate request metadata (camelCase or snake_case) into the API's camelCase form."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise invalid("customMetadata must be a list.")
    if len(entries) > MAX_METADATA:
        raise invalid(f"A Document may have at most {MAX_METADATA} CustomMetadata entries; "
                      f"got {len(entries)}.")
    return [_metadata_entry(entry) for entry in entries]


def _metadata_entry(entry) -> dict:
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or not entry["key"]:
        raise invalid(f"CustomMetadata entry {entry!r} needs a non-empty key.")
    values = {camel: entry[spelling] for camel, snake in (
        ("stringValue", "string_value"), ("numericValue", "numeric_value"),
        ("stringListValue", "string_list_value")) for spelling in (camel, snake)
        if spelling in entry}
    if len(values) != 1:
        raise invalid(f"CustomMetadata {entry['key']!r} needs exactly one of stringValue, "
                      "numericValue, stringListValue.")
    (kind, value), = values.items()
    if kind == "stringValue" and isinstance(value, str):
        return {"key": entry["key"], kind: value}
    if kind == "numericValue" and isinstance(value, (int, float)) and not isinstance(value, bool):
        # proto renders a float without a fraction as an integer (2024, not 2024.0)
        return {"key": entry["key"], kind: int(value) if float(value).is_integer() else value}
    if kind == "stringListValue" and isinstance(value, dict) and all(
            isinstance(v, str) for v in value.get("values", [])):
        return {"key": entry["key"], kind: {"values": list(value.get("values", []))}}
    raise invalid(f"CustomMetadata {entry['key']!r}: bad {kind} {value!r}.")


def slug(text: str | None, max_len: int = 27) -> str:
    """A document id's prefix: lowercase ``[a-z0-9-]`` from a display name (a raw file id
    stays whole), short enough for a 40-character id."""
    out = re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")
    return out[:max_len].rstrip("-")


def store_slug(text: str | None, max_len: int = 27) -> str:
    """A store id's prefix: the display name lowercased with every other character dropped,
    dashes too (the real API: ``sam-basic`` -> ``sambasic-...``)."""
    return re.sub(r"[^a-z0-9]", "", (text or "").lower())[:max_len]


def check_indexable(mime_type: str, size_bytes: int | None) -> None:
    """Refuse what File Search cannot index: an unsupported type, an empty document, or one
    over the 100 MB per-document limit (400 INVALID_ARGUMENT; the real wording is unknown)."""
    if not is_supported(mime_type):  # the published list (objlib.supported_types)
        raise invalid(f"Unsupported MIME type: {bare(mime_type) or 'none'}. File Search "
                      "indexes the text and document types of its published list only (no "
                      "images, audio, video, EPUB or application/octet-stream).")
    if size_bytes == 0:
        raise invalid("The document is empty: File Search cannot index a file of 0 bytes.")
    if size_bytes is not None and size_bytes > MAX_DOCUMENT_BYTES:
        raise invalid(f"The document is {size_bytes} bytes; File Search accepts at most "
                      f"{MAX_DOCUMENT_BYTES} bytes (100 MB) per document.")


def _may_index(upload: Upload) -> bool:
    """Whether an upload's bytes are kept for indexing: a store upload's always; a raw
    file's when File Search could index it (type and size)."""
    if upload.kind == "store":
        return True
    try:
        check_indexable(upload.mime_type, upload.size_bytes)
    except ApiError:
        return False
    return True


def _keep_bytes(upload: Upload, data: bytes) -> None:
    if upload.data is not None:
        if len(upload.data) + len(data) > MAX_DOCUMENT_BYTES:
            upload.data = None  # too large to index: the import will refuse it
        else:
            upload.data += data


def _checked_chunking(config) -> None:
    try:
        chunking(config)
    except ValueError as exc:
        raise invalid(str(exc)) from None


def storage_full(limit_bytes: int) -> ApiError:
    """The real answer to an import into a project whose File Search storage is full
    (googleapis/python-genai#1774): a 429 without details."""
    return ApiError(429, "RESOURCE_EXHAUSTED",
                    f"Corpus has reached the storage limit of {limit_bytes} bytes.")


def _page(items: list, page_size, page_token, limits: tuple[int, int]):
    """One page of ``items`` (sorted by ``seq``) and the next token, the ``seq`` of the first
    item of the next page (None on the last page)."""
    default, maximum = limits
    try:
        size = int(page_size) if page_size not in (None, "") else 0
        start = int(page_token) if page_token not in (None, "") else 0
    except ValueError:
        raise invalid("Invalid pageSize or pageToken.") from None
    if size < 0:
        raise invalid("pageSize must not be negative.")
    size = min(size or default, maximum)
    rest = [item for item in items if item.seq >= start]
    page = rest[:size]
    return page, (str(rest[size].seq) if len(rest) > size else None)


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return wrapper


# ---------------------------------------------------------------------------------- the state


class State:
    """Everything the emulated service holds, behind one lock."""

    def __init__(self, seed: int | None = None, clock=time.time,
                 storage_limit_bytes: int | None = DEFAULT_STORAGE_LIMIT_BYTES):
        self.lock = threading.RLock()
        self._clock = clock
        self._seed = seed
        self._rng = random.Random(None if seed is None else f"{seed}:ids")
        self.skew_s = 0.0
        self.storage_limit_bytes = storage_limit_bytes or None  # 0 or None: no limit
        self.spool_dir: Path | None = None  # with a state dir: upload chunks kept on disk
        self.index = SearchIndex()          # documents' text and chunks (search.py)
        self.reset()

    @_locked
    def reset(self) -> None:
        self.files: dict[str, RawFile] = {}
        self.stores: dict[str, Store] = {}          # by name
        self.documents: dict[str, Document] = {}    # by name
        self._recount_documents()
        self.operations: dict[str, Operation] = {}  # by name
        self.uploads: dict[str, Upload] = {}
        self._seq = 0
        self.index.reset()
        for spool in self.spool_dir.glob("UP*") if self.spool_dir else ():
            spool.unlink(missing_ok=True)

    # -- surviving a restart (persist.py writes and reads these)

    @_locked
    def snapshot(self) -> dict:
        """Everything a restart must keep, as JSON-able data. An upload session with chunks
        received is kept only with a ``spool_dir`` (its bytes are there: a running SHA-256
        cannot be saved, so it is computed again from them at restore)."""
        return {"format": SNAPSHOT_FORMAT, "seq": self._seq, "skew_s": self.skew_s,
                "files": [asdict(f) for f in self.files.values()],
                "stores": [asdict(s) for s in self.stores.values()],
                "documents": [asdict(d) for d in self.documents.values()],
                "operations": [asdict(o) for o in self.operations.values()],
                "uploads": [{k: v for k, v in vars(u).items() if k not in ("sha256", "data")}
                            for u in self.uploads.values()
                            if u.received == 0 or self.spool_dir is not None]}

    @_locked
    def restore(self, snapshot: dict) -> None:
        """Replace the state with a :meth:`snapshot`; ValueError if it is not one."""
        if not isinstance(snapshot, dict) or snapshot.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"not an emulator state (format {SNAPSHOT_FORMAT} expected)")
        try:
            files = {f["id"]: RawFile(**f) for f in snapshot["files"]}
            stores = {s.name: s for s in (Store(**s) for s in snapshot["stores"])}
            documents = {d.name: d for d in (Document(**d) for d in snapshot["documents"])}
            operations = {o.name: o for o in (Operation(**o) for o in snapshot["operations"])}
            uploads = {u.id: u for u in (self._resumed(Upload(**u)) for u in snapshot["uploads"])
                       if u is not None}
            seq, skew_s = int(snapshot["seq"]), float(snapshot["skew_s"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"damaged emulator state: {exc!r}") from None
        self.files, self.stores, self.documents = files, stores, documents
        self._recount_documents()
        self.operations, self.uploads, self._seq, self.skew_s = operations, uploads, seq, skew_s
        # the same seed would replay the ids already handed out: continue from elsewhere
        self._rng = random.Random(None if self._seed is None else f"{self._seed}:ids:{seq}")

    def _resumed(self, upload: Upload) -> Upload | None:
        """An upload session with its SHA-256 computed again from its spooled bytes; None
        when they are not all there (the session is dropped: its next chunk gets 404)."""
        if upload.received == 0:
            upload.data = bytearray() if _may_index(upload) else None
            return upload
        spool = self._spool(upload.id)
        if spool is None or not spool.is_file() or spool.stat().st_size != upload.received:
            return None
        upload.data = bytearray() if _may_index(upload) else None
        with spool.open("rb") as data:
            while chunk := data.read(1 << 20):
                upload.sha256.update(chunk)
                _keep_bytes(upload, chunk)
        return upload

    def _spool(self, upload_id: str) -> Path | None:
        return None if self.spool_dir is None else self.spool_dir / upload_id

    # -- time and ids

    def now(self) -> float:
        return self._clock() + self.skew_s

    @_locked
    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward (tests: expire files, finish indexing)."""
        self.skew_s += seconds

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _random_id(self, length: int = 12) -> str:
        return "".join(self._rng.choice(_ID_CHARS) for _ in range(length))

    def _fresh_id(self, prefix: str, taken) -> str:
        """``{prefix}-{12 random}`` (just the random part without a prefix), not ``taken``."""
        while taken(new := "-".join(filter(None, (prefix, self._random_id())))):
            pass
        return new

    # -- settling lazy state

    def _settle(self, obj):
        now = self.now()
        if isinstance(obj, RawFile) and obj.state == "PROCESSING" and now >= obj.active_at:
            obj.state = "ACTIVE"
        elif isinstance(obj, Document) and obj.ready_at is not None and now >= obj.ready_at:
            obj.state, obj.update_time, obj.ready_at = obj.final_state, obj.ready_at, None
        elif isinstance(obj, Operation) and not obj.done and obj.done_at is not None:
            obj.done = now >= obj.done_at
        return obj

    # -- raw files

    def _live_file(self, file_id: str) -> RawFile:
        file = self.files.get(file_id)
        if file is None or self.now() >= file.expire_time:
            if self.files.pop(file_id, None) is not None:
                self.index.forget_raw_text(file_id)
            raise file_denied(file_id)
        return self._settle(file)

    @_locked
    def get_file(self, name: str) -> RawFile:
        return copy.copy(self._live_file(file_id_of(name)))

    @_locked
    def list_files(self, page_size=None, page_token=None) -> tuple[list[RawFile], str | None]:
        now = self.now()
        live = [self._settle(f) for f in self.files.values() if now < f.expire_time]
        page, token = _page(sorted(live, key=lambda f: f.seq), page_size, page_token, FILES_PAGE)
        return [copy.copy(f) for f in page], token

    @_locked
    def delete_file(self, name: str) -> None:
        file_id = file_id_of(name)
        self._live_file(file_id)
        del self.files[file_id]
        self.index.forget_raw_text(file_id)

    @_locked
    def expire_file(self, name: str) -> None:
        """Drift: make a raw file look 48 hours old (it is gone from then on)."""
        self._live_file(file_id_of(name)).create_time = self.now() - FILE_TTL_S

    @_locked
    def add_file(self, file_id: str | None = None, *, data: bytes = b"", mime_type="text/plain",
                 display_name: str | None = None, active_after_s: float = 0.0) -> RawFile:
        """Drift and tests: a raw file as if uploaded (ACTIVE unless ``active_after_s``)."""
        file = self._put_file(file_id, display_name, mime_type, len(data),
                              hashlib.sha256(data).hexdigest(), active_after_s)
        self._keep_text(file.id, bytes(data), mime_type)
        return file

    def _put_file(self, file_id, display_name, mime_type, size_bytes, sha256_hex,
                  active_after_s) -> RawFile:
        file_id = self._check_new_file_id(file_id)
        now = self.now()
        file = RawFile(file_id, display_name, mime_type, size_bytes, sha256_hex, now,
                       now + active_after_s, seq=self._next_seq())
        self.files[file_id] = file
        return copy.copy(self._settle(file))

    def _check_new_file_id(self, file_id: str | None) -> str:
        if file_id is None:
            return self._fresh_id("", self.files.__contains__)
        file_id = file_id_of(file_id)
        if not _CLIENT_ID.match(file_id):
            raise invalid(f"Invalid file name 'files/{file_id}': the id may have up to 40 "
                          "lowercase letters, digits and dashes, and cannot start or end "
                          "with a dash.")
        if file_id in self.files and self.now() < self.files[file_id].expire_time:
            raise ApiError(409, "ALREADY_EXISTS", f"File files/{file_id} already exists.")
        return file_id

    # -- resumable uploads

    @_locked
    def start_upload(self, kind: str, *, mime_type: str, size_bytes: int | None,
                     display_name: str | None = None, file_name: str | None = None,
                     store: str | None = None, custom_metadata=None,
                     chunking_config=None) -> Upload:
        """Open an upload session (``kind`` "file" or "store"); validates what it can up front."""
        file_id = self._check_new_file_id(file_name) if file_name else None
        if store is not None:
            self._store(store)
            check_indexable(mime_type, size_bytes)
        elif size_bytes is not None and size_bytes > MAX_FILE_BYTES:
            raise invalid(f"The file is {size_bytes} bytes; the Files API accepts at most "
                          f"{MAX_FILE_BYTES} bytes (2 GB) per file.")
        if display_name is not None and len(display_name) > MAX_DISPLAY_NAME:
            raise invalid(f"displayName is longer than {MAX_DISPLAY_NAME} characters.")
        if store is not None:
            _checked_chunking(chunking_config)
        upload = Upload("UP" + self._random_id(20), kind, mime_type, size_bytes, display_name,
                        file_id, store, parse_custom_metadata(custom_metadata),
                        chunking_config=chunking_config)
        upload.data = bytearray() if _may_index(upload) else None
        self.uploads[upload.id] = upload
        return copy.copy(upload)

    @_locked
    def upload_kind(self, upload_id: str) -> str:
        return self._upload(upload_id).kind

    def _upload(self, upload_id: str) -> Upload:
        if upload_id not in self.uploads:
            raise not_found("Upload session", upload_id)
        return self.uploads[upload_id]

    @_locked
    def append_chunk(self, upload_id: str, offset: int | None, data: bytes) -> int:
        """Take one chunk at ``offset``; returns the bytes received so far."""
        upload = self._upload(upload_id)
        if offset is not None and offset != upload.received:
            raise invalid(f"Upload offset {offset} does not match the {upload.received} "
                          "bytes received so far.")
        if upload.size_bytes is not None and upload.received + len(data) > upload.size_bytes:
            raise invalid(f"The upload is larger than the announced {upload.size_bytes} bytes.")
        spool = self._spool(upload_id)
        if spool is not None and data:
            spool.parent.mkdir(parents=True, exist_ok=True)
            with spool.open("ab") as out:
                out.write(data)
        upload.sha256.update(data)
        _keep_bytes(upload, data)
        upload.received += len(data)
        return upload.received

    @_locked
    def finish_file_upload(self, upload_id: str, *, active_after_s: float) -> RawFile:
        """Finalize a files.upload session: the raw file exists from now, PROCESSING for a while."""
        upload = self._finish(upload_id)
        if upload.received == 0:
            raise invalid("The file is empty: an upload needs at least 1 byte.")
        file = self._put_file(upload.file_id, upload.display_name, upload.mime_type,
                              upload.received, upload.sha256.hexdigest(), active_after_s)
        if upload.data is not None:
            self._keep_text(file.id, bytes(upload.data), upload.mime_type)
        else:
            self.index.forget_raw_text(file.id)
        return file

    def _keep_text(self, file_id: str, data: bytes, mime_type: str) -> None:
        """Keep the text a raw file would be indexed with (or why it cannot be read)."""
        try:
            self.index.keep_raw_text(file_id, document_text(data, mime_type))
        except ValueError as exc:
            self.index.keep_raw_text(file_id, None, str(exc) or "unreadable")

    @_locked
    def finish_store_upload(self, upload_id: str, *, index_after_s: float,
                            outcome: str = "active") -> Operation:
        """Finalize an uploadToFileSearchStore session: a document and its upload operation."""
        upload = self._finish(upload_id)
        check_indexable(upload.mime_type, upload.received)
        self._check_storage(upload.received)
        try:
            text = document_text(bytes(upload.data or b""), upload.mime_type)
        except ValueError:
            text, outcome = "", "failed"
        return self._add_indexing(upload.store, None, "upload", upload.custom_metadata,
                                  upload.mime_type, upload.received, index_after_s, outcome,
                                  display_name=upload.display_name, text=text,
                                  chunking_config=upload.chunking_config)

    def _finish(self, upload_id: str) -> Upload:
        upload = self._upload(upload_id)
        if upload.size_bytes is not None and upload.received != upload.size_bytes:
            raise invalid(f"The upload ended after {upload.received} of the announced "
                          f"{upload.size_bytes} bytes.")
        del self.uploads[upload_id]
        if (spool := self._spool(upload_id)) is not None:
            spool.unlink(missing_ok=True)
        return upload

    # -- stores

    def _store(self, name: str) -> Store:
        if name not in self.stores:
            raise not_found("FileSearchStore", name)
        return self.stores[name]

    def _counted_store(self, name: str) -> Store:
        """The store with its document counters and size brought up to date."""
        store = self._store(name)
        docs = [self._settle(d) for d in self.documents.values() if d.store == name]
        store.counts = {state: sum(d.state == state for d in docs) for state in DOCUMENT_STATES}
        store.size_bytes = sum(d.size_bytes for d in docs if d.state == ACTIVE)
        return store

    @_locked
    def create_store(self, display_name: str | None = None,
                     embedding_model: str | None = None) -> Store:
        if display_name is not None and len(display_name) > MAX_DISPLAY_NAME:
            raise invalid(f"displayName is longer than {MAX_DISPLAY_NAME} characters.")
        store_id = self._fresh_id(store_slug(display_name),
                                  lambda i: f"fileSearchStores/{i}" in self.stores)
        store = Store(store_id, display_name, embedding_model or DEFAULT_EMBEDDING_MODEL,
                      self.now(), self._next_seq())
        self.stores[store.name] = store
        return copy.copy(self._counted_store(store.name))

    @_locked
    def get_store(self, name: str) -> Store:
        return copy.copy(self._counted_store(name))

    @_locked
    def list_stores(self, page_size=None, page_token=None) -> tuple[list[Store], str | None]:
        page, token = _page(list(self.stores.values()), page_size, page_token, STORES_PAGE)
        return [copy.copy(self._counted_store(s.name)) for s in page], token

    @_locked
    def delete_store(self, name: str, force: bool = False) -> None:
        store = self._store(name)
        docs = [d for d in self.documents.values() if d.store == name]
        if docs and not force:
            raise ApiError(400, "FAILED_PRECONDITION",
                           f"Cannot delete {name}: it holds {len(docs)} document(s); "
                           "set force=true to delete them with it.")
        for doc in docs:
            self._forget_document(doc.name)
        self.index.drop_documents(doc.name for doc in docs)
        del self.stores[store.name]

    # -- documents and operations

    @_locked
    def import_file(self, store: str, file_name: str | None, custom_metadata=None, *,
                    index_after_s: float = 0.0, outcome: str = "active",
                    chunking_config=None) -> Operation:
        """importFile: a NEW pending document every call (no idempotency, like the real API).
        The document is indexed with the raw file's text, chunked by ``chunking_config``; a
        raw file whose bytes could not be read makes a FAILED document."""
        self._store(store)
        if not file_name:
            raise invalid("fileName is required.")
        metadata = parse_custom_metadata(custom_metadata)
        _checked_chunking(chunking_config)
        file = self._live_file(file_id_of(file_name))
        if file.state != "ACTIVE":
            raise ApiError(400, "FAILED_PRECONDITION",
                           f"File {file.name} is not ACTIVE yet (it is {file.state}).")
        check_indexable(file.mime_type, file.size_bytes)
        self._check_storage(file.size_bytes)
        text, error = self.index.raw_text(file.id)
        return self._add_indexing(store, file.id, "import", metadata, file.mime_type,
                                  file.size_bytes, index_after_s,
                                  "failed" if error else outcome, text=text,
                                  chunking_config=chunking_config)

    def _check_storage(self, input_bytes: int) -> None:
        """429 when indexing ``input_bytes`` more would pass the project's storage limit.
        Counted: 3 x the input of every document that holds chunks (pending or active) in
        every store. The real service may refuse only once the limit is already reached;
        the emulator refuses the document that would cross it (the stricter answer)."""
        limit = self.storage_limit_bytes
        if limit is None:
            return
        used = STORED_BYTES_PER_INPUT_BYTE * self.stored_input_bytes()
        if used + STORED_BYTES_PER_INPUT_BYTE * input_bytes > limit:
            raise storage_full(limit)

    def _add_indexing(self, store, raw_id, kind, metadata, mime_type, size_bytes,
                      index_after_s, outcome, display_name=None, text=None,
                      chunking_config=None) -> Operation:
        """A pending document and its operation. An upload's document (``raw_id`` None) has
        an id derived from its display name, and its operation the same id. Its ``text`` is
        chunked and indexed now; only an ACTIVE document is ever searched."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
        prefix = f"{store}/upload/operations" if kind == "upload" else f"{store}/operations"
        doc = self._new_document(store, raw_id, metadata, mime_type, size_bytes, PENDING,
                                 display_name=display_name,
                                 taken=lambda i: f"{prefix}/{i}" in self.operations)
        now = doc.create_time
        doc.ready_at = now + index_after_s
        doc.final_state = FAILED if outcome == "failed" else ACTIVE
        if doc.final_state == FAILED:
            self._maybe_failed.add(doc.name)
        op_id = doc.id if kind == "upload" else self._fresh_id(
            "", lambda i: f"{prefix}/{i}" in self.operations)
        op = Operation(f"{prefix}/{op_id}", kind, store, doc.name, raw_id or doc.id, now,
                       None if outcome == "never_done" else doc.ready_at,
                       failed=outcome == "failed", mime_type=mime_type, size_bytes=size_bytes)
        self.operations[op.name] = op
        if text and outcome != "failed":
            self.index.add_document(doc.name, text, chunking(chunking_config))
        self._settle(doc)
        return copy.copy(self._settle(op))

    def _new_document(self, store, raw_id, metadata, mime_type, size_bytes, state,
                      display_name=None, taken=lambda _id: False) -> Document:
        prefix = raw_id if raw_id is not None else slug(display_name)
        doc_id = self._fresh_id(prefix, lambda i: f"{store}/documents/{i}" in self.documents
                                or taken(i))
        raw_id = raw_id or doc_id
        now = self.now()
        doc = Document(store, doc_id, display_name or raw_id, raw_id, metadata, mime_type,
                       size_bytes, now, self._next_seq(), state, now)
        self.documents[doc.name] = doc
        self._document_bytes += doc.size_bytes
        if state == FAILED:
            self._maybe_failed.add(doc.name)
        return doc

    # The storage check counts the bytes of every document that is not FAILED. Summing them
    # over every document at each import made a run O(n^2) (10 ms an import at 20,000
    # documents); instead the total of all documents is kept, and the few documents that
    # are or may become FAILED (created so, or set so) are looked at one by one.

    def stored_input_bytes(self) -> int:
        """The input bytes of every document that is not FAILED (in every store)."""
        failed = sum(self.documents[name].size_bytes for name in self._maybe_failed
                     if self._settle(self.documents[name]).state == FAILED)
        return self._document_bytes - failed

    def _recount_documents(self) -> None:
        self._document_bytes = sum(d.size_bytes for d in self.documents.values())
        self._maybe_failed = {d.name for d in self.documents.values()
                              if FAILED in (d.state, d.final_state)}

    def _forget_document(self, name: str) -> None:
        doc = self.documents.pop(name)
        self._document_bytes -= doc.size_bytes
        self._maybe_failed.discard(name)

    @_locked
    def add_document(self, store: str, raw_file: str, *, custom_metadata=None,
                     state: str = ACTIVE, mime_type: str = "text/plain",
                     size_bytes: int = 0) -> Document:
        """Drift: a document for a raw file id without going through importFile."""
        self._store(store)
        doc = self._new_document(store, file_id_of(raw_file),
                                 parse_custom_metadata(custom_metadata), mime_type, size_bytes,
                                 self._check_state(state))
        return copy.copy(doc)

    @_locked
    def set_document_state(self, name: str, state: str) -> Document:
        """Drift: force a document's state now (cancels any pending transition)."""
        doc = self._document(name)
        doc.state, doc.ready_at, doc.update_time = self._check_state(state), None, self.now()
        if doc.state == FAILED:
            self._maybe_failed.add(doc.name)
        return copy.copy(doc)

    @staticmethod
    def _check_state(state: str) -> str:
        if state not in DOCUMENT_STATES:
            raise ValueError(f"document state must be one of {DOCUMENT_STATES}, not {state!r}")
        return state

    def _document(self, name: str) -> Document:
        if name not in self.documents:
            raise not_found("Document", name)
        return self._settle(self.documents[name])

    @_locked
    def get_document(self, name: str) -> Document:
        return copy.copy(self._document(name))

    @_locked
    def list_documents(self, store: str, page_size=None,
                       page_token=None) -> tuple[list[Document], str | None]:
        self._store(store)
        docs = [self._settle(d) for d in self.documents.values() if d.store == store]
        page, token = _page(docs, page_size, page_token, DOCUMENTS_PAGE)
        return [copy.copy(d) for d in page], token

    @_locked
    def delete_document(self, name: str, force: bool = False) -> None:
        doc = self._document(name)
        if not force and doc.state != FAILED:
            raise ApiError(400, "FAILED_PRECONDITION",
                           f"Document {name} has chunks; set force=true to delete it.")
        self._forget_document(name)
        self.index.drop_documents([name])

    @_locked
    def get_operation(self, name: str) -> Operation:
        if name not in self.operations:
            raise not_found("Operation", name)
        return copy.copy(self._settle(self.operations[name]))

    # -- search (generateContent with the fileSearch tool)

    @_locked
    def search(self, store_names: list[str], question: str, metadata_filter=None,
               top_k: int = DEFAULT_TOP_K) -> list[tuple[Hit, Document]]:
        """The ``top_k`` chunks that best match ``question`` among the ACTIVE documents of
        ``store_names`` whose custom metadata ``metadata_filter`` (a ``filter.parse`` tree, or
        None) matches; each with a copy of its document. An unknown store is a 404."""
        for name in store_names:
            self._store(name)
        wanted = set(store_names)
        docs = {d.name: d for d in self.documents.values()
                if d.store in wanted and self._settle(d).state == ACTIVE
                and (metadata_filter is None or metadata_filter.matches(d.metadata_dict()))}
        hits = self.index.query(question, docs, min(top_k, MAX_TOP_K))
        return [(hit, copy.copy(docs[hit.document])) for hit in hits]

    # -- reports for /_emulator/*

    @_locked
    def operations_report(self) -> list[dict]:
        return [self._settle(op).report() for op in self.operations.values()]

    @_locked
    def stores_report(self) -> dict:
        """Per store: counts, and documents grouped by the raw file they came from."""
        out = {}
        for name in self.stores:
            store = self._counted_store(name)
            by_file: dict[str, list] = {}
            for doc in self.documents.values():
                if doc.store == name:
                    by_file.setdefault(doc.raw_file, []).append(
                        {"name": doc.name, "state": doc.state,
                         "customMetadata": doc.metadata_dict()})
            out[name] = {"displayName": store.display_name,
                         "documents": sum(map(len, by_file.values())),
                         "byState": dict(store.counts), "files": by_file,
                         "duplicates": sorted(f for f, docs in by_file.items() if len(docs) > 1)}
        return out
