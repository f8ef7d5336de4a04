"""Pause, don't fail: while the service is away (502/503/504, no answer) or refuses the key,
no file spends its attempts or fails, and everything resumes once the cause is gone. And the
key itself never lands anywhere, in any spelling (issue 12, items 8 and 9)."""

from __future__ import annotations

import json
import random
import signal
import time
from urllib.parse import quote, quote_plus

import pytest
from click.testing import CliRunner
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from objlib import pipeline
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.cli import cli
from objlib.enqueue import enqueue, ensure_store
from objlib.errors import ConfigError
from objlib.gemini.client import GeminiClient
from objlib.gemini.errors import BadApiKey, classify
from objlib.scan import scan_library
from objlib.settings import Settings
from objlib.throttle import Deferred, Throttle
from tests.support.catalogue import file_states, queued
from tests.support.disk import write_library
from tests.support.processes import Consumer
from tests.support.waits import wait_for

RIGHT_KEY = "objlib-right-key-7f3a9c21"
WRONG_KEY = "objlib-wrong-key-0b5e8d44"


def run(*args, **env):
    return CliRunner().invoke(cli, list(args), env=env or None, catch_exceptions=False)


@pytest.fixture
def make_ctx(home, library, emulator):
    """A pipeline context on this home, with settings overridden, and one file scanned."""
    built = []

    def make(files: int = 1, **overrides) -> pipeline.Context:
        write_library(library, files)
        settings = Settings.load(home, **overrides)
        scan_library(settings, library)
        ctx = pipeline.build_context(settings)
        ensure_store(settings, ctx.catalog, ctx.gemini)
        built.append(ctx)
        return ctx

    yield make
    for ctx in built:
        ctx.gemini.close()
        ctx.catalog.close()


def errors_of(catalog, error_class: str) -> int:
    return catalog.query("SELECT count(*) FROM errors WHERE error_class=?", (error_class,))[0][0]


# ------------------------------------------------------------------ the service is away


def test_an_unavailable_service_pauses_the_upload_without_spending_attempts(make_ctx, emulator):
    # Given files may fail after 2 attempts, and a service answering 503 to everything
    # (the breaker is out of the way here: this test watches the row)
    ctx = make_ctx(max_attempts=2, breaker_min_429=10_000)
    emulator.configure(faults={"unavailable": 1.0})
    row = queued(ctx)
    # When the upload step meets it three times as often as the attempts allow
    delays = []
    for _ in range(6):
        with pytest.raises(Deferred) as d:
            pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
        delays.append(d.value.delay_s)
    # Then the row waits (no attempt spent, not failed), every pause is logged for status,
    # and the backoff grows
    row = lc.get(ctx.catalog, row.id)
    assert (row.state, row.attempts, row.error_class) == ("uploading", 0, "unavailable")
    assert errors_of(ctx.catalog, "unavailable") == 6
    assert delays[-1] > delays[0] * 2, delays
    assert row.lease_until > time.time() + delays[-1], "the row is not held while it waits"
    # and once the service is back the same step goes through
    emulator.configure(faults={"unavailable": 0.0})
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is True


def test_an_unavailable_service_pauses_the_poll_without_spending_attempts(make_ctx, emulator):
    ctx = make_ctx(max_attempts=2, breaker_min_429=10_000)
    row = queued(ctx)
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is True
    clock = ctx.clock
    ctx.clock = lambda: clock() + 5  # past the poll's first delay
    emulator.configure(faults={"unavailable": 1.0})
    for _ in range(5):
        with pytest.raises(Deferred):
            pipeline.poll_import(ctx, row.id, row.version, "poll-1")
    row = lc.get(ctx.catalog, row.id)
    assert (row.state, row.attempts) == ("importing", 0)
    emulator.configure(faults={"unavailable": 0.0})
    pipeline.poll_import(ctx, row.id, row.version, "poll-1")
    assert lc.get(ctx.catalog, row.id).state == "indexed"


def test_an_unavailable_service_defers_a_removal_without_spending_attempts(make_ctx, emulator):
    ctx = make_ctx(max_attempts=2, breaker_min_429=10_000)
    document = emulator.state.add_document(ctx.store, "objlib-old").name
    lc.schedule_removal(ctx.catalog, document, None, "replaced", time.time())
    removal = lc.open_removals(ctx.catalog)[0]
    emulator.configure(faults={"unavailable": 1.0})
    for _ in range(4):
        with pytest.raises(Deferred):
            pipeline.remove_document(ctx, removal.id, "remove-1")
    assert lc.get_removal(ctx.catalog, removal.id).attempts == 0
    assert errors_of(ctx.catalog, "unavailable") == 4
    emulator.configure(faults={"unavailable": 0.0})
    pipeline.remove_document(ctx, removal.id, "remove-1")
    assert lc.open_removals(ctx.catalog) == []


