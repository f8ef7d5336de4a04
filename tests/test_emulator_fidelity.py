"""The emulator refuses what Gemini refuses and answers as Gemini answers (issue 13), each
behaviour checked with the real google-genai SDK over HTTP (sync, and async where the SDK has
it), and objlib's handling of each new answer: uploads ACTIVE at once, the storage limit and
objlib's store_full class, unknown JSON fields, unindexable files, omitted zero fields, PUT
chunks and v1alpha, the real id shapes, and state that survives a restart."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re

import pytest
from click.testing import CliRunner
from google.genai import errors, types

from objlib import pipeline, tasks
from objlib.catalog import lifecycle as lc
from objlib.cli import cli
from objlib.emulator import PROFILES, Emulator
from objlib.emulator.state import MAX_DOCUMENT_BYTES
from objlib.enqueue import enqueue, ensure_store
from objlib.failures import failures_report
from objlib.gemini.client import GeminiClient
from objlib.gemini.errors import StoreFull, classify
from objlib.scan import scan_library
from objlib.settings import Settings
from objlib.throttle import Throttle
from scripts import sample_documents as sd
from tests.support.catalogue import file_states
from tests.support.disk import write_library
from tests.support.sdk import META, make_client, raw, upload
from tests.support.store import assert_converged, documents
from tests.support.waits import wait_for

KEY = {"x-goog-api-key": "k", "Content-Type": "application/json"}
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def client(emulator):
    return make_client(emulator)


def body_of(exc: errors.APIError) -> dict:
    return exc.details["error"]


def finished(client, op):
    while not op.done:
        op = client.operations.get(op)
    return op


# --- 1. uploads are ACTIVE at once ---------------------------------------------------------


def test_every_profile_activates_uploads_at_once():
    assert {name: p.latency_s["activate"] for name, p in PROFILES.items()} == {
        name: 0.0 for name in PROFILES}


def test_an_upload_answers_active_with_create_time_equal_update_time(client, emulator):
    emulator.configure(profile="realistic")

    async def async_upload():
        return await client.aio.files.upload(file=io.BytesIO(b"async"), config={
            "name": "files/async-active", "mime_type": "text/plain"})

    for got in (upload(client, "sync-active"), asyncio.run(async_upload())):
        assert got.state == types.FileState.ACTIVE
        assert got.create_time == got.update_time


def test_the_pipeline_uploads_and_imports_in_one_task_run(settings, library, emulator):
    emulator.configure(profile="realistic")
    write_library(library, 1)
    scan_library(settings, library)
    ctx = pipeline.build_context(settings)
    try:
        ensure_store(settings, ctx.catalog, ctx.gemini)
        row = lc.get(ctx.catalog, 1)
        lc.mark_queued(ctx.catalog, row.id, row.version, "task-1", ctx.clock())

        started = pipeline.upload_and_import(ctx, row.id, row.version, "task-1")

        assert started is True and lc.get(ctx.catalog, row.id).state == lc.IMPORTING
        assert emulator.stats()["requests"]["stores.importFile"] == 1
    finally:
        ctx.gemini.close()
        ctx.catalog.close()


# --- 2. the storage limit ------------------------------------------------------------------

FULL = "Corpus has reached the storage limit of 300 bytes."


@pytest.fixture
def small(monkeypatch):
    """An emulator whose project holds 300 stored bytes: 100 bytes of input (3x)."""
    with Emulator(profile="instant", seed=2, storage_limit_bytes=300) as emu:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        yield emu


def test_an_import_past_the_storage_limit_is_the_real_429(small):
    client = make_client(small)
    store = client.file_search_stores.create(config={"display_name": "full"})
    fits = upload(client, "fits", b"x" * 60)
    over = upload(client, "over", b"y" * 41)
    finished(client, client.file_search_stores.import_file(
        file_search_store_name=store.name, file_name=fits.name))

    with pytest.raises(errors.ClientError) as sync_exc:
        client.file_search_stores.import_file(file_search_store_name=store.name,
                                              file_name=over.name)

    async def async_import():
        with pytest.raises(errors.ClientError) as exc:
            await client.aio.file_search_stores.import_file(
                file_search_store_name=store.name, file_name=over.name)
        return exc.value

    for exc in (sync_exc.value, asyncio.run(async_import())):
        assert exc.code == 429 and body_of(exc) == {
            "code": 429, "message": FULL, "status": "RESOURCE_EXHAUSTED"}


def test_a_store_upload_past_the_limit_is_refused_and_deleting_frees_space(small):
    client = make_client(small)
    store = client.file_search_stores.create(config={"display_name": "full"})
    first = finished(client, client.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name, file=io.BytesIO(b"a" * 100),
        config={"mime_type": "text/plain"}))

    with pytest.raises(errors.ClientError) as exc:
        client.file_search_stores.upload_to_file_search_store(
            file_search_store_name=store.name, file=io.BytesIO(b"b"),
            config={"mime_type": "text/plain"})
    client.file_search_stores.documents.delete(name=first.response.document_name,
                                               config={"force": True})
    again = client.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name, file=io.BytesIO(b"b" * 100),
        config={"mime_type": "text/plain"})

    assert exc.value.code == 429 and exc.value.message == FULL
    assert finished(client, again).error is None


def test_the_storage_counted_is_every_document_not_failed_through_every_change():
    """The storage check keeps a running total instead of summing every document at each
    import: after each change it must equal that sum (documents failed at creation, by
    indexing later, set failed or active, deleted, with their store, after a restore)."""
    from objlib.emulator.state import State

    clock = [1000.0]
    state = State(seed=5, clock=lambda: clock[0], storage_limit_bytes=None)

    def counted_by_summing() -> int:
        return sum(d.size_bytes for d in state.documents.values()
                   if state._settle(d).state != "STATE_FAILED")

    checks = []
    store = state.create_store("s").name
    other = state.create_store("t").name
    docs = []
    for i, (where, outcome) in enumerate([(store, "active"), (store, "failed"),
                                          (other, "failed"), (other, "active"),
                                          (store, "never_done")]):
        state.add_file(f"raw{i}", data=b"x" * (10 + i))
        op = state.import_file(where, f"files/raw{i}", index_after_s=5.0, outcome=outcome)
        docs.append(op.document)
        checks.append(state.stored_input_bytes() == counted_by_summing())
    clock[0] += 10  # the failing documents are FAILED now, without anyone settling them
    checks.append(state.stored_input_bytes() == counted_by_summing())
    state.add_document(store, "files/drift", state="STATE_FAILED", size_bytes=7)
    state.set_document_state(docs[0], "STATE_FAILED")
    state.set_document_state(docs[1], "STATE_ACTIVE")
    checks.append(state.stored_input_bytes() == counted_by_summing())
    state.delete_document(docs[3], force=True)
    state.delete_store(other, force=True)
    checks.append(state.stored_input_bytes() == counted_by_summing())
    snapshot = state.snapshot()
    state.reset()
    checks.append(state.stored_input_bytes() == counted_by_summing() == 0)
    state.restore(snapshot)
    checks.append(state.stored_input_bytes() == counted_by_summing() > 0)

    assert checks == [True] * len(checks)


def test_no_storage_limit_with_0_and_the_free_tier_by_default():
    assert Emulator().state.storage_limit_bytes == 1_000_000_000
    assert Emulator(storage_limit_bytes=0).state.storage_limit_bytes is None


def test_a_full_store_is_store_full_with_the_fix_and_no_breaker_count(settings, small):
    statuses = []
    gemini = GeminiClient.from_env(settings, on_response=lambda call, s: statuses.append(s))
    store = gemini.ensure_store("objlib-test")
    raw_file = gemini.upload_file(b"z" * 101, file_id="big", display_name="big")

    with pytest.raises(StoreFull) as exc:
        gemini.import_file(store.name, raw_file.name, [])

    assert exc.value.kind == "store_full" and exc.value.code == 429
    assert "storage limit of 300 bytes" in str(exc.value)
    assert "Delete documents" in str(exc.value)
    assert "objlib enqueue --retry-failed" in str(exc.value)
    assert statuses[-1] == 400, "the breaker must not count a full store as a 429"
    gemini.close()


def test_a_rate_limit_429_is_still_rate_limited():
    exc = errors.ClientError(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                             "message": "Resource has been exhausted."}})
    assert classify(exc, call="import_file").kind == "rate_limited"


def test_full_store_429s_never_open_the_breaker(home):
    (home / "config.toml").write_text("breaker_min_429 = 2\nbreaker_ratio = 0.1\n")
    throttle = Throttle.from_settings(Settings.load(home))
    full = StoreFull(FULL, call="import_file", code=429)
    from objlib.gemini.errors import breaker_status

    for i in range(20):
        throttle.record(breaker_status(full, 429), now=1000.0 + i * 0.01)

    assert throttle.state(now=1000.5).breaker == "closed"


def test_a_store_full_row_fails_at_once_and_failures_says_what_to_do(settings, library, small):
    write_library(library, 2, size=60)
    scan_library(settings, library)
    ctx = pipeline.build_context(settings)
    try:
        ensure_store(settings, ctx.catalog, ctx.gemini)
        for file_id in (1, 2):
            row = lc.get(ctx.catalog, file_id)
            lc.mark_queued(ctx.catalog, row.id, row.version, f"task-{file_id}", ctx.clock())
            pipeline.upload_and_import(ctx, row.id, row.version, f"task-{file_id}")
        second = lc.get(ctx.catalog, 2)
    finally:
        ctx.gemini.close()
        ctx.catalog.close()

    assert (second.state, second.error_class, second.attempts) == (lc.FAILED, "store_full", 0)
    report = failures_report(settings)
    assert report.by_class == {"store_full": 1}
    assert "delete documents" in report.hint("store_full")
    assert report.hint("store_full").endswith("`objlib enqueue --retry-failed`")


# --- 3. unknown JSON fields ----------------------------------------------------------------


def test_an_unknown_top_level_field_is_the_real_400(client, emulator):
    store = client.file_search_stores.create(config={"display_name": "strict"})
    raw_file = upload(client, "strict")
    extra = {"http_options": {"extra_body": {"colour": "red"}}}
    message = 'Invalid JSON payload received. Unknown name "colour": Cannot find field.'

    with pytest.raises(errors.ClientError) as sync_exc:
        client.file_search_stores.import_file(file_search_store_name=store.name,
                                              file_name=raw_file.name, config=extra)

    async def async_create():
        with pytest.raises(errors.ClientError) as exc:
            await client.aio.file_search_stores.create(config={"display_name": "x", **extra})
        return exc.value

    for exc in (sync_exc.value, asyncio.run(async_create())):
        assert exc.code == 400 and body_of(exc) == {
            "code": 400, "message": message, "status": "INVALID_ARGUMENT",
            "details": [{"@type": BAD_REQUEST, "fieldViolations": [{"description": message}]}]}


def test_an_unknown_nested_field_names_its_path(emulator):
    store = emulator.state.create_store("nested")
    emulator.state.add_file("nested", data=b"text")
    body = {"fileName": "files/nested", "customMetadata": [
        {"key": "a", "stringValue": "b"}, {"key": "c", "string_value": "d", "colour": 1}],
        "chunking_config": {"white_space_config": {"max_tokens_per_chunk": 9, "shape": 2}}}

    status, _, answer = raw(emulator, "POST", f"/v1beta/{store.name}:importFile",
                            json.dumps(body).encode(), KEY)

    first = ('Invalid JSON payload received. Unknown name "colour" at '
             "'custom_metadata[1]': Cannot find field.")
    second = ('Invalid JSON payload received. Unknown name "shape" at '
              "'chunking_config.white_space_config': Cannot find field.")
    assert status == 400 and answer["error"]["message"] == f"{first}\n{second}"
    assert answer["error"]["details"][0]["fieldViolations"] == [
        {"field": "custom_metadata[1]", "description": first},
        {"field": "chunking_config.white_space_config", "description": second}]


def test_every_field_the_sdk_sends_is_known(client):
    """The SDK's own bodies (both spellings, every config it offers) pass."""
    store = client.file_search_stores.create(config={
        "display_name": "all", "embedding_model": "gemini-embedding-001"})
    raw_file = upload(client, "all-fields", display_name="All")
    op = client.file_search_stores.import_file(
        file_search_store_name=store.name, file_name=raw_file.name, config={
            "custom_metadata": META, "chunking_config": {"white_space_config": {
                "max_tokens_per_chunk": 200, "max_overlap_tokens": 20}}})
    up = client.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name, file=io.BytesIO(b"all"), config={
            "display_name": "All", "mime_type": "text/plain", "custom_metadata": META,
            "chunking_config": {"white_space_config": {"max_tokens_per_chunk": 100}}})

    assert finished(client, op).error is None and finished(client, up).error is None


