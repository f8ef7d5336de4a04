"""``objlib search`` through the CLI, against the emulator with the real SDK: the answer and
numbered citations mapped back to local paths and metadata (text and ``--json``); an edited
file's old text and a deleted file's text are no longer cited once objlib has synced; and
every error says its fix (no catalogue, no store, nothing indexed, a lost store, an
unparsable filter, a shorthand of the wrong type, no API key, the API unreachable, a rate
limit, an unknown model). The files are sent by the worker steps in-process (what a consumer
runs), so no consumer process is needed."""

from __future__ import annotations

import socket

import pytest

from objlib import pipeline
from objlib.enqueue import ensure_store
from objlib.scan import scan_library
from tests.support.search import cited, run, sync

PHRASE = "the zymurgical quokka sings at dawn"
FILLER = "Reason is the faculty that identifies and integrates what the senses provide. "
FILES = {
    "Courses/OPAR/OPAR - Lesson 3 - Objectivity.txt": FILLER * 4 + f"In short, {PHRASE}. ",
    "Courses/OPAR/OPAR - Lesson 4 - Ethics.txt": FILLER * 4 + "Values are what one acts for. ",
    "Courses/Logic/Logic - Year 2 - Q1 - Week 3 - Induction.txt":
        FILLER * 4 + "Induction generalizes from instances. ",
}


def write(library, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = library / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def synced(settings, library, emulator):
    write(library, FILES)
    scan_library(settings, library)
    sync(settings)
    return library


def test_the_answer_cites_the_local_file_with_its_metadata_and_passage(synced, settings):
    result = run(PHRASE)

    assert result.exit_code == 0, result.output
    out = result.output
    assert "emulator" in out and "Citations" in out
    assert "[1] Courses/OPAR/OPAR - Lesson 3 - Objectivity.txt" in out
    assert "course: OPAR · lesson: 3 · topic: Objectivity" in out
    assert PHRASE in out and "[1]" in out.split("Citations")[0]  # the answer cites it


def test_json_prints_the_answer_the_citations_and_the_filter_sent(synced, settings):
    from objlib.catalog import open_catalog

    data = cited(f"{PHRASE} reason", "--filter", "course=OPAR", "--filter", "lesson>=3",
                 "--top-k", "2")

    assert data["filter"] == '(course = "OPAR") AND (lesson >= 3)'
    assert "emulator" in data["answer"] and len(data["citations"]) == 2
    top = data["citations"][0]
    catalog = open_catalog(settings)
    try:
        document = catalog.query("SELECT document FROM files WHERE path=?", (top["path"],))[0][0]
    finally:
        catalog.close()
    assert top["path"] == "Courses/OPAR/OPAR - Lesson 3 - Objectivity.txt"
    assert top["absolute_path"] == str(synced / top["path"])
    assert top["document"] == document and top["number"] == 1 and top["state"] == "indexed"
    assert top["metadata"] == {"category": "Courses", "course": "OPAR", "lesson": 3,
                               "topic": "Objectivity", "title": "OPAR - Lesson 3 - Objectivity"}
    assert PHRASE in top["text"]
    assert all(c["metadata"]["course"] == "OPAR" for c in data["citations"])


def test_a_filter_excludes_and_a_numeric_shorthand_compares_numbers(synced):
    other = cited(f"{PHRASE} reason", "--filter", "lesson!=3", "--top-k", "10")
    by_year = cited("Induction generalizes", "--filter", "year>=2")
    none = cited("Induction generalizes", "--filter", "year>2")

    assert other["citations"] and all(PHRASE not in c["text"] for c in other["citations"])
    assert [c["path"] for c in by_year["citations"]] == [
        "Courses/Logic/Logic - Year 2 - Q1 - Week 3 - Induction.txt"]
    assert none["citations"] == [] and "No passage" in none["answer"]


def test_an_edited_files_old_text_and_a_deleted_files_text_are_no_longer_cited(
        synced, settings):
    objectivity = synced / "Courses/OPAR/OPAR - Lesson 3 - Objectivity.txt"
    objectivity.write_text(FILLER * 4 + "Now the marsupial is silent. ", encoding="utf-8")
    (synced / "Courses/OPAR/OPAR - Lesson 4 - Ethics.txt").unlink()
    scan_library(settings, synced)
    sync(settings)

    old = cited(PHRASE, "--top-k", "20")
    new = cited("marsupial silent")
    gone = cited("Values are what one acts for", "--top-k", "20")

    assert all(PHRASE not in c["text"] for c in old["citations"])
    assert new["citations"][0]["path"] == "Courses/OPAR/OPAR - Lesson 3 - Objectivity.txt"
    assert all("Ethics" not in c["path"] and "Values are" not in c["text"]
               for c in gone["citations"])


# ------------------------------------------------------------------------------ the errors


def test_no_catalogue_says_to_scan_first(emulator):
    result = run("anything")
    assert result.exit_code == 1 and "objlib scan" in result.output


def test_no_store_yet_says_to_upload(settings, library, emulator):
    write(library, FILES)
    scan_library(settings, library)
    result = run("anything")
    assert result.exit_code == 1
    assert "no store yet" in result.output and "objlib upload" in result.output


def test_nothing_indexed_yet_says_where_to_look(settings, library, emulator):
    write(library, FILES)
    scan_library(settings, library)
    ctx = pipeline.build_context(settings)
    ensure_store(settings, ctx.catalog, ctx.gemini)
    ctx.gemini.close()
    ctx.catalog.close()

    result = run("anything")

    assert result.exit_code == 1
    assert "nothing indexed yet" in result.output and "objlib status" in result.output


def test_an_unparsable_filter_shows_the_services_400_and_how_to_write_one(synced):
    result = run(PHRASE, "--filter", 'course = "OPAR" AND (')
    assert result.exit_code == 1
    assert "refused the filter" in result.output and "400 INVALID_ARGUMENT" in result.output
    assert 'course = "OPAR" AND year >= 1991' in result.output  # the example to follow


def test_a_shorthand_of_the_wrong_type_is_refused_before_any_request(synced, emulator):
    before = sum(emulator.stats()["requests"].values())
    result = run(PHRASE, "--filter", "year>=recent")
    assert result.exit_code == 1 and "year is a number" in result.output
    assert sum(emulator.stats()["requests"].values()) == before


def test_a_missing_api_key_says_which_variable_to_set(synced, monkeypatch):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "https://generativelanguage.googleapis.com")
    result = run(PHRASE)
    assert result.exit_code == 1 and "GEMINI_API_KEY is not set" in result.output


