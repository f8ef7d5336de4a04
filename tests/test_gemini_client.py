"""GeminiClient against the local emulator, over HTTP, through the real SDK."""

from __future__ import annotations

import pytest
from google.genai import types

from objlib.gemini import metadata as md
from objlib.gemini.client import GeminiClient, _operation, upload_cost
from objlib.gemini.errors import Gone, MissingApiKey, RateLimited, Transient

MIB = 1024 * 1024


class Hooks:
    """Records on_request / on_response calls; can be told to refuse a call."""

    def __init__(self):
        self.events: list[tuple] = []
        self.refuse: str | None = None

    def on_request(self, call, cost):
        if call == self.refuse:
            raise RuntimeError(f"throttle says no to {call}")
        self.events.append(("request", call, cost))

    def on_response(self, call, status):
        self.events.append(("response", call, status))


@pytest.fixture
def hooks():
    return Hooks()


@pytest.fixture
def client(emulator, settings, hooks):
    with GeminiClient.from_env(settings, on_request=hooks.on_request,
                               on_response=hooks.on_response) as client:
        yield client


@pytest.fixture
def store(client):
    return client.ensure_store("objlib test")


def text_file(tmp_path, name="doc.txt", size=None, text="Socrates is mortal.\n"):
    path = tmp_path / name
    path.write_bytes(b"x" * size if size is not None else text.encode())
    return path


def index(client, store, path, file_id, values=None):
    """Upload, import and poll until done: the finished Operation."""
    raw = client.upload_file(path, file_id=file_id, display_name=file_id)
    op_name = client.import_file(store.name, raw.name, md.build_custom_metadata(values or {}))
    for _ in range(200):  # the instant profile finishes within a few polls
        op = client.get_operation(op_name)
        if op.done:
            return op
    pytest.fail(f"operation {op_name} never finished")


def count(stats, endpoint):
    """Requests the emulator served for ``endpoint``."""
    return stats["requests"].get(endpoint, 0)


# --- stores ------------------------------------------------------------------------------


def test_ensure_store_twice_gives_the_same_store(client, emulator):
    first = client.ensure_store("objlib test")
    second = client.ensure_store("objlib test")

    assert first.name == second.name and first.name.startswith("fileSearchStores/")
    assert second.display_name == "objlib test"
    assert count(emulator.stats(), "stores.create") == 1


def test_ensure_store_does_not_match_a_similar_name(client):
    a = client.ensure_store("objlib test")
    b = client.ensure_store("objlib test 2")

    assert a.name != b.name


def test_get_store_reports_its_counters(client, store, tmp_path):
    index(client, store, text_file(tmp_path), "objlib-counter")

    got = client.get_store(store.name)

    assert got.name == store.name
    assert got.active_documents + got.pending_documents == 1
    assert got.failed_documents == 0


# --- raw files ----------------------------------------------------------------------------


def test_uploading_the_same_file_id_twice_sends_the_bytes_once(client, emulator, tmp_path):
    path = text_file(tmp_path)

    first = client.upload_file(path, file_id="objlib-abc123", display_name="  doc.txt")
    second = client.upload_file(path, file_id="objlib-abc123", display_name="doc.txt")

    assert first.name == second.name == "files/objlib-abc123"
    assert second.state in ("PROCESSING", "ACTIVE")
    assert second.size_bytes == path.stat().st_size
    # no files.get before an upload: the second start meets 409, then one files.get
    assert emulator.stats()["requests"] == {"upload.start": 2, "upload.chunk": 1,
                                            "files.get": 1}
    assert emulator.stats()["statuses"]["409"] == 1


def test_a_new_upload_asks_nothing_before_it(client, emulator, tmp_path):
    client.upload_file(text_file(tmp_path), file_id="objlib-fresh", display_name="doc")

    assert emulator.stats()["requests"] == {"upload.start": 1, "upload.chunk": 1}


def test_a_failed_raw_file_met_by_an_upload_is_replaced(client, emulator, tmp_path):
    path = text_file(tmp_path)
    emulator.state.add_file("objlib-broken", data=path.read_bytes())
    emulator.state.files["objlib-broken"].state = "FAILED"

    raw = client.upload_file(path, file_id="objlib-broken", display_name="doc")

    assert raw.name == "files/objlib-broken" and raw.state != "FAILED"
    assert emulator.stats()["requests"] == {"upload.start": 2, "upload.chunk": 1,
                                            "files.get": 1, "files.delete": 1}


def test_get_file_of_a_missing_file_is_gone(client):
    with pytest.raises(Gone):
        client.get_file("files/objlib-nothing-here")


def test_delete_file_of_a_missing_file_is_false(client):
    assert client.delete_file("files/objlib-nothing-here") is False


def test_delete_file_then_upload_again_uploads_anew(client, emulator, tmp_path):
    path = text_file(tmp_path)
    client.upload_file(path, file_id="objlib-again", display_name="doc")

    assert client.delete_file("files/objlib-again") is True
    client.upload_file(path, file_id="objlib-again", display_name="doc")

    assert count(emulator.stats(), "upload.start") == 2


