"""One small function per API action: read the parameters, call the model, render.

Every handler is ``handler(app, req, **route_params) -> Response``; ``app`` gives ``.state``
(state.State) and ``.behaviour`` (behaviour.Behaviour). Domain errors are raised as
``ApiError`` and rendered by the server. Request bodies may use camelCase or snake_case keys
(the SDK sends nested objects in snake_case); an empty body is an empty object; a name that
is neither is refused as the real API refuses it (``schema.py``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from objlib.emulator import generation, grounding, schema
from objlib.emulator.state import ApiError, invalid

CHUNK_GRANULARITY = 8 * 1024 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)   # keys lower-case
    body: bytes = b""
    base_url: str = "http://127.0.0.1"                      # scheme://Host of the request

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self, fields: dict | None = None) -> dict:
        """The body as an object; with ``fields`` (a ``schema`` dict) unknown names are a 400."""
        data = self._parsed()
        return data if fields is None else schema.check(data, fields)

    def _parsed(self) -> dict:
        if not self.body.strip():
            return {}
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise invalid(f"Invalid JSON payload received. {exc}") from None
        if not isinstance(data, dict):
            raise invalid("Invalid JSON payload received: expected an object.")
        return data

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").strip().lower() in ("true", "1")


@dataclass
class Response:
    status: int = 200
    body: dict | list | None = field(default_factory=dict)   # None: an empty body
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float | None = None                      # None: the "call" latency
    events: list[dict] | None = None                  # server-sent events instead of a body


def field_of(data: dict, camel: str, default=None):
    """``data[camel]`` or its snake_case spelling."""
    if camel in data:
        return data[camel]
    return data.get(re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower(), default)


def _listing(key: str, items: list[dict], token: str | None) -> Response:
    body: dict = {key: items} if items else {}     # proto3 JSON leaves out empty lists
    if token:
        body["nextPageToken"] = token
    return Response(body=body)


# ---------------------------------------------------------------------------------- files


def files_upload_start(app, req: Request, v: str) -> Response:
    meta = req.json(schema.CREATE_FILE).get("file") or {}
    _begin_upload(app, req)
    upload = app.state.start_upload(
        "file", mime_type=_upload_mime(req, meta), size_bytes=_upload_size(req, meta),
        display_name=field_of(meta, "displayName"), file_name=field_of(meta, "name"))
    return _upload_started(req, upload.id)


def files_get(app, req: Request, v: str, file_id: str) -> Response:
    return Response(body=app.state.get_file(file_id).to_api(req.base_url, v))


def files_list(app, req: Request, v: str) -> Response:
    files, token = app.state.list_files(req.query.get("pageSize"), req.query.get("pageToken"))
    return _listing("files", [f.to_api(req.base_url, v) for f in files], token)


def files_delete(app, req: Request, v: str, file_id: str) -> Response:
    app.state.delete_file(file_id)
    return Response()


# ---------------------------------------------------------------------------------- uploads


def _begin_upload(app, req: Request) -> None:
    """Checks shared by both upload starts, and the transient create_failed fault."""
    protocol = (req.header("X-Goog-Upload-Protocol") or "").lower()
    command = (req.header("X-Goog-Upload-Command") or "").lower()
    if protocol != "resumable" or command != "start":
        raise invalid("Only the resumable upload protocol is emulated: send "
                      "X-Goog-Upload-Protocol: resumable and X-Goog-Upload-Command: start.")
    if app.behaviour.roll("create_failed"):
        raise invalid("Failed to create file.")


def _upload_mime(req: Request, meta: dict) -> str:
    return (field_of(meta, "mimeType") or req.header("X-Goog-Upload-Header-Content-Type")
            or "application/octet-stream")


def _upload_size(req: Request, meta: dict) -> int | None:
    size = req.header("X-Goog-Upload-Header-Content-Length") or field_of(meta, "sizeBytes")
    try:
        return None if size in (None, "") else int(size)
    except ValueError:
        raise invalid(f"Invalid upload size {size!r}.") from None


def _upload_started(req: Request, upload_id: str) -> Response:
    url = f"{req.base_url}{req.path}?upload_id={upload_id}&upload_protocol=resumable"
    return Response(body=None, headers={
        "X-Goog-Upload-Status": "active", "X-Goog-Upload-URL": url,
        "X-Goog-Upload-Control-URL": url,
        "X-Goog-Upload-Chunk-Granularity": str(CHUNK_GRANULARITY)})


def _chunk_offset(req: Request) -> int | None:
    offset = req.header("X-Goog-Upload-Offset")
    try:
        return None if offset is None else int(offset)
    except ValueError:
        raise invalid(f"Invalid X-Goog-Upload-Offset {offset!r}.") from None


def upload_chunk(app, req: Request, v: str, upload_id: str) -> Response:
    """One chunk, POST or PUT (``upload``, ``upload, finalize`` or ``query``); the server
    marks any error answer ``X-Goog-Upload-Status: final``."""
    commands = {c.strip().lower() for c in (req.header("X-Goog-Upload-Command") or "").split(",")}
    if not commands & {"upload", "finalize", "query"}:
        raise invalid(f"Unknown X-Goog-Upload-Command {req.header('X-Goog-Upload-Command')!r}.")
    received = app.state.append_chunk(upload_id, _chunk_offset(req),
                                      req.body if "upload" in commands else b"")
    if "finalize" not in commands:
        return Response(body=None, headers={"X-Goog-Upload-Status": "active",
                                            "X-Goog-Upload-Size-Received": str(received)})
    delay_s = app.behaviour.delay_s("upload")
    final = {"X-Goog-Upload-Status": "final"}
    if app.state.upload_kind(upload_id) == "file":
        # ACTIVE in the answer itself unless an activate latency is set (then PROCESSING
        # until that long after the answer)
        activate_s = app.behaviour.delay_s("activate")
        file = app.state.finish_file_upload(
            upload_id, active_after_s=delay_s + activate_s if activate_s > 0 else 0.0)
        return Response(body={"file": file.to_api(req.base_url, v)}, headers=final,
                        delay_s=delay_s)
    op = app.state.finish_store_upload(
        upload_id, index_after_s=delay_s + app.behaviour.delay_s("index"),
        outcome=app.behaviour.index_outcome())
    return Response(body=op.to_api(initial=True), headers=final, delay_s=delay_s)


# ---------------------------------------------------------------------------------- stores


def _store_name(store_id: str) -> str:
    return f"fileSearchStores/{store_id}"


def stores_create(app, req: Request, v: str) -> Response:
    body = req.json(schema.CREATE_STORE)
    store = app.state.create_store(field_of(body, "displayName"), field_of(body, "embeddingModel"))
    return Response(body=store.to_api())


def stores_list(app, req: Request, v: str) -> Response:
    stores, token = app.state.list_stores(req.query.get("pageSize"), req.query.get("pageToken"))
    return _listing("fileSearchStores", [s.to_api() for s in stores], token)


def stores_get(app, req: Request, v: str, store_id: str) -> Response:
    return Response(body=app.state.get_store(_store_name(store_id)).to_api())


def stores_delete(app, req: Request, v: str, store_id: str) -> Response:
    app.state.delete_store(_store_name(store_id), force=req.flag("force"))
    return Response()


def stores_import_file(app, req: Request, v: str, store_id: str) -> Response:
    body = req.json(schema.IMPORT_FILE)
    op = app.state.import_file(
        _store_name(store_id), field_of(body, "fileName"), field_of(body, "customMetadata"),
        index_after_s=app.behaviour.delay_s("index"), outcome=app.behaviour.index_outcome(),
        chunking_config=field_of(body, "chunkingConfig"))
    return Response(body=op.to_api(initial=True), delay_s=app.behaviour.delay_s("import"))


def stores_upload_start(app, req: Request, v: str, store_id: str) -> Response:
    body = req.json(schema.UPLOAD_TO_STORE)
    _begin_upload(app, req)
    upload = app.state.start_upload(
        "store", mime_type=_upload_mime(req, body), size_bytes=_upload_size(req, {}),
        display_name=field_of(body, "displayName"), store=_store_name(store_id),
        custom_metadata=field_of(body, "customMetadata"),
        chunking_config=field_of(body, "chunkingConfig"))
    return _upload_started(req, upload.id)


def operations_get(app, req: Request, v: str, name: str) -> Response:
    return Response(body=app.state.get_operation(name).to_api())


# ---------------------------------------------------------------------------------- documents


def documents_list(app, req: Request, v: str, store_id: str) -> Response:
    docs, token = app.state.list_documents(_store_name(store_id), req.query.get("pageSize"),
                                           req.query.get("pageToken"))
    return _listing("documents", [d.to_api() for d in docs], token)


def documents_get(app, req: Request, v: str, name: str) -> Response:
    return Response(body=app.state.get_document(name).to_api())


def documents_delete(app, req: Request, v: str, name: str) -> Response:
    app.state.delete_document(name, force=req.flag("force"))
    return Response()


# ---------------------------------------------------------------------------------- models


def models_generate_content(app, req: Request, v: str, model: str) -> Response:
    return Response(body=grounding.response(*_generate(app, req, v, model, "generateContent")))


def models_stream_generate_content(app, req: Request, v: str, model: str) -> Response:
    """``alt=sse`` (what the SDK asks for): server-sent events; otherwise a JSON array."""
    events = grounding.stream(*_generate(app, req, v, model, "StreamGenerateContent"))
    return Response(events=events) if req.query.get("alt") == "sse" else Response(body=events)


def _generate(app, req: Request, v: str, model: str, method: str):
    body = req.json(schema.GENERATE_CONTENT)
    generation.check_model(model, v, method)
    question = generation.question(body.get("contents"))
    tool = generation.file_search_tool(body.get("tools"))
    if tool is None:
        return model, question, None
    return model, question, app.state.search(tool.stores, question, tool.metadata_filter,
                                             tool.top_k)


# ---------------------------------------------------------------------------------- /_emulator


def emulator_stats(app, req: Request) -> Response:
    return Response(body=app.stats())


def emulator_operations(app, req: Request) -> Response:
    return Response(body={"operations": app.state.operations_report()})


def emulator_reset(app, req: Request) -> Response:
    app.reset()
    return Response()


def not_found_route(app, req: Request) -> Response:
    raise ApiError(404, "NOT_FOUND", f"No such method: {req.method} {req.path}")