def test_a_transient_500_still_spends_attempts_and_fails_at_the_bound(make_ctx, emulator):
    # "Failed to create file." is a hiccup of this request, not an outage
    ctx = make_ctx(max_attempts=2, breaker_min_429=10_000)
    emulator.configure(faults={"create_failed": 1.0})
    row = queued(ctx)
    with pytest.raises(Deferred):
        pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
    assert pipeline.upload_and_import(ctx, row.id, row.version, "task-1") is False
    row = lc.get(ctx.catalog, row.id)
    assert (row.state, row.error_class, row.attempts) == ("failed", "transient", 2)


@pytest.mark.parametrize("status", [502, 503, 504, None])
def test_the_breaker_opens_on_an_outage(home, status):
    throttle = Throttle(home / "throttle.db", Settings.load(home, breaker_min_429=5),
                        random.Random(1))
    now = 1000.0
    for _ in range(5):
        throttle.record(status, now=now)
    assert throttle.state(now=now).breaker == "open"
    with pytest.raises(Deferred, match="circuit breaker open"):
        throttle.acquire("task", now=now + 1)


def test_a_500_does_not_open_the_breaker(home):
    throttle = Throttle(home / "throttle.db", Settings.load(home, breaker_min_429=5))
    for _ in range(10):
        throttle.record(500, now=1000.0)
    assert throttle.state(now=1000.0).breaker == "closed"


# ------------------------------------------------------------------ a refused key


def test_the_emulator_refuses_a_wrong_key_as_the_real_api_does(emulator):
    emulator.configure(api_keys={RIGHT_KEY})

    wrong, right = (genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=emulator.base_url, api_version="v1beta")) for key in (WRONG_KEY, RIGHT_KEY))

    with pytest.raises(genai_errors.APIError) as caught:
        list(wrong.file_search_stores.list())
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.message == "API key not valid. Please pass a valid API key."
    info = caught.value.details["error"]["details"][0]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert (info["reason"], info["domain"]) == ("API_KEY_INVALID", "googleapis.com")
    assert type(classify(caught.value, call="list_stores")) is BadApiKey
    assert list(right.file_search_stores.list()) == []
    assert RIGHT_KEY not in json.dumps(emulator.stats())


def test_the_emulator_cli_takes_the_valid_keys():
    result = run("emulator", "--help")
    assert "--api-key KEY" in result.output


def test_a_refused_key_pauses_the_worker_step_and_fails_nothing(make_ctx, emulator,
                                                                monkeypatch):
    ctx = make_ctx(max_attempts=1)
    row = queued(ctx)
    emulator.configure(api_keys={RIGHT_KEY})  # the key in use (none: the emulator's) is wrong
    with pytest.raises(BadApiKey) as caught:
        pipeline.upload_and_import(ctx, row.id, row.version, "task-1")
    assert isinstance(caught.value, ConfigError)  # what tasks.py waits out
    row = lc.get(ctx.catalog, row.id)
    assert (row.state, row.attempts, row.error_class) == ("uploading", 0, "bad_key")
    assert row.lease_until >= time.time() + ctx.settings.operator_wait_s
    assert errors_of(ctx.catalog, "bad_key") == 1


def test_enqueue_with_a_refused_key_stops_with_a_clear_message(settings, library, emulator,
                                                               monkeypatch):
    write_library(library, 2)
    scan_library(settings, library)
    emulator.configure(api_keys={RIGHT_KEY})
    result = run("enqueue", GEMINI_API_KEY=WRONG_KEY)
    assert result.exit_code == 1
    assert "API key was refused" in result.output and "API_KEY_INVALID" in result.output
    assert "GEMINI_API_KEY" in result.output and "Traceback" not in result.output
    assert WRONG_KEY not in result.output
    assert file_states(settings) == {"pending": 2}


def test_reconcile_with_a_refused_key_stops_with_a_clear_message(settings, library, emulator):
    write_library(library, 1)
    scan_library(settings, library)
    emulator.configure(api_keys={RIGHT_KEY})
    assert run("enqueue", GEMINI_API_KEY=RIGHT_KEY).exit_code == 0
    result = run("reconcile", GEMINI_API_KEY=WRONG_KEY)
    assert result.exit_code == 1
    assert "API key was refused" in result.output and WRONG_KEY not in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ a malformed key