# --- 5. what File Search cannot index ------------------------------------------------------


@pytest.mark.parametrize("mime_type, data", [
    ("image/png", PNG), ("application/octet-stream", b"\x00\x01"), ("audio/mpeg", b"ID3\x03"),
    ("video/mp4", b"\x00\x00\x00\x18ftypmp42"),
    ("application/epub+zip", b"PK\x03\x04 an EPUB is not in the published list"),
    ("text/x-not-listed", b"text of a type the list does not name")])
def test_an_unsupported_type_is_refused_on_import_and_on_store_upload(client, mime_type, data):
    store = client.file_search_stores.create(config={"display_name": "types"})
    raw_file = client.files.upload(file=io.BytesIO(data), config={"mime_type": mime_type})

    with pytest.raises(errors.ClientError) as on_import:
        client.file_search_stores.import_file(file_search_store_name=store.name,
                                              file_name=raw_file.name)

    async def async_store_upload():
        with pytest.raises(errors.ClientError) as exc:
            await client.aio.file_search_stores.upload_to_file_search_store(
                file_search_store_name=store.name, file=io.BytesIO(data),
                config={"mime_type": mime_type})
        return exc.value

    for exc in (on_import.value, asyncio.run(async_store_upload())):
        assert (exc.code, exc.status) == (400, "INVALID_ARGUMENT")
        assert f"Unsupported MIME type: {mime_type}" in exc.message
    assert list(client.file_search_stores.documents.list(parent=store.name)) == []


