"""The route table: (method, path pattern) -> (endpoint name for the statistics, kind, handler).

Kinds: ``api`` calls need an API key and meet the quota and the faults; ``chunk`` (a POST to an
upload URL, recognised by its ``upload_id``) is authenticated by that id alone; ``admin`` is
``/_emulator/*``, outside the faults, the quota and the statistics; ``unknown`` (no route)
is a 404 NOT_FOUND, counted but never faulted. ``v1``, ``v1beta`` and ``v1alpha`` are served
alike (a third-party CLI lists documents through v1alpha). A chunk may come as POST (the SDK)
or PUT (LiteLLM's ingest). Resource names are matched verbatim, as the SDK puts them in the
path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from objlib.emulator import handlers as h

_V = r"(?P<v>v1|v1beta|v1alpha)"
_ID = r"[^/:?]+"
_STORE = rf"fileSearchStores/(?P<store_id>{_ID})"
_OPERATION = rf"(?P<name>fileSearchStores/{_ID}(?:/upload)?/operations/{_ID})"
_DOCUMENT = rf"(?P<name>fileSearchStores/{_ID}/documents/{_ID})"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern
    endpoint: str
    handler: Callable
    kind: str = "api"


def _route(method: str, pattern: str, endpoint: str, handler: Callable, kind: str = "api") -> Route:
    return Route(method, re.compile(f"^{pattern}$"), endpoint, handler, kind)


ROUTES: tuple[Route, ...] = (
    _route("POST", rf"/upload/{_V}/files", "upload.start", h.files_upload_start),
    _route("POST", rf"/upload/{_V}/{_STORE}:uploadToFileSearchStore", "stores.upload.start",
           h.stores_upload_start),
    _route("GET", rf"/{_V}/files", "files.list", h.files_list),
    _route("GET", rf"/{_V}/files/(?P<file_id>{_ID})", "files.get", h.files_get),
    _route("DELETE", rf"/{_V}/files/(?P<file_id>{_ID})", "files.delete", h.files_delete),
    _route("POST", rf"/{_V}/fileSearchStores", "stores.create", h.stores_create),
    _route("GET", rf"/{_V}/fileSearchStores", "stores.list", h.stores_list),
    _route("GET", rf"/{_V}/{_STORE}", "stores.get", h.stores_get),
    _route("DELETE", rf"/{_V}/{_STORE}", "stores.delete", h.stores_delete),
    _route("POST", rf"/{_V}/{_STORE}:importFile", "stores.importFile", h.stores_import_file),
    _route("GET", rf"/{_V}/{_OPERATION}", "operations.get", h.operations_get),
    _route("GET", rf"/{_V}/{_STORE}/documents", "documents.list", h.documents_list),
    _route("GET", rf"/{_V}/{_DOCUMENT}", "documents.get", h.documents_get),
    _route("DELETE", rf"/{_V}/{_DOCUMENT}", "documents.delete", h.documents_delete),
    _route("POST", rf"/{_V}/models/(?P<model>{_ID}):generateContent", "models.generateContent",
           h.models_generate_content),
    _route("POST", rf"/{_V}/models/(?P<model>{_ID}):streamGenerateContent",
           "models.streamGenerateContent", h.models_stream_generate_content),
    _route("GET", r"/_emulator/stats", "emulator.stats", h.emulator_stats, "admin"),
    _route("GET", r"/_emulator/operations", "emulator.operations", h.emulator_operations, "admin"),
    _route("POST", r"/_emulator/reset", "emulator.reset", h.emulator_reset, "admin"),
)

UPLOAD_CHUNK = _route("POST", rf"/upload/{_V}/.+", "upload.chunk", h.upload_chunk, "chunk")
NOT_FOUND = _route("ANY", r".*", "unknown", h.not_found_route, "unknown")


def resolve(method: str, path: str, query: dict[str, str]) -> tuple[Route, dict[str, str]]:
    """The route for a request and its path parameters (NOT_FOUND when nothing matches)."""
    if (method in ("POST", "PUT") and "upload_id" in query
            and (m := UPLOAD_CHUNK.pattern.match(path))):
        return UPLOAD_CHUNK, {**m.groupdict(), "upload_id": query["upload_id"]}
    for route in ROUTES:
        if route.method == method and (m := route.pattern.match(path)):
            return route, m.groupdict()
    return NOT_FOUND, {}