@pytest.mark.parametrize("inside", ["\n", "\r\n", "\t", " ", "\x1b", "\x7f", "é"])
def test_a_key_with_whitespace_or_control_characters_inside_is_refused_unechoed(
        settings, monkeypatch, inside):
    key = f"AIzaSy-first-half{inside}second-half-0123"
    monkeypatch.setenv("GEMINI_API_KEY", key)
    with pytest.raises(BadApiKey) as caught:
        GeminiClient.from_env(settings)
    message = str(caught.value)
    assert "GEMINI_API_KEY" in message and "whitespace" in message
    assert "first-half" not in message and "second-half" not in message


def test_the_google_api_key_fallback_is_checked_and_named_too(settings, monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "fallback-first\nfallback-second")
    with pytest.raises(BadApiKey, match="GOOGLE_API_KEY"):
        GeminiClient.from_env(settings)


def test_whitespace_around_a_key_is_stripped_as_before(settings, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "  \tAIzaSy-clean-key-0123\n")
    assert GeminiClient.from_env(settings)._api_key == "AIzaSy-clean-key-0123"


def test_enqueue_with_a_key_with_a_newline_says_so_without_the_key(settings, library, emulator):
    write_library(library, 1)
    scan_library(settings, library)
    result = run("enqueue", GEMINI_API_KEY="AIzaSy-canary-top\nAIzaSy-canary-bottom")
    assert result.exit_code == 1
    assert "GEMINI_API_KEY has whitespace" in result.output and "Traceback" not in result.output
    assert "canary" not in result.output
    assert file_states(settings) == {"pending": 1}


# ------------------------------------------------------------------ real consumers

FAST_BREAKER = """
breaker_cooldown_s = 0.5
breaker_max_cooldown_s = 2.0
"""
FAST_PAUSES = FAST_BREAKER + """
max_attempts = 1
backoff_base_s = 0.2
backoff_max_s = 1.0
breaker_window_s = 5.0
breaker_min_429 = 10
"""


@pytest.mark.slow
def test_an_outage_fails_nothing_opens_the_breaker_and_every_file_ends_indexed(
        home, library, emulator, consumers):
    # Given files that may fail after 1 attempt, and a service that answers only 503
    (home / "config.toml").write_text(FAST_PAUSES)
    settings = Settings.load(home)
    write_library(library, 12)
    scan_library(settings, library)
    enqueue(settings)
    emulator.configure(faults={"unavailable": 1.0})
    consumers(workers=4)
    catalog = open_catalog(settings)

    def files_paused_twice() -> int:
        return catalog.query("SELECT count(*) FROM (SELECT file_id FROM errors WHERE "
                             "error_class='unavailable' GROUP BY file_id HAVING count(*) >= 2)"
                             )[0][0]

    # When the outage lasts until every file met more 503s than its attempts allow (the old
    # rule failed each at its first)
    wait_for(lambda: files_paused_twice() == 12, 90, 0.2, "the outage to reach every file")
    # Then nothing failed, no attempt was spent, and the breaker opened (so the service
    # was asked far less often than the tasks ran)
    assert "failed" not in file_states(settings)
    assert catalog.query("SELECT max(attempts) FROM files")[0][0] == 0
    assert Throttle.from_settings(settings).state().breaker_trips >= 1, "the breaker never opened"
    # And when the service is back every file ends indexed, once
    emulator.configure(faults={"unavailable": 0.0})
    wait_for(lambda: file_states(settings) == {"indexed": 12}, 120, 0.2, "all indexed")
    assert emulator.stats()["requests"]["stores.importFile"] == 12
    assert catalog.query("SELECT count(*) FROM files WHERE attempts > 0")[0][0] == 0