def test_text_and_document_types_are_indexed(client):
    store = client.file_search_stores.create(config={"display_name": "types"})
    pdf = sd.pdf_bytes(["A page of a real PDF."])
    for mime_type, data in (("text/plain", b"text"), ("text/markdown", b"# text"),
                            ("application/pdf", pdf), ("text/csv", b"a,b\n1,2\n")):
        op = client.file_search_stores.upload_to_file_search_store(
            file_search_store_name=store.name, file=io.BytesIO(data),
            config={"mime_type": mime_type})
        assert finished(client, op).error is None


def test_a_pdf_that_cannot_be_read_fails_its_import_as_an_internal_error(client):
    """[unknown] what File Search answers for bytes that are not the PDF they claim: the
    emulator fails the operation (code 13), the stricter answer, and keeps no document text."""
    store = client.file_search_stores.create(config={"display_name": "bad pdf"})
    op = client.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name, file=io.BytesIO(b"%PDF or text"),
        config={"mime_type": "application/pdf"})
    assert finished(client, op).error["code"] == 13


def test_an_empty_document_is_refused(client):
    store = client.file_search_stores.create(config={"display_name": "empty"})

    with pytest.raises(errors.ClientError) as exc:
        client.file_search_stores.upload_to_file_search_store(
            file_search_store_name=store.name, file=io.BytesIO(b""),
            config={"mime_type": "text/plain"})

    assert exc.value.code == 400 and "empty" in exc.value.message


