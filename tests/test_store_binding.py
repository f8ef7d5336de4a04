"""One catalogue, one store, bound both ways; a lost store is a state, not a wedge.

Through the CLI as real processes against the emulator over HTTP: two homes never share or
clean each other's store; concurrent enqueues of a new home end with one store; a store
name that does not match is refused before anything is created; a store deleted under a
mirrored catalogue is reported by status and reconcile, and ``reconcile --fix`` re-creates
it and, with a real consumer, every file is indexed again."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import pytest

from objlib.catalog import open_catalog
from objlib.errors import ConfigError
from objlib.gemini.errors import GeminiError
from objlib.settings import Settings
from tests.support.catalogue import file_states
from tests.support.disk import write_library
from tests.support.waits import wait_for


def objlib(home, *args: str, emulator=None, timeout_s: float = 120.0):
    """``objlib --home HOME ARGS`` as a real process; its CompletedProcess (text)."""
    env = {**os.environ, **({"GOOGLE_GEMINI_BASE_URL": emulator.base_url} if emulator else {})}
    return subprocess.run([sys.executable, "-m", "objlib", "--home", str(home), *args],
                          env=env, capture_output=True, text=True, timeout=timeout_s)


def ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def stores(emulator) -> dict[str, dict]:
    return emulator.stats()["stores"]


def docs_in(emulator, store: str) -> set[str]:
    return {d["name"] for files in stores(emulator)[store]["files"].values() for d in files}


def catalog_meta(home, key: str) -> str | None:
    catalog = open_catalog(Settings.load(home))
    try:
        return catalog.get_meta(key)
    finally:
        catalog.close()


@pytest.fixture
def two_libraries(tmp_path):
    a, b = tmp_path / "library-a", tmp_path / "library-b"
    write_library(a, 4, prefix="Alpha")
    write_library(b, 3, prefix="Beta")
    return a, b


@pytest.mark.slow
def test_two_homes_with_default_settings_get_two_stores_and_never_clean_each_other(
        tmp_path, emulator, two_libraries):
    # Given two libraries in two homes, both with the default settings, both uploaded
    homes = tmp_path / "home-a", tmp_path / "home-b"
    for home, library in zip(homes, two_libraries, strict=True):
        ok(objlib(home, "scan", str(library)))
        ok(objlib(home, "upload", emulator=emulator))
    store_a, store_b = (catalog_meta(h, "store") for h in homes)

    # Then each has a store of its own, named for its catalogue
    assert store_a != store_b and set(stores(emulator)) == {store_a, store_b}
    assert catalog_meta(homes[0], "store_display_name") == \
        f"objlib-{catalog_meta(homes[0], 'catalog_id')}"
    docs_a, docs_b = docs_in(emulator, store_a), docs_in(emulator, store_b)
    assert (len(docs_a), len(docs_b)) == (4, 3)

    # And reconcile --fix in either home leaves both stores as they were
    for home in homes:
        ok(objlib(home, "reconcile", "--fix", emulator=emulator))
    assert (docs_in(emulator, store_a), docs_in(emulator, store_b)) == (docs_a, docs_b)


@pytest.mark.slow
def test_a_second_catalogue_pointed_at_the_same_store_name_is_refused_and_foreign_is_kept(
        tmp_path, emulator, two_libraries):
    homes = tmp_path / "home-a", tmp_path / "home-b"
    for home in homes:
        home.mkdir()
        (home / "config.toml").write_text('store_name = "shared"\n', encoding="utf-8")
    ok(objlib(homes[0], "scan", str(two_libraries[0])))
    ok(objlib(homes[0], "upload", emulator=emulator))
    (store,) = stores(emulator)
    before = docs_in(emulator, store)

    ok(objlib(homes[1], "scan", str(two_libraries[1])))
    refused = objlib(homes[1], "enqueue", emulator=emulator)

    assert refused.returncode == 1
    assert "holds documents of another objlib catalogue" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert catalog_meta(homes[1], "store") is None
    assert docs_in(emulator, store) == before


@pytest.mark.slow
def test_concurrent_enqueues_of_a_new_home_end_with_one_store(settings, library, emulator):
    emulator.configure(latency={"call": 0.3})  # both list the stores before either creates
    write_library(library, 5)
    ok(objlib(settings.home, "scan", str(library)))
    env = {**os.environ, "GOOGLE_GEMINI_BASE_URL": emulator.base_url}
    procs = [subprocess.Popen([sys.executable, "-m", "objlib", "--home", str(settings.home),
                               "enqueue"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]

    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert len(stores(emulator)) == 1
    assert catalog_meta(settings.home, "store") in stores(emulator)
    assert emulator.stats()["requests"]["stores.create"] == 1


@pytest.mark.slow
def test_upload_with_another_store_name_is_refused_before_anything_is_created(
        settings, library, emulator):
    write_library(library, 3)
    ok(objlib(settings.home, "scan", str(library)))
    ok(objlib(settings.home, "upload", emulator=emulator))
    requests = emulator.stats()["requests"].copy()

    result = objlib(settings.home, "upload", "-s", "another-store", emulator=emulator)

    assert result.returncode == 1
    assert "another store" in result.stderr and "nothing was created" in result.stderr
    assert len(stores(emulator)) == 1
    assert emulator.stats()["requests"].get("stores.create") == requests.get("stores.create")


@pytest.mark.slow
def test_a_lost_store_is_reported_and_reconcile_fix_re_creates_it_and_reindexes_everything(
        settings, library, emulator, consumers):
    # Given a library indexed in its store, then the store deleted behind objlib's back
    write_library(library, 6)
    ok(objlib(settings.home, "scan", str(library)))
    ok(objlib(settings.home, "upload", emulator=emulator))
    lost = catalog_meta(settings.home, "store")
    emulator.state.delete_store(lost, force=True)

    # When enqueue runs, it says so and creates nothing (no empty store that wedges it)
    enqueue = objlib(settings.home, "enqueue", emulator=emulator)
    assert enqueue.returncode == 1 and "is gone" in enqueue.stderr
    assert "reconcile --fix" in enqueue.stderr and stores(emulator) == {}

    # Then status no longer says 100 %, and reconcile reports it with a failing exit code
    status = json.loads(ok(objlib(settings.home, "status", "--json")))
    assert status["store"]["lost_at"] is not None and status["store"]["name"] == lost
    assert status["progress"]["percent"] == 0.0 and status["progress"]["done"] is False
    assert "is gone" in ok(objlib(settings.home, "status"))
    check = objlib(settings.home, "reconcile", emulator=emulator)
    assert check.returncode == 1 and "is gone" in check.stdout

    # When reconcile --fix runs, a new store is made and every file goes through again
    fixed = objlib(settings.home, "reconcile", "--fix", "--json", emulator=emulator)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    report = json.loads(fixed.stdout)
    assert report["store_missing"] is True and report["recreated"] not in (None, lost)
    assert sum(a["action"] == "enqueue" for a in report["actions"]) == 6
    consumers(workers=4)
    wait_for(lambda: file_states(settings).get("indexed") == 6, 60, what="re-indexing")

    # Then the new store holds one document per file, and status is whole again
    new = catalog_meta(settings.home, "store")
    assert new == report["recreated"] and len(docs_in(emulator, new)) == 6
    status = json.loads(ok(objlib(settings.home, "status", "--json")))
    assert status["store"]["lost_at"] is None and status["progress"]["percent"] == 100.0
    assert ok(objlib(settings.home, "reconcile", emulator=emulator))


@pytest.mark.slow
def test_workers_wait_on_a_lost_store_instead_of_failing_every_file(settings, library, emulator,
                                                                     consumers):
    write_library(library, 4)
    ok(objlib(settings.home, "scan", str(library)))
    ok(objlib(settings.home, "enqueue", emulator=emulator))
    emulator.state.delete_store(catalog_meta(settings.home, "store"), force=True)

    consumer = consumers(workers=4)
    wait_for(lambda: catalog_meta(settings.home, "store_lost_at"), 30, what="the loss noticed")
    wait_for(lambda: "reconcile --fix" in consumer.log(), 10, what="the workers to say why")

    assert "failed" not in file_states(settings)
    assert "Traceback" not in consumer.log()


def test_a_failed_reconcile_is_recorded_as_failed_not_fixed(settings, library, emulator):
    from objlib import reconcile as rc
    from objlib import tasks
    from objlib.enqueue import ensure_store
    from objlib.scan import scan_library
    from objlib.views.status import reconcile_text

    write_library(library, 1)
    scan_library(settings, library)
    catalog = open_catalog(settings)
    ensure_store(settings, catalog)
    emulator.configure(faults={"unavailable": 1.0})
    try:
        with pytest.raises(GeminiError):  # (the breaker's pauses kept short)
            tasks.reconcile(dataclasses.replace(settings, breaker_cooldown_s=0.1), fix=True)
    finally:
        emulator.configure(faults={"unavailable": 0.0})
    text = reconcile_text(rc.last_result(catalog), now=time.time())
    catalog.close()

    assert "FAILED" in text and "503" in text and "fixed" not in text


def test_a_catalogue_bound_before_display_names_were_kept_keeps_its_named_store(
        settings, library, emulator, monkeypatch):
    from dataclasses import replace

    from objlib.enqueue import ensure_store
    from objlib.scan import scan_library

    write_library(library, 1)
    scan_library(settings, library)
    named = replace(settings, store_name="my-library")
    catalog = open_catalog(settings)
    store = ensure_store(named, catalog)
    with catalog.write() as conn:  # as an older objlib left it: the store, not its name
        conn.execute("DELETE FROM meta WHERE key='store_display_name'")
        conn.execute("UPDATE files SET document='fileSearchStores/x/documents/y'")

    assert ensure_store(named, catalog) == store  # the same name: no refusal, no new store
    assert catalog.get_meta("store_display_name") == "my-library"
    with pytest.raises(ConfigError, match="is another store"):
        ensure_store(replace(settings, store_name="other"), catalog)
    catalog.close()
    assert len(stores(emulator)) == 1


def test_reconcile_in_a_home_without_a_catalogue_creates_none(settings):
    from click.testing import CliRunner

    from objlib.cli import cli

    result = CliRunner().invoke(cli, ["reconcile"])

    assert result.exit_code == 1 and "objlib scan" in result.output
    assert not settings.library_db.exists()
