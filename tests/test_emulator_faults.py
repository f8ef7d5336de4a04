"""The emulator's knobs: every fault as the SDK sees it, the rpm quota, latency profiles and
the statistics benchmarks read. Rates of 1.0 make faults deterministic; no test sleeps long.
"""

from __future__ import annotations

import asyncio

import pytest
from google.genai import errors, types

from objlib.emulator import PROFILES, Emulator
from objlib.emulator.behaviour import Behaviour, SlidingWindow
from tests.support.sdk import make_client, raw, upload


@pytest.fixture
def emu():
    with Emulator(profile="instant", seed=7) as emu:
        yield emu


@pytest.fixture
def client(emu):
    return make_client(emu)


def import_one(client, emu, file_id="doc"):
    """A store, a raw file and an import: (store, the operation as importFile answered it)."""
    store = client.file_search_stores.create(config={"display_name": "faults"})
    op = client.file_search_stores.import_file(file_search_store_name=store.name,
                                               file_name=upload(client, file_id).name)
    return store, op


# --- faults ------------------------------------------------------------------------------


def test_rate_limit_is_a_bare_429_resource_exhausted_with_no_retry_delay(client, emu):
    # the real API's scattered 429 comes with no details and no Retry-After header
    emu.configure(faults={"rate_limit": 1.0})

    with pytest.raises(errors.ClientError) as exc:
        client.file_search_stores.list()

    assert exc.value.code == 429 and exc.value.status == "RESOURCE_EXHAUSTED"
    assert exc.value.message == "Resource has been exhausted (e.g. check quota)."
    assert "retry-after" not in exc.value.response.headers
    assert "details" not in exc.value.details["error"]
    assert emu.stats()["faults"] == {"rate_limit": 1}


def test_rate_limit_reaches_the_async_client_the_same_way(client, emu):
    emu.configure(faults={"rate_limit": 1.0})

    async def call():
        await client.aio.files.get(name="anything")

    with pytest.raises(errors.ClientError) as exc:
        asyncio.run(call())
    assert exc.value.code == 429 and exc.value.status == "RESOURCE_EXHAUSTED"


def test_unavailable_is_a_503_server_error(client, emu):
    emu.configure(faults={"unavailable": 1.0})

    with pytest.raises(errors.ServerError) as exc:
        client.files.list()
    assert exc.value.code == 503 and exc.value.status == "UNAVAILABLE"


def test_create_failed_is_the_transient_400_on_upload_start(client, emu):
    emu.configure(faults={"create_failed": 1.0})

    with pytest.raises(errors.ClientError) as exc:
        upload(client, "unlucky")

    assert exc.value.code == 400 and exc.value.message == "Failed to create file."
    assert "upload.chunk" not in emu.stats()["requests"]
    emu.configure(faults={"create_failed": 0.0})
    assert upload(client, "unlucky").name == "files/unlucky"   # a plain retry goes through


def test_never_done_leaves_the_operation_open_but_the_document_active(client, emu):
    emu.configure(faults={"never_done": 1.0}, latency={"index": 1})
    store, op = import_one(client, emu)
    emu.state.advance(3600)

    polled = client.operations.get(op)
    docs = list(client.file_search_stores.documents.list(parent=store.name))

    assert polled.done is None and polled.response is None
    assert [d.state for d in docs] == [types.DocumentState.STATE_ACTIVE]
    assert emu.operations()[0]["done_at"] is None


def test_index_failed_ends_done_with_an_error_and_a_failed_document(client, emu):
    emu.configure(faults={"index_failed": 1.0})
    store, op = import_one(client, emu)

    polled = client.operations.get(op)
    doc = list(client.file_search_stores.documents.list(parent=store.name))[0]

    assert polled.done is True and polled.error["code"] == 13 and polled.response is None
    assert doc.state == types.DocumentState.STATE_FAILED
    assert client.file_search_stores.get(name=store.name).failed_documents_count == 1


def test_a_seeded_half_rate_is_reproducible():
    def outcomes(seed):
        with Emulator(seed=seed, faults={"unavailable": 0.5}) as emu:
            return [raw(emu, "GET", "/v1beta/files", headers={"x-goog-api-key": "k"})[0]
                    for _ in range(40)]

    first, again, other = outcomes(11), outcomes(11), outcomes(12)

    assert first == again and first != other
    assert set(first) == {200, 503}


def test_faults_spare_upload_chunks_and_the_emulator_endpoints(emu):
    start = {"x-goog-api-key": "k", "X-Goog-Upload-Protocol": "resumable",
             "X-Goog-Upload-Command": "start", "X-Goog-Upload-Header-Content-Length": "2"}
    _, headers, _ = raw(emu, "POST", "/upload/v1beta/files", b"", start)
    emu.configure(faults={"rate_limit": 1.0, "unavailable": 1.0}, rpm=1)
    path = headers["X-Goog-Upload-URL"].removeprefix(emu.base_url)

    chunk = raw(emu, "POST", path, b"ok", {"X-Goog-Upload-Command": "upload, finalize",
                                           "X-Goog-Upload-Offset": "0"})
    stats = raw(emu, "GET", "/_emulator/stats")

    assert chunk[0] == 200 and chunk[2]["file"]["sizeBytes"] == "2"
    assert stats[0] == 200 and "emulator.stats" not in stats[2]["requests"]


# --- the rpm quota -----------------------------------------------------------------------