def test_an_expired_raw_file_is_gone_and_uploaded_anew(client, emulator, tmp_path):
    path = text_file(tmp_path)
    client.upload_file(path, file_id="objlib-old", display_name="doc")
    emulator.state.expire_file("files/objlib-old")

    with pytest.raises(Gone):
        client.get_file("files/objlib-old")
    assert client.delete_file("files/objlib-old") is False
    assert client.upload_file(path, file_id="objlib-old", display_name="doc").state == "ACTIVE"
    assert count(emulator.stats(), "upload.start") == 2


def test_an_upload_that_loses_the_race_reuses_the_winners_file(client, settings, hooks,
                                                               emulator, tmp_path):
    path = text_file(tmp_path)
    rival = GeminiClient.from_env(settings)

    def rival_uploads_first(call, cost):
        if call == "upload_file":
            rival.upload_file(path, file_id="objlib-race", display_name="doc")
        hooks.events.append(("request", call, cost))

    client.on_request = rival_uploads_first
    raw = client.upload_file(path, file_id="objlib-race", display_name="doc")

    assert raw.name == "files/objlib-race"
    assert ("response", "upload_file", 409) in hooks.events
    rival.close()


def test_an_invalid_file_id_is_refused_before_any_request(client, hooks, tmp_path):
    with pytest.raises(ValueError, match="raw file id"):
        client.upload_file(text_file(tmp_path), file_id="Not_Valid", display_name="x")
    assert hooks.events == []


# --- import, operations, documents ------------------------------------------------------


def test_import_then_poll_then_the_document_carries_the_metadata(client, store, tmp_path):
    values = {"objlib_file_id": 42, "path": "Logic/Lesson 01.txt", "year": 2024,
              "topic": ["syllogism", "identity"], "quality": "complete"}

    op = index(client, store, text_file(tmp_path), "objlib-meta", values)

    assert op.done is True and op.error is None
    assert op.document.startswith(store.name + "/documents/")
    doc = client.get_document(op.document)
    assert doc.name == op.document
    assert doc.state in ("STATE_PENDING", "STATE_ACTIVE")
    assert doc.custom_metadata == {"objlib_file_id": 42.0, "path": "Logic/Lesson 01.txt",
                                   "year": 2024.0, "topic": ["syllogism", "identity"],
                                   "quality": "complete"}
    assert doc.create_time is not None


def test_list_documents_walks_every_page(client, store, emulator, tmp_path):
    names = {index(client, store, text_file(tmp_path, f"d{i}.txt", text=f"doc {i}"),
                   f"objlib-page-{i}").document for i in range(5)}

    listed = list(client.list_documents(store.name, page_size=2))

    assert {d.name for d in listed} == names and len(listed) == 5
    assert count(emulator.stats(), "documents.list") == 3


def test_delete_document_twice_second_is_gone(client, store, tmp_path):
    op = index(client, store, text_file(tmp_path), "objlib-del")

    assert client.delete_document(op.document) is True
    assert client.delete_document(op.document) is False
    with pytest.raises(Gone):
        client.get_document(op.document)


def test_delete_store_with_its_documents(client, store, tmp_path):
    index(client, store, text_file(tmp_path), "objlib-store-del")

    assert client.delete_store(store.name) is True
    assert client.delete_store(store.name) is False


# --- operations as the API may send them (no server needed) -----------------------------

OP = "fileSearchStores/s-1/operations/o-1"


def operation(body: dict, kind=types.ImportFileOperation):
    return _operation(body.get("name", OP), kind.from_api_response(body))


@pytest.mark.parametrize("body", [
    {"name": OP}, {"name": OP, "done": False}, {"name": OP, "metadata": {}}])
def test_an_operation_without_done_true_is_not_done(body):
    assert operation(body).done is False


def test_a_finished_operation_names_its_document():
    op = operation({"name": OP, "done": True, "response": {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.ImportFileResponse",
        "parent": "fileSearchStores/s-1", "documentName": "fileSearchStores/s-1/documents/d-1"}})

    assert (op.done, op.error, op.document) == (True, None, "fileSearchStores/s-1/documents/d-1")


def test_a_bare_document_id_becomes_the_full_name():
    op = operation({"name": OP, "done": True, "response": {"parent": "s-1", "documentName": "d-1"}})

    assert op.document == "fileSearchStores/s-1/documents/d-1"


def test_a_store_upload_operation_names_its_document_in_its_store():
    name = "fileSearchStores/s-2/upload/operations/o-9"
    op = operation({"name": name, "response": {"documentName": "d-9"}},
                   types.UploadToFileSearchStoreOperation)

    assert (op.done, op.document) == (False, "fileSearchStores/s-2/documents/d-9")


def test_a_failed_operation_carries_its_error():
    op = operation({"name": OP, "done": True, "error": {"code": 13, "message": "internal"}})

    assert op.done is True and op.error == {"code": 13, "message": "internal"}
    assert op.document is None


# --- hooks ------------------------------------------------------------------------------