def test_a_document_over_100_mb_is_refused_at_the_upload_start(emulator):
    store = emulator.state.create_store("big")
    headers = {**KEY, "X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
               "X-Goog-Upload-Header-Content-Length": str(MAX_DOCUMENT_BYTES + 1),
               "X-Goog-Upload-Header-Content-Type": "text/plain"}

    status, _, answer = raw(emulator, "POST",
                            f"/upload/v1beta/{store.name}:uploadToFileSearchStore", b"{}",
                            headers)

    assert status == 400 and "at most 100000000 bytes" in answer["error"]["message"]


def test_the_scan_skips_what_the_api_would_refuse(settings, home, library):
    (home / "config.toml").write_text(f"max_file_bytes = {2 * MAX_DOCUMENT_BYTES}\n")
    (library / "empty.txt").write_bytes(b"")
    (library / "picture.png").write_bytes(PNG)
    (library / "binary.txt").write_bytes(PNG)
    with open(library / "huge.txt", "wb") as f:   # sparse: no 100 MB written
        f.truncate(MAX_DOCUMENT_BYTES + 1)
    (library / "fine.txt").write_text("fine", encoding="utf-8")

    summary = scan_library(Settings.load(home), library)

    assert summary.new == 1 and dict(summary.skipped) == {
        "empty file": 1, "unsupported extension .png": 1, "content is image/png, not text": 1,
        f"too large: {MAX_DOCUMENT_BYTES + 1} bytes > 100 MB, the API's limit per document": 1}