def test_an_unreachable_api_says_so(synced, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"http://127.0.0.1:{port}")
    result = run(PHRASE)
    assert result.exit_code == 1
    assert "unreachable" in result.output and "GOOGLE_GEMINI_BASE_URL" in result.output


def test_a_lost_store_is_recorded_and_says_how_to_recover(synced, settings, emulator):
    from objlib import store

    emulator.reset()  # the service forgot everything
    result = run(PHRASE)
    assert result.exit_code == 1 and "objlib reconcile --fix" in result.output
    from objlib.catalog import open_catalog

    catalog = open_catalog(settings)
    try:
        assert store.lost_at(catalog) is not None
    finally:
        catalog.close()


def test_a_rate_limit_says_when_to_try_again(synced, emulator):
    emulator.configure(faults={"rate_limit": 1.0})
    result = run(PHRASE)
    assert result.exit_code == 1 and "rate limiting" in result.output


def test_an_unknown_model_says_to_choose_another(synced):
    result = run(PHRASE, "--model", "gpt-4")
    assert result.exit_code == 1
    assert "does not know the model 'gpt-4'" in result.output and "--model" in result.output


# ------------------------------------------------------------------ the shared throttle


def test_a_search_goes_through_the_shared_throttle(synced, settings):
    from objlib.throttle import Throttle

    throttle = Throttle.from_settings(settings)
    try:
        before = throttle.state().requests_last_60s
        assert run(PHRASE).exit_code == 0
        assert throttle.state().requests_last_60s == before + 1  # counted like a worker's
    finally:
        throttle.close()


def test_an_open_breaker_holds_the_search_and_says_why(synced, settings, emulator):
    from objlib.settings import Settings
    from objlib.throttle import Throttle

    (settings.home / "config.toml").write_text("breaker_cooldown_s = 120.0\n")
    throttle = Throttle.from_settings(Settings.load(settings.home))
    try:
        for _ in range(10):  # the service answered 503 ten times: the breaker opens
            throttle.record(503)
        assert throttle.state().breaker == "open"
    finally:
        throttle.close()
    before = sum(emulator.stats()["requests"].values())

    result = run(PHRASE)

    assert result.exit_code == 1 and "circuit breaker open" in result.output
    assert "objlib status" in result.output
    assert sum(emulator.stats()["requests"].values()) == before  # nothing was sent
