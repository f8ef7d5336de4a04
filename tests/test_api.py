"""`objlib.api`: scan, enqueue and status from Python, with a home passed in (no OBJLIB_HOME,
nothing written to os.environ), typed results, the same errors as the CLI, and logging left
to the host program."""

from __future__ import annotations

import importlib.resources
import logging
import os
import typing

import pytest

from objlib import api
from objlib.queue import bind
from tests.support.disk import write_library


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A home given only as an argument: OBJLIB_HOME is not set."""
    monkeypatch.delenv("OBJLIB_HOME")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "state"


def test_scan_enqueue_and_status_work_on_the_home_passed_in(elsewhere, library, emulator,
                                                          monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    write_library(library, 3)
    environ = dict(os.environ)

    found = api.scan(library, home=elsewhere)
    queued = api.enqueue(home=elsewhere, limit=2)
    now = api.status(home=elsewhere)

    assert isinstance(found, api.ScanSummary) and found.new == 3
    assert isinstance(queued, api.EnqueueSummary) and len(queued.enqueued) == 2
    assert queued.remaining == 1 and queued.store.startswith("fileSearchStores/")
    assert isinstance(now, api.Snapshot)
    assert (now.files["queued"], now.files["pending"], now.waiting) == (2, 1, 2)
    assert now.home == str(elsewhere.absolute()) and not now.done
    assert bind(api.settings(elsewhere)).huey.pending_count() == 2
    assert dict(os.environ) == environ  # nothing was put in the environment
    assert not (elsewhere.parent / "data").exists()  # and no ./data was made


def test_settings_are_keywords(elsewhere, library):
    write_library(library, 2)
    (library / "Notes" / "extra.md").write_text("# a markdown note\n" * 20)
    found = api.scan(library, home=elsewhere, extensions=(".md",))
    assert found.new == 1 and found.skipped_total == 2


def test_a_dry_run_scan_writes_nothing(elsewhere, library):
    write_library(library, 2)
    assert api.scan(library, home=elsewhere, dry_run=True).new == 2
    with pytest.raises(api.CatalogError, match="no catalogue"):
        api.status(home=elsewhere)


def test_status_without_a_catalogue_raises_and_creates_nothing(elsewhere):
    with pytest.raises(api.CatalogError, match="objlib scan"):
        api.status(home=elsewhere)
    assert not elsewhere.exists()


def test_a_missing_library_raises_library_error(elsewhere, tmp_path):
    with pytest.raises(api.LibraryError, match="does not exist"):
        api.scan(tmp_path / "nowhere", home=elsewhere)


def test_the_deletion_guard_raises_with_its_figures(elsewhere, library):
    paths = write_library(library, 12)
    api.scan(library, home=elsewhere)
    for p in paths:
        p.unlink()
    with pytest.raises(api.MassDeleteRefused) as refused:
        api.scan(library, home=elsewhere)
    assert refused.value.to_delete == 12
    assert api.scan(library, home=elsewhere, allow_mass_delete=True).deleted == 12


def test_a_bad_setting_raises_config_error(elsewhere, library):
    with pytest.raises(api.ConfigError, match="max_attempts"):
        api.status(home=elsewhere, max_attempts=0)


def test_objlib_events_reach_the_host_program_s_logging(elsewhere, library, caplog):
    # Given a program that configured nothing of objlib's logging
    import objlib.log as objlib_log

    objlib_log._applied, objlib_log._wanted = False, None
    root_handlers = list(logging.getLogger().handlers)
    write_library(library, 2)
    api.scan(library, home=elsewhere)
    # When objlib logs an event
    with caplog.at_level(logging.INFO, logger="objlib"):
        objlib_log.get_logger("objlib.scan").info("scanned", name="clash", files=2)
    # Then it is a plain record of the objlib.* logger, with its fields as attributes
    record = next(r for r in caplog.records if r.getMessage() == "scanned")
    assert record.name == "objlib.scan" and record.files == 2 and record.name_ == "clash"
    assert logging.getLogger().handlers == root_handlers  # no handler was added
    objlib_log.configure_lazily()


def test_the_package_is_typed():
    assert importlib.resources.files("objlib").joinpath("py.typed").is_file()
    for fn in (api.scan, api.enqueue, api.status, api.settings):
        hints = typing.get_type_hints(fn)
        assert "return" in hints and hints["return"] is not type(None)
    assert set(api.__all__) <= set(dir(api))