# --- 6. zero counters and empty fields are left out ----------------------------------------


def test_zero_counters_and_empty_fields_are_omitted(client, emulator, settings):
    store = client.file_search_stores.create(config={"display_name": "zeros"})
    _, _, body = raw(emulator, "GET", f"/v1beta/{store.name}", headers=KEY)

    async def async_get():
        return await client.aio.file_search_stores.get(name=store.name)

    assert not {"activeDocumentsCount", "pendingDocumentsCount", "failedDocumentsCount",
                "sizeBytes"} & set(body)
    for got in (client.file_search_stores.get(name=store.name), asyncio.run(async_get())):
        assert (got.active_documents_count, got.size_bytes) == (None, None)
    gemini = GeminiClient.from_env(settings)
    mirrored = gemini.get_store(store.name)
    gemini.close()
    assert (mirrored.active_documents, mirrored.pending_documents, mirrored.failed_documents,
            mirrored.size_bytes) == (0, 0, 0, 0)


# --- 7. PUT chunks and v1alpha -------------------------------------------------------------


def test_an_upload_chunk_may_be_sent_with_put(emulator):
    headers = {**KEY, "X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
               "X-Goog-Upload-Header-Content-Length": "5",
               "X-Goog-Upload-Header-Content-Type": "text/plain"}
    _, started, _ = raw(emulator, "POST", "/upload/v1beta/files", b"{}", headers)
    path = started["X-Goog-Upload-URL"].removeprefix(emulator.base_url)

    status, answer_headers, body = raw(emulator, "PUT", path, b"hello", {
        "X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"})

    assert status == 200 and answer_headers["X-Goog-Upload-Status"] == "final"
    assert body["file"]["sizeBytes"] == "5" and body["file"]["state"] == "ACTIVE"