@pytest.mark.slow
def test_a_refused_key_fails_nothing_and_a_restart_with_the_right_key_finishes(
        settings, library, emulator, consumers, monkeypatch):
    # Given a catalogue enqueued with the right key, and workers started with a wrong one
    emulator.configure(api_keys={RIGHT_KEY})
    monkeypatch.setenv("GEMINI_API_KEY", RIGHT_KEY)
    write_library(library, 6)
    scan_library(settings, library)
    enqueue(settings)
    consumer = consumers(workers=3, env={"GEMINI_API_KEY": WRONG_KEY,
                                         "OBJLIB_OPERATOR_WAIT_S": "2"})
    # Then they say why they cannot work, and fail nothing
    wait_for(lambda: "the API key was refused" in consumer.log(), 30, what="the error logged")
    catalog = open_catalog(settings)
    wait_for(lambda: errors_of(catalog, "bad_key") >= 3, 30, what="every worker to meet it")
    consumer.stop(signal.SIGINT)
    states = file_states(settings)
    assert "failed" not in states and sum(states.values()) == 6, states
    assert "API_KEY_INVALID" in consumer.log() and "Traceback" not in consumer.log()
    assert WRONG_KEY not in consumer.log()
    # And restarted with the right key, everything is indexed (the paused tasks come back
    # after operator_wait_s, 2 s here)
    consumers(workers=3, env={"GEMINI_API_KEY": RIGHT_KEY})
    wait_for(lambda: file_states(settings) == {"indexed": 6}, 150, 0.5, "all indexed")


def spellings(secret: str) -> set[bytes]:
    """The key as is, escaped (repr, JSON, twice), URL-encoded, and its pieces of 8+ chars
    when split at control characters — written out here, independent of scrub()."""
    texts = {secret, repr(secret)[1:-1], repr(secret.encode())[2:-1], json.dumps(secret)[1:-1],
             json.dumps(json.dumps(secret))[1:-1], json.dumps(repr(secret.encode()))[1:-1],
             quote(secret, safe=""), quote_plus(secret)}
    pieces = [p for p in secret.replace("\r", "\n").replace("\t", "\n").split("\n")
              if len(p) >= 8]
    return {t.encode() for t in texts | set(pieces)}


@pytest.mark.slow
def test_neither_a_refused_nor_a_used_key_is_found_anywhere_after_a_full_run(
        settings, home, library, emulator, consumers, tmp_path, monkeypatch):
    newline_key = "AIzaSy-canary-NEWLINE-top\nAIzaSy-canary-NEWLINE-bottom"
    used_key = "AIzaSy-objlib-canary-PAUSE-0123456789"
    emulator.configure(api_keys={used_key})
    write_library(library, 12)
    scan_library(settings, library)
    outputs = []
    # A key with a newline: refused at load, by the CLI and by a consumer, unechoed (the
    # consumer works a second catalogue, so that its waiting tasks do not hold up this one)
    refused = run("enqueue", GEMINI_API_KEY=newline_key)
    assert refused.exit_code == 1 and "whitespace" in refused.output
    outputs.append(refused.output)
    other_home = tmp_path / "other-home"
    other = {"OBJLIB_HOME": str(other_home)}  # (restored after each run)
    assert run("scan", str(library), **other).exit_code == 0
    assert run("enqueue", GEMINI_API_KEY=used_key, **other).exit_code == 0
    broken = Consumer(other_home, tmp_path / "broken.log", 2, (), {
        "GOOGLE_GEMINI_BASE_URL": emulator.base_url, "GEMINI_API_KEY": newline_key})
    try:
        wait_for(lambda: "GEMINI_API_KEY has whitespace" in broken.log(), 30,
                 what="the refusal")
    finally:
        broken.stop()
    assert file_states(Settings.load(other_home)) == {"queued": 12}
    # A full run with a recognisable key, through an outage and 429s
    monkeypatch.setenv("GEMINI_API_KEY", used_key)
    result = run("enqueue")
    assert result.exit_code == 0, result.output
    outputs.append(result.output)
    (home / "config.toml").write_text(FAST_BREAKER)
    emulator.configure(faults={"unavailable": 0.2, "rate_limit": 0.1})
    consumer = consumers(workers=4, env={"GEMINI_API_KEY": used_key,
                                         "OBJLIB_BACKOFF_BASE_S": "0.2"})
    wait_for(lambda: file_states(settings) == {"indexed": 12}, 120, 0.2, "all indexed")
    consumer.stop()
    outputs += [run("failures").output, run("status", "--json").output,
                run("reconcile").output]
    # Then no spelling of either key is in any file of the home, any log or any output
    leaks = spellings(newline_key) | spellings(used_key)
    files = [p for folder in (home, other_home) for p in folder.iterdir() if p.is_file()]
    files += [broken.log_path, consumer.log_path]
    assert any(p.name == "library.db" for p in files) and any(p.name == "queue.db" for p in files)
    for path in files:
        data = path.read_bytes()
        for leak in leaks:
            assert leak not in data, f"{leak!r} leaked into {path.name}"
    for output in outputs:
        for leak in leaks:
            assert leak.decode() not in output
    assert "upload_and_import" in consumer.log(), "the worker log is not the one that worked"