def test_rpm_quota_refuses_the_sixth_call_in_a_minute(client, emu):
    emu.configure(rpm=5)
    for _ in range(5):
        client.file_search_stores.list()

    with pytest.raises(errors.ClientError) as exc:
        client.file_search_stores.list()

    assert exc.value.code == 429 and exc.value.status == "RESOURCE_EXHAUSTED"
    # how long until the quota frees a call: in RetryInfo, as the real API says it; no header
    retry_info, = exc.value.details["error"]["details"]
    assert retry_info["@type"] == "type.googleapis.com/google.rpc.RetryInfo"
    assert 1 <= int(retry_info["retryDelay"].removesuffix("s")) <= 60
    assert "retry-after" not in exc.value.response.headers
    stats = emu.stats()
    assert stats["statuses"] == {"200": 5, "429": 1} and stats["faults"] == {"rpm_quota": 1}
    assert stats["max_calls_in_60s"] == 6


def test_the_quota_window_slides():
    now = [1000.0]
    behaviour = Behaviour(rpm=2, clock=lambda: now[0])
    behaviour.admit()
    now[0] += 30
    behaviour.admit()

    with pytest.raises(Exception, match="Quota exceeded"):
        behaviour.admit()
    now[0] += 30            # the first call leaves the half-open window (t-60, t]
    behaviour.admit()


def test_the_sliding_window_is_half_open_and_keeps_its_maximum():
    window = SlidingWindow(60)

    counts = [window.add(t) for t in (0.0, 30.0, 59.9, 60.0, 61.0, 200.0)]

    assert counts == [1, 2, 3, 3, 4, 1] and window.max == 4


# --- latency ----------------------------------------------------------------------------------


def test_realistic_profile_is_documented_and_jittered_within_20_percent():
    profile = PROFILES["realistic"]
    behaviour = Behaviour("realistic", seed=3)

    delays = [behaviour.delay_s("index") for _ in range(200)]

    assert PROFILES["instant"].file_s() == 0 and 0.3 < profile.file_s() < 1.0
    assert all(0.8 * 0.3 <= d <= 1.2 * 0.3 for d in delays) and len(set(delays)) > 100


def test_an_operation_is_done_only_after_the_index_latency(client, emu):
    emu.configure(latency={"index": 2})
    _, op = import_one(client, emu)

    before = client.operations.get(op)
    emu.state.advance(2)
    after = client.operations.get(op)

    assert before.done is None and after.done is True
    [report] = emu.operations()
    assert report["done_at"] == pytest.approx(report["created"] + 2)


def test_a_tiny_real_latency_delays_the_answer(client, emu):
    emu.configure(latency={"index": 0.2})
    _, op = import_one(client, emu)

    while not op.done:
        op = client.operations.get(op)

    assert op.response.document_name


@pytest.mark.parametrize("knobs", [{"latency": {"nap": 1}}, {"faults": {"rate_limit": -0.1}},
                                   {"profile": "glacial"}, {"rpm": -1}])
def test_bad_knobs_are_refused(emu, knobs):
    with pytest.raises(ValueError):
        emu.configure(**knobs)


# --- statistics ---------------------------------------------------------------------------


def test_stats_count_endpoints_statuses_and_group_documents_by_raw_file(client, emu):
    store = client.file_search_stores.create(config={"display_name": "stats"})
    upload(client, "a")
    for _ in range(2):
        client.file_search_stores.import_file(
            file_search_store_name=store.name, file_name="files/a",
            config={"custom_metadata": [{"key": "year", "numeric_value": 1943}]})
    with pytest.raises(errors.ClientError):
        client.files.get(name="missing")

    stats = raw(emu, "GET", "/_emulator/stats")[2]

    assert stats["requests"] == {"stores.create": 1, "upload.start": 1, "upload.chunk": 1,
                                 "stores.importFile": 2, "files.get": 1}
    assert stats["statuses"] == {"200": 5, "403": 1} and stats["total_requests"] == 6
    assert stats["max_requests_in_60s"] == 6 and stats["max_calls_in_60s"] == 5
    docs = stats["stores"][store.name]["files"]["a"]
    assert [d["customMetadata"] for d in docs] == [{"year": 1943}, {"year": 1943}]
    assert stats["stores"][store.name]["duplicates"] == ["a"]


def test_operations_endpoint_reports_when_each_operation_finished(client, emu):
    emu.configure(latency={"index": 5})
    _, op = import_one(client, emu)

    pending = raw(emu, "GET", "/_emulator/operations")[2]["operations"]
    emu.state.advance(5)
    done = raw(emu, "GET", "/_emulator/operations")[2]["operations"]

    assert [o["name"] for o in pending] == [op.name] and pending[0]["done_at"] is None
    assert done[0]["done_at"] >= done[0]["created"] and done[0]["file"] == "doc"


def test_sdk_retries_ride_over_a_flaky_service(emu):
    emu.configure(faults={"unavailable": 0.5})
    client = make_client(emu)
    retrying = {"http_options": types.HttpOptions(retry_options=types.HttpRetryOptions(
        attempts=20, initial_delay=0.001, max_delay=0.002))}

    stores = [client.file_search_stores.create(config={"display_name": f"s{i}", **retrying})
              for i in range(5)]

    assert len({s.name for s in stores}) == 5
    assert emu.stats()["statuses"]["503"] >= 1