def test_v1alpha_is_served_like_v1beta(emulator):
    client = make_client(emulator, api_version="v1alpha")
    store = client.file_search_stores.create(config={"display_name": "alpha"})
    op = finished(client, client.file_search_stores.import_file(
        file_search_store_name=store.name, file_name=upload(client, "alpha").name))

    async def async_list():
        return [d.name async for d in await client.aio.file_search_stores.documents.list(
            parent=store.name)]

    assert [d.name for d in client.file_search_stores.documents.list(parent=store.name)] == \
        asyncio.run(async_list()) == [op.response.document_name]


# --- 8. ids --------------------------------------------------------------------------------


def test_a_store_slug_drops_dashes_and_other_non_alphanumerics(client):
    async def async_create():
        return await client.aio.file_search_stores.create(config={"display_name": "Sam's Notes"})

    assert re.fullmatch(r"fileSearchStores/sambasic-[a-z0-9]{12}",
                        client.file_search_stores.create(
                            config={"display_name": "sam-basic"}).name)
    created = asyncio.run(async_create()).name
    assert re.fullmatch(r"fileSearchStores/samsnotes-[a-z0-9]{12}", created)


def test_a_store_upload_gives_document_and_operation_one_id_from_the_display_name(client):
    store = client.file_search_stores.create(config={"display_name": "ids"})

    async def async_upload():
        return await client.aio.file_search_stores.upload_to_file_search_store(
            file_search_store_name=store.name, file=io.BytesIO(b"async"),
            config={"display_name": "Async Doc", "mime_type": "text/plain"})

    ops = [client.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name, file=io.BytesIO(b"sync"),
        config={"display_name": "Sync Doc", "mime_type": "text/plain"}),
        asyncio.run(async_upload())]

    for op, prefix in zip(ops, ("sync-doc-", "async-doc-"), strict=True):
        op_id = op.name.removeprefix(f"{store.name}/upload/operations/")
        assert op_id.startswith(prefix) and len(op_id) == len(prefix) + 12
        assert op.response.document_name == f"{store.name}/documents/{op_id}"


# --- 9. state that survives a restart ------------------------------------------------------


def test_the_state_survives_a_restart_with_the_same_state_dir(tmp_path):
    with Emulator(state_dir=tmp_path / "state", seed=4) as first:
        client = make_client(first)
        store = client.file_search_stores.create(config={"display_name": "kept"})
        raw_file = upload(client, "kept")
        op = client.file_search_stores.import_file(file_search_store_name=store.name,
                                                   file_name=raw_file.name)
        port = first.port

    with Emulator(port=port, state_dir=tmp_path / "state", seed=4) as second:
        client = make_client(second)
        done = finished(client, client.operations.get(op))
        doc = client.file_search_stores.documents.get(name=done.response.document_name)
        fresh = client.file_search_stores.import_file(file_search_store_name=store.name,
                                                      file_name=raw_file.name)

    assert (store.display_name, raw_file.name) == ("kept", "files/kept")
    assert doc.state == types.DocumentState.STATE_ACTIVE and fresh.name != op.name