def test_hooks_see_every_request_with_its_cost_and_status(client, hooks, tmp_path):
    path = text_file(tmp_path, "big.txt", size=9 * MIB)

    client.upload_file(path, file_id="objlib-big", display_name="big")

    assert hooks.events == [("request", "upload_file", 3), ("response", "upload_file", 200)]


def test_upload_cost_is_the_start_plus_one_per_8_mib_chunk():
    assert [upload_cost(n) for n in (0, 1, 8 * MIB, 8 * MIB + 1, 9 * MIB, 16 * MIB)] == \
        [2, 2, 2, 3, 3, 3]


def test_a_refusing_on_request_stops_the_call_and_its_exception_propagates(client, hooks,
                                                                           emulator):
    hooks.refuse = "create_store"
    before = count(emulator.stats(), "stores.create")

    with pytest.raises(RuntimeError, match="throttle says no"):
        client.ensure_store("never made")

    assert count(emulator.stats(), "stores.create") == before


def test_a_failing_on_response_does_not_lose_the_answer(client, store):
    def broken(call, status):
        raise ValueError("bookkeeping broke")

    client.on_response = broken

    assert client.get_store(store.name).name == store.name


# --- errors from faults ------------------------------------------------------------------


@pytest.mark.parametrize("fault, kind, retry_after_s", [
    ("rate_limit", RateLimited, None),  # a scattered 429 says nothing of when to come back
    ("unavailable", Transient, None),
])
def test_faults_become_error_kinds(fault, kind, retry_after_s, settings, monkeypatch, hooks):
    from objlib.emulator import Emulator

    with Emulator(profile="instant", seed=1, faults={fault: 1.0}) as emu:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        client = GeminiClient.from_env(settings, on_response=hooks.on_response)
        with pytest.raises(kind) as caught:
            client.ensure_store("objlib test")
        client.close()

    assert caught.value.code == hooks.events[-1][2]
    assert caught.value.retry_after_s == retry_after_s


def test_failed_to_create_file_is_transient(settings, monkeypatch, tmp_path):
    from objlib.emulator import Emulator

    with Emulator(profile="instant", seed=1, faults={"create_failed": 1.0}) as emu:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        client = GeminiClient.from_env(settings)
        store = client.ensure_store("objlib test")
        with pytest.raises(Transient) as caught:
            raw = client.upload_file(text_file(tmp_path), file_id="objlib-cf", display_name="x")
            client.import_file(store.name, raw.name, [])
        client.close()

    assert caught.value.code == 400
    assert "Failed to create file" in str(caught.value)


def test_a_stopped_emulator_is_a_transient_connection_error(client, emulator, hooks):
    client.ensure_store("objlib test")
    emulator.stop()

    with pytest.raises(Transient) as caught:
        client.ensure_store("objlib test")

    assert caught.value.code is None
    assert hooks.events[-1] == ("response", "list_stores", None)


# --- the API key ------------------------------------------------------------------------


def test_a_missing_key_for_a_remote_api_names_the_variable(settings, monkeypatch):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "https://generativelanguage.googleapis.com")

    with pytest.raises(MissingApiKey, match="GEMINI_API_KEY"):
        GeminiClient.from_env(settings)


def test_a_missing_key_with_the_default_base_url_names_the_variable(settings):
    with pytest.raises(MissingApiKey, match="GEMINI_API_KEY"):
        GeminiClient.from_env(settings)


def test_google_api_key_is_the_fallback(settings, monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "fallback-key-1234")

    assert GeminiClient.from_env(settings)._api_key == "fallback-key-1234"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://127.8.9.10:80/x",
                                 "http://localhost:1234", "http://[::1]:5"])
def test_no_key_is_needed_for_a_loopback_emulator(settings, monkeypatch, url):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", url)

    assert GeminiClient.from_env(settings).base_url == url


def test_the_key_never_appears_in_an_error_or_the_client_repr(settings, monkeypatch):
    from objlib.emulator import Emulator

    key = "objlib-test-key-DO-NOT-LEAK-7781"
    monkeypatch.setenv("GEMINI_API_KEY", key)
    with Emulator(profile="instant", seed=1, faults={"rate_limit": 1.0}) as emu:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        client = GeminiClient.from_env(settings)
        with pytest.raises(RateLimited) as caught:
            client.ensure_store("objlib test")
        emu.stop()
        with pytest.raises(Transient) as refused:
            client.get_file("files/objlib-x")
        client.close()

    for err in (caught.value, refused.value):
        assert key not in str(err) and key not in repr(err)
    assert key not in repr(client)


def test_a_long_listing_asks_a_failed_page_again_instead_of_starting_over(emulator, settings):
    # Given a store of 45 documents (3 pages) and a service that fails half the requests
    store = emulator.state.create_store("big").name
    for i in range(45):
        emulator.state.add_document(store, f"raw{i:02d}")
    client = GeminiClient.from_env(settings)
    emulator.configure(faults={"unavailable": 0.5})
    # When the listing may ask each page again
    names = [d.name for d in client.list_documents(store, transient_retries=8)]
    # Then it reads every document exactly once
    assert len(names) == len(set(names)) == 45
    with pytest.raises(Transient):
        list(client.list_documents(store))  # without retries, one failure ends it

