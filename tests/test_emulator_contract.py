"""The emulator's contract: the real google-genai SDK (sync and async) round-trips every call
objlib needs over HTTP, with the shapes and errors of the real service. No mocks.

Faults, the quota and statistics are in test_emulator_faults.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import io
import json
import re
from datetime import timedelta

import httpx2
import pytest
from click.testing import CliRunner
from google.genai import errors, types

from objlib.cli import cli
from objlib.emulator.handlers import Request
from objlib.emulator.state import FILE_TTL_S
from tests.support.sdk import META, make_client, raw, upload

MIB = 1024 * 1024


@pytest.fixture
def client(emulator):
    return make_client(emulator)


def indexed(client, store_name: str, file_name: str, metadata=None):
    """importFile, then operations.get until done: the finished operation."""
    op = client.file_search_stores.import_file(
        file_search_store_name=store_name, file_name=file_name,
        config={"custom_metadata": metadata} if metadata else None)
    for _ in range(50):
        if op.done:
            return op
        op = client.operations.get(op)
    pytest.fail(f"{op.name} never finished")


# --- files -------------------------------------------------------------------------------


def test_files_upload_with_a_client_chosen_id_round_trips(client):
    data = b"A is A.\n" * 10

    uploaded = upload(client, "ayn-rand-001", data, display_name="Atlas")
    got = client.files.get(name="files/ayn-rand-001")

    assert uploaded.name == got.name == "files/ayn-rand-001"
    assert got.size_bytes == len(data) and got.mime_type == "text/plain"
    assert got.display_name == "Atlas" and got.state == types.FileState.ACTIVE
    assert got.expiration_time - got.create_time == timedelta(hours=48)
    assert base64.b64decode(got.sha256_hash).decode() == hashlib.sha256(data).hexdigest()
    assert got.uri.endswith("/v1beta/files/ayn-rand-001")


def test_files_upload_without_an_id_gets_a_generated_one(client):
    assert upload(client).name.startswith("files/")


def test_files_list_pages_then_delete_makes_the_file_403(client):
    for i in range(3):
        upload(client, f"f{i}")

    pager = client.files.list(config={"page_size": 2})
    first_page = [f.name for f in pager.page]
    names = [f.name for f in pager]
    client.files.delete(name="f1")

    assert first_page == ["files/f0", "files/f1"]
    assert names == ["files/f0", "files/f1", "files/f2"]
    with pytest.raises(errors.ClientError) as exc:
        client.files.get(name="f1")
    assert exc.value.code == 403 and exc.value.status == "PERMISSION_DENIED"
    assert "do not have permission to access the File f1" in exc.value.message
    assert [f.name for f in client.files.list()] == ["files/f0", "files/f2"]


def test_a_duplicate_client_chosen_id_is_409_already_exists(client):
    upload(client, "same-id")

    with pytest.raises(errors.ClientError) as exc:
        upload(client, "same-id")
    assert exc.value.code == 409 and exc.value.status == "ALREADY_EXISTS"


@pytest.mark.parametrize("bad_id", ["Upper", "under_score", "-dash", "x" * 41])
def test_an_invalid_client_chosen_id_is_400_invalid_argument(client, bad_id):
    with pytest.raises(errors.ClientError) as exc:
        upload(client, bad_id)
    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT"


def test_a_9_mib_upload_goes_in_two_chunks(client, emulator):
    data = bytes(range(256)) * (9 * MIB // 256)

    got = upload(client, "big", data)

    assert got.size_bytes == 9 * MIB
    assert base64.b64decode(got.sha256_hash).decode() == hashlib.sha256(data).hexdigest()
    assert emulator.stats()["requests"]["upload.chunk"] == 2


def test_a_0_byte_upload_is_one_empty_finalize_and_refused(client, emulator):
    with pytest.raises(errors.ClientError) as exc:
        upload(client, "empty", b"")

    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT"
    assert "empty" in exc.value.message
    assert emulator.stats()["requests"]["upload.chunk"] == 1


def test_a_raw_file_is_processing_until_the_activate_latency_passed(client, emulator):
    emulator.configure(latency={"activate": 5})

    assert upload(client, "slow").state == types.FileState.PROCESSING
    emulator.state.advance(5)
    assert client.files.get(name="slow").state == types.FileState.ACTIVE


def test_an_expired_raw_file_is_403(client, emulator):
    upload(client, "old")
    emulator.state.advance(FILE_TTL_S)

    with pytest.raises(errors.ClientError) as exc:
        client.files.get(name="old")
    assert exc.value.code == 403
    with pytest.raises(errors.ClientError):
        client.files.delete(name="old")


# --- stores ------------------------------------------------------------------------------


def test_stores_create_list_get_and_delete(client):
    made = [client.file_search_stores.create(config={"display_name": f"Store {i}"})
            for i in range(3)]
    bare = client.file_search_stores.create()

    listed = [s.name for s in client.file_search_stores.list(config={"page_size": 2})]
    got = client.file_search_stores.get(name=made[0].name)
    client.file_search_stores.delete(name=made[1].name)

    assert re.fullmatch(r"fileSearchStores/store0-[a-z0-9]{12}", made[0].name)
    assert listed == [s.name for s in made] + [bare.name]
    assert got.display_name == "Store 0" and got.active_documents_count is None  # 0: omitted
    assert got.embedding_model == "models/gemini-embedding-001"
    assert [s.name for s in client.file_search_stores.list()] == [
        made[0].name, made[2].name, bare.name]


def test_a_store_name_keeps_within_40_id_characters(client):
    store = client.file_search_stores.create(config={"display_name": "A very long name " * 9})

    store_id = store.name.removeprefix("fileSearchStores/")
    assert len(store_id) <= 40 and store_id.startswith("averylongnameaverylongnamea-")


def test_a_missing_store_is_404(client):
    with pytest.raises(errors.ClientError) as exc:
        client.file_search_stores.get(name="fileSearchStores/nope")
    assert exc.value.code == 404 and exc.value.status == "NOT_FOUND"


def test_deleting_a_non_empty_store_needs_force(client):
    store = client.file_search_stores.create(config={"display_name": "full"})
    indexed(client, store.name, upload(client, "doc").name)

    with pytest.raises(errors.ClientError) as exc:
        client.file_search_stores.delete(name=store.name)
    assert exc.value.code == 400 and exc.value.status == "FAILED_PRECONDITION"
    client.file_search_stores.delete(name=store.name, config={"force": True})
    with pytest.raises(errors.ClientError):
        client.file_search_stores.get(name=store.name)


# --- importFile, operations, documents ----------------------------------------------------


def test_import_file_with_all_metadata_types_indexes_a_document(client, emulator):
    store = client.file_search_stores.create(config={"display_name": "library"})
    raw_file = upload(client, "atlas-shrugged")
    emulator.configure(latency={"index": 10})

    op = client.file_search_stores.import_file(file_search_store_name=store.name,
                                               file_name=raw_file.name,
                                               config={"custom_metadata": META})
    pending = client.file_search_stores.documents.list(parent=store.name).page[0]
    emulator.state.advance(10)
    done = client.operations.get(op)
    doc = client.file_search_stores.documents.get(name=done.response.document_name)

    assert op.name.startswith(f"{store.name}/operations/") and op.done is None
    assert pending.state == types.DocumentState.STATE_PENDING
    assert done.done is True and done.error is None and done.response.parent == store.name
    assert doc.name.startswith(f"{store.name}/documents/atlas-shrugged-")
    assert doc.display_name == "atlas-shrugged" and doc.state == types.DocumentState.STATE_ACTIVE
    assert [(m.key, m.string_value, m.numeric_value, m.string_list_value and
             m.string_list_value.values) for m in doc.custom_metadata] == [
        ("author", "Ayn Rand", None, None), ("year", None, 1957.0, None),
        ("tags", None, None, ["ethics", "novel"])]
    stored = client.file_search_stores.get(name=store.name)
    assert (stored.active_documents_count, stored.pending_documents_count) == (1, None)
    assert stored.size_bytes == raw_file.size_bytes


def test_every_import_creates_a_new_document(client, emulator):
    store = client.file_search_stores.create(config={"display_name": "dupes"})
    raw_file = upload(client, "twice")

    first = indexed(client, store.name, raw_file.name)
    second = indexed(client, store.name, raw_file.name)

    assert first.response.document_name != second.response.document_name
    report = emulator.stats()["stores"][store.name]
    assert report["duplicates"] == ["twice"] and len(report["files"]["twice"]) == 2


def test_import_of_a_missing_or_processing_file_is_refused(client, emulator):
    store = client.file_search_stores.create(config={"display_name": "s"})
    emulator.configure(latency={"activate": 60})
    processing = upload(client, "not-yet")

    with pytest.raises(errors.ClientError) as missing:
        client.file_search_stores.import_file(file_search_store_name=store.name,
                                              file_name="files/never-uploaded")
    with pytest.raises(errors.ClientError) as early:
        client.file_search_stores.import_file(file_search_store_name=store.name,
                                              file_name=processing.name)
    assert missing.value.code == 403 and missing.value.status == "PERMISSION_DENIED"
    assert early.value.code == 400 and early.value.status == "FAILED_PRECONDITION"


def test_more_than_20_metadata_entries_are_400(client):
    store = client.file_search_stores.create(config={"display_name": "s"})
    metadata = [{"key": f"k{i}", "string_value": "v"} for i in range(21)]

    with pytest.raises(errors.ClientError) as exc:
        client.file_search_stores.import_file(file_search_store_name=store.name,
                                              file_name=upload(client, "m").name,
                                              config={"custom_metadata": metadata})
    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT"


def test_upload_to_file_search_store_returns_an_operation_naming_the_document(client):
    store = client.file_search_stores.create(config={"display_name": "direct"})

    op = client.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name, file=io.BytesIO(b"direct upload"),
        config={"display_name": "Doc A", "mime_type": "text/plain",
                "custom_metadata": META[:1]})
    while not op.done:
        op = client.operations.get(op)
    doc = client.file_search_stores.documents.get(name=op.response.document_name)

    assert op.name.startswith(f"{store.name}/upload/operations/")
    assert doc.display_name == "Doc A" and doc.state == types.DocumentState.STATE_ACTIVE
    assert doc.size_bytes == len(b"direct upload") and doc.custom_metadata[0].key == "author"


def test_documents_list_pages_get_and_delete(client):
    store = client.file_search_stores.create(config={"display_name": "many"})
    raw_file = upload(client, "doc")
    names = [indexed(client, store.name, raw_file.name).response.document_name for _ in range(12)]

    pager = client.file_search_stores.documents.list(parent=store.name)
    first_page = len(pager.page)
    listed = [d.name for d in pager]
    with pytest.raises(errors.ClientError) as no_force:
        client.file_search_stores.documents.delete(name=names[0])
    client.file_search_stores.documents.delete(name=names[0], config={"force": True})

    assert first_page == 10 and listed == names
    assert no_force.value.code == 400 and no_force.value.status == "FAILED_PRECONDITION"
    with pytest.raises(errors.ClientError) as gone:
        client.file_search_stores.documents.get(name=names[0])
    assert gone.value.code == 404 and gone.value.status == "NOT_FOUND"
    assert len(list(client.file_search_stores.documents.list(
        parent=store.name, config={"page_size": 20}))) == 11


def test_an_empty_store_lists_no_documents(client):
    store = client.file_search_stores.create(config={"display_name": "empty"})

    assert list(client.file_search_stores.documents.list(parent=store.name)) == []


def test_api_version_v1_is_served_too(emulator):
    client = make_client(emulator, api_version="v1")

    store = client.file_search_stores.create(config={"display_name": "v one"})
    op = indexed(client, store.name, upload(client, "v1-file").name)

    assert client.file_search_stores.documents.get(name=op.response.document_name).state == \
        types.DocumentState.STATE_ACTIVE
    assert client.files.get(name="v1-file").uri.endswith("/v1/files/v1-file")


def test_the_async_client_round_trips_the_same_calls(client):
    aio = client.aio

    async def scenario():
        raw_file = await aio.files.upload(file=io.BytesIO(b"async text"), config={
            "name": "files/async-1", "mime_type": "text/plain"})
        got = await aio.files.get(name="async-1")
        store = await aio.file_search_stores.create(config={"display_name": "async"})
        op = await aio.file_search_stores.import_file(file_search_store_name=store.name,
                                                      file_name=raw_file.name,
                                                      config={"custom_metadata": META})
        while not op.done:
            op = await aio.operations.get(op)
        up = await aio.file_search_stores.upload_to_file_search_store(
            file_search_store_name=store.name, file=io.BytesIO(b"abc"),
            config={"mime_type": "text/plain"})
        while not up.done:
            up = await aio.operations.get(up)
        docs = [d async for d in await aio.file_search_stores.documents.list(
            parent=store.name, config={"page_size": 1})]
        doc = await aio.file_search_stores.documents.get(name=op.response.document_name)
        await aio.file_search_stores.documents.delete(name=doc.name, config={"force": True})
        stores = [s.name async for s in await aio.file_search_stores.list()]
        await aio.file_search_stores.delete(name=store.name, config={"force": True})
        await aio.files.delete(name="async-1")
        with pytest.raises(errors.ClientError) as gone:
            await aio.files.get(name="async-1")
        return got, docs, doc, stores, store, gone.value

    got, docs, doc, stores, store, gone = asyncio.run(scenario())

    assert got.size_bytes == len(b"async text")
    assert len(docs) == 2 and doc.custom_metadata[1].numeric_value == 1957
    assert stores == [store.name] and gone.code == 403


# --- HTTP-level details --------------------------------------------------------------------


def test_a_call_without_an_api_key_is_403_but_a_key_param_is_enough(emulator):
    status, _, body = raw(emulator, "GET", "/v1beta/files")
    with_param, _, _ = raw(emulator, "GET", "/v1beta/files?key=anything")

    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"
    assert "API key not valid" in body["error"]["message"]
    assert with_param == 200


def test_an_unknown_route_is_404_json_even_without_a_key(emulator):
    status, headers, body = raw(emulator, "GET", "/v1beta/models/nope")

    assert status == 404 and headers["Content-Type"].startswith("application/json")
    assert body["error"]["status"] == "NOT_FOUND" and body["error"]["code"] == 404


def test_upload_chunks_carry_their_status_even_on_errors(emulator):
    status, headers, _ = raw(emulator, "POST", "/upload/v1beta/files",
                             json.dumps({"file": {"mime_type": "text/plain"}}).encode(),
                             {"x-goog-api-key": "k", "X-Goog-Upload-Protocol": "resumable",
                              "X-Goog-Upload-Command": "start",
                              "X-Goog-Upload-Header-Content-Length": "6",
                              "Host": "emulator.test:1234"})
    url = headers["X-Goog-Upload-URL"]
    path = url.removeprefix("http://emulator.test:1234")

    first = raw(emulator, "POST", path, b"abc", {"X-Goog-Upload-Command": "upload",
                                                 "X-Goog-Upload-Offset": "0"})
    wrong = raw(emulator, "POST", path, b"def", {"X-Goog-Upload-Command": "upload, finalize",
                                                 "X-Goog-Upload-Offset": "5"})
    final = raw(emulator, "POST", path, b"def", {"X-Goog-Upload-Command": "upload, finalize",
                                                 "X-Goog-Upload-Offset": "3"})
    unknown = raw(emulator, "POST", path, b"", {"X-Goog-Upload-Command": "upload, finalize"})

    assert status == 200 and url.startswith("http://emulator.test:1234/upload/v1beta/files?")
    assert first[0] == 200 and first[1]["X-Goog-Upload-Status"] == "active"
    assert wrong[0] == 400 and wrong[1]["X-Goog-Upload-Status"] == "final"
    assert final[0] == 200 and final[1]["X-Goog-Upload-Status"] == "final"
    assert final[2]["file"]["sizeBytes"] == "6"
    assert unknown[0] == 404 and unknown[1]["X-Goog-Upload-Status"] == "final"


def test_bodies_may_be_snake_case_and_force_may_be_lowercase(emulator):
    key = {"x-goog-api-key": "k"}
    emulator.state.add_file("snake", data=b"snake case")
    _, _, store = raw(emulator, "POST", "/v1beta/fileSearchStores",
                      b'{"display_name": "snake store"}', key)
    status, _, op = raw(emulator, "POST", f"/v1beta/{store['name']}:importFile",
                        b'{"file_name": "files/snake", "custom_metadata": '
                        b'[{"key": "n", "numericValue": 2.5}]}', key)
    deleted, _, body = raw(emulator, "DELETE", f"/v1beta/{store['name']}?force=true", b"", key)

    assert store["displayName"] == "snake store" and status == 200 and "done" not in op
    assert deleted == 200 and body == {}


def test_a_chunked_request_body_is_read(emulator):
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
    conn.request("POST", "/v1beta/fileSearchStores", body=iter([b'{"displayName": ', b'"chunky"}']),
                 headers={"x-goog-api-key": "k", "Transfer-Encoding": "chunked"},
                 encode_chunked=True)
    resp = conn.getresponse()

    assert resp.status == 200 and json.loads(resp.read())["displayName"] == "chunky"
    conn.close()


def test_the_app_answers_without_a_socket(emulator):
    resp = emulator.app.handle(Request("POST", "/v1beta/fileSearchStores",
                                       headers={"x-goog-api-key": "k"}))

    assert resp.status == 200 and resp.body["name"].startswith("fileSearchStores/")


# --- drift, reset, restart ----------------------------------------------------------------


def test_planted_drift_is_visible_through_the_sdk(client, emulator):
    store = emulator.state.create_store("drift")
    doc = emulator.state.add_document(store.name, "files/ghost", custom_metadata=META)
    emulator.state.set_document_state(doc.name, "STATE_FAILED")

    listed = list(client.file_search_stores.documents.list(parent=store.name))

    assert [(d.display_name, d.state) for d in listed] == [
        ("ghost", types.DocumentState.STATE_FAILED)]
    client.file_search_stores.documents.delete(name=doc.name)   # a failed one needs no force
    assert emulator.stats()["stores"][store.name]["documents"] == 0


def test_reset_forgets_everything(client, emulator):
    upload(client, "forget-me")

    status, _, _ = raw(emulator, "POST", "/_emulator/reset")

    assert status == 200 and list(client.files.list()) == []
    assert emulator.stats()["requests"] == {"files.list": 1}


def test_stop_then_start_keeps_the_port_and_the_state(client, emulator):
    upload(client, "survivor")
    port = emulator.port

    emulator.stop()
    with pytest.raises((httpx2.TransportError, OSError)):
        client.files.get(name="survivor")
    emulator.start()

    assert emulator.port == port
    assert client.files.get(name="survivor").name == "files/survivor"


# --- the command line ----------------------------------------------------------------------


def test_cli_emulator_help_shows_an_example():
    result = CliRunner().invoke(cli, ["emulator", "--help"])

    assert result.exit_code == 0 and "Example:" in result.output and "--fault" in result.output


@pytest.mark.parametrize("args, message", [
    (["--fault", "nope=1"], "--fault 'nope=1'"),
    (["--fault", "rate_limit=2"], "from 0 to 1"),
    (["--latency", "index=soon"], "is not a number"),
])
def test_cli_emulator_rejects_bad_knobs_cleanly(args, message):
    result = CliRunner().invoke(cli, ["emulator", *args])

    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output