def test_an_upload_cut_off_between_chunks_resumes_after_a_restart(tmp_path):
    start = {**KEY, "X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
             "X-Goog-Upload-Header-Content-Length": "10",
             "X-Goog-Upload-Header-Content-Type": "text/plain"}
    with Emulator(state_dir=tmp_path) as first:
        _, started, _ = raw(first, "POST", "/upload/v1beta/files", b"{}", start)
        path = started["X-Goog-Upload-URL"].removeprefix(first.base_url)
        raw(first, "POST", path, b"01234", {"X-Goog-Upload-Command": "upload",
                                             "X-Goog-Upload-Offset": "0"})
        port = first.port

    with Emulator(port=port, state_dir=tmp_path) as second:
        status, _, body = raw(second, "POST", path, b"56789", {
            "X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "5"})

    assert status == 200 and body["file"]["sizeBytes"] == "10"
    assert base64.b64decode(body["file"]["sha256Hash"]).decode() == \
        hashlib.sha256(b"0123456789").hexdigest()
    assert list((tmp_path / "uploads").iterdir()) == []


def test_a_damaged_state_file_is_refused_cleanly(tmp_path):
    (tmp_path / "state.json").write_text('{"format": 1, "files": 3}')

    with pytest.raises(ValueError, match="damaged emulator state"):
        Emulator(state_dir=tmp_path)
    result = CliRunner().invoke(cli, ["emulator", "--port", "0", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2 and "damaged emulator state" in result.output
    assert "Traceback" not in result.output


def test_cli_help_documents_the_new_options():
    result = CliRunner().invoke(cli, ["emulator", "--help"])

    assert result.exit_code == 0
    for option in ("--storage-limit-bytes", "--state-dir", "activate"):
        assert option in result.output


# --- end to end: real consumers ------------------------------------------------------------


@pytest.mark.slow
def test_an_overflowing_library_fails_the_overflow_store_full_and_indexes_the_rest(
        settings, library, consumers, monkeypatch):
    # Given a project that holds 10 documents of 2,000 bytes (3 x 2,000 stored each)
    with Emulator(profile="instant", seed=5, storage_limit_bytes=10 * 6000) as emu:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        write_library(library, 14, size=2000)
        scan_library(settings, library)
        enqueue(settings)
        # When workers run the library
        consumers(workers=4, env={"GOOGLE_GEMINI_BASE_URL": emu.base_url})
        wait_for(lambda: sum(file_states(settings).get(s, 0) for s in ("indexed", "failed"))
                 == 14, 60, 0.2, "every file indexed or failed")
        # Then the overflow failed as store_full, the rest indexed, nothing in flight
        assert file_states(settings) == {"indexed": 10, "failed": 4}
        report = failures_report(settings)
        assert report.by_class == {"store_full": 4}
        assert all("storage limit of 60000 bytes" in f.message for f in report.failures)
        assert all(f.attempts == 0 and f.rate_limited == 0 for f in report.failures)
        assert emu.stats()["requests"]["stores.importFile"] == 14, "a full store was retried"
        assert Throttle.from_settings(settings).state().breaker_trips == 0
        result = CliRunner().invoke(cli, ["failures"])
        assert "store_full" in result.output and "--retry-failed" in result.output


@pytest.mark.slow
def test_a_restart_with_the_same_state_dir_mid_run_loses_nothing(
        home, library, consumers, tmp_path, monkeypatch):
    # Given a run under way against an emulator that keeps its state in a directory
    (home / "config.toml").write_text("breaker_cooldown_s = 0.5\nbreaker_max_cooldown_s = 2.0\n"
                                      "backoff_base_s = 0.2\nbackoff_max_s = 1.0\n")
    settings = Settings.load(home)
    state_dir = tmp_path / "emulator-state"
    first = Emulator(seed=6, state_dir=state_dir, latency={"upload": 0.05, "index": 0.3}).start()
    second = None
    try:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", first.base_url)
        write_library(library, 120)  # enough work that the restart lands mid-run
        scan_library(settings, library)
        enqueue(settings)
        consumers(workers=7, env={"GOOGLE_GEMINI_BASE_URL": first.base_url})
        wait_for(lambda: file_states(settings).get("indexed", 0) >= 8, 60, 0.1, "some progress")
        # When the emulator stops and a new one starts from the same directory (a restart)
        first.stop()
        assert file_states(settings).get("indexed", 0) < 120, "the restart came too late"
        second = Emulator(port=first.port, seed=7, state_dir=state_dir,
                          latency={"upload": 0.05, "index": 0.3}).start()
        # Then the run finishes: one document per file, and reconcile finds no drift
        wait_for(lambda: file_states(settings) == {"indexed": 120}, 90, 0.2, "all indexed")
        assert len(documents(second)) == 120
        assert_converged(settings, second)
        assert tasks.reconcile(settings).drift == 0
    finally:
        first.stop()
        if second is not None:
            second.stop()
