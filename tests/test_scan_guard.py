"""The deletion guard: a scan that finds the library empty (a drive not mounted) or that would
mark too much of the catalogue deleted records nothing and says what to do; the user confirms
with --allow-mass-delete or --max-delete N. End to end: an emptied library folder leaves every
document in the store."""

from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner

from objlib.cli import cli
from objlib.errors import LibraryError, MassDeleteRefused
from objlib.scan import check_root, scan_library
from objlib.scan.guard import DeleteLimit, refusal
from objlib.settings import Settings
from tests.support.catalogue import file_states
from tests.support.disk import write_library
from tests.support.store import documents

NOW = 1_700_000_000.0


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def snapshot(settings) -> dict[str, list[tuple]]:
    """Everything a scan may write: rows, their history, removals, meta."""
    with sqlite3.connect(settings.library_db) as conn:
        out = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
               for t in ("files", "history", "removals", "meta")}
    conn.close()
    return out


def as_indexed(settings) -> None:
    """Simulate the workers: every pending row is in the store, so a deletion schedules the
    removal of its document."""
    with sqlite3.connect(settings.library_db) as conn:
        conn.execute("UPDATE files SET state='indexed', document='doc-' || id "
                     "WHERE state='pending'")
    conn.close()


@pytest.fixture
def indexed(settings, library):
    """A scanned library of ``count`` files whose rows are indexed; returns the file paths."""

    def make(count: int) -> list:
        paths = write_library(library, count)
        assert scan_library(settings, library, now=NOW).new == count
        as_indexed(settings)
        return paths

    return make


def delete(paths, count: int) -> None:
    for path in paths[:count]:
        path.unlink()


# ---------------------------------------------------------------------------- the decision


@pytest.mark.parametrize("live, to_delete, root_empty, refused", [
    (310, 300, False, True),    # over both limits
    (1000, 51, False, True),    # over the count only (5.1 %)
    (1000, 50, False, False),   # at the count, under the share
    (60, 13, False, True),      # over the share only (21.7 %)
    (60, 12, False, False),     # exactly 20 %
    (20, 10, False, False),     # 50 %, but not more than the floor of 10 files
    (20, 11, False, True),      # 55 %, above the floor
    (5, 2, False, False),       # a small tidy-up
    (1, 1, True, True),         # the root has no files at all
    (5, 0, True, False),        # nothing to delete (the root could not be listed)
])
def test_the_standing_limit_refuses_too_many_deletions_or_an_empty_root(
        live, to_delete, root_empty, refused):
    limit = DeleteLimit(50, 20.0, empty_root_ok=False)
    reason = refusal(limit, live=live, to_delete=to_delete, root_empty=root_empty)
    assert (reason is not None) == refused, reason


def test_a_confirmation_replaces_the_standing_limit_for_one_scan():
    s = Settings.load("/nonexistent-home")
    assert DeleteLimit.of(s) == DeleteLimit(50, 20.0, empty_root_ok=False)
    assert refusal(DeleteLimit.of(s, allow_mass_delete=True), live=310, to_delete=310,
                   root_empty=True) is None
    assert refusal(DeleteLimit.of(s, max_delete=300), live=310, to_delete=300,
                   root_empty=False) is None
    assert refusal(DeleteLimit.of(s, max_delete=300), live=310, to_delete=301,
                   root_empty=False) == "301 of 310 catalogued files would be marked deleted " \
                                        "(limit: 300 files)"


# ---------------------------------------------------------------------------- scan_library


def test_an_empty_library_folder_is_refused_and_nothing_is_recorded(settings, library, indexed):
    paths = indexed(5)
    before = snapshot(settings)
    delete(paths, 5)

    with pytest.raises(MassDeleteRefused, match="library folder has no files") as caught:
        scan_library(settings, library, now=NOW + 1)

    assert (caught.value.to_delete, caught.value.live) == (5, 5)
    assert isinstance(caught.value, LibraryError)
    assert snapshot(settings) == before
    assert file_states(settings) == {"indexed": 5}


def test_over_the_count_limit_nothing_is_recorded_not_even_new_or_changed_files(
        settings, library, indexed):
    paths = indexed(300)
    before = snapshot(settings)
    delete(paths, 51)  # 17 %: only the count (50) is exceeded
    paths[-1].write_text("changed words\n", encoding="utf-8")
    (library / "brand new.txt").write_text("new words\n", encoding="utf-8")

    with pytest.raises(MassDeleteRefused, match=r"51 of 300 catalogued files .*limit: 50 "
                                                r"files or 20 %"):
        scan_library(settings, library, now=NOW + 1)

    assert snapshot(settings) == before


def test_over_the_percentage_is_refused(settings, library, indexed):
    paths = indexed(60)
    before = snapshot(settings)
    delete(paths, 13)  # 21.7 % of 60, under the count

    with pytest.raises(MassDeleteRefused, match="13 of 60"):
        scan_library(settings, library, now=NOW + 1)
    assert snapshot(settings) == before


def test_under_both_limits_the_deletions_are_recorded_with_their_removals(
        settings, library, indexed):
    paths = indexed(60)
    delete(paths, 12)  # 20 %, not more

    summary = scan_library(settings, library, now=NOW + 1)

    assert summary.deleted == 12
    assert file_states(settings) == {"indexed": 48, "deleted": 12}
    assert len(snapshot(settings)["removals"]) == 12


def test_deleting_a_few_of_a_small_library_is_not_refused(settings, library, indexed):
    paths = indexed(5)
    delete(paths, 2)  # 40 %, but only 2 files

    assert scan_library(settings, library, now=NOW + 1).deleted == 2


def test_rows_below_a_folder_that_cannot_be_listed_are_not_counted(settings, library, indexed,
                                                                    monkeypatch):
    paths = indexed(60)  # all in library/Notes
    (library / "Other").mkdir()
    (library / "Other" / "a.txt").write_text("a\n", encoding="utf-8")
    scan_library(settings, library, now=NOW + 1)
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(library / "Notes"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # chmod 000 does not stop root
    summary = scan_library(settings, library, now=NOW + 2)

    assert summary.deleted == 0 and summary.warnings == ["cannot list Notes: Permission denied"]
    assert file_states(settings) == {"indexed": 60, "pending": 1}
    assert paths[0].exists()


def test_a_confirmed_scan_records_the_deletions(settings, library, indexed):
    paths = indexed(60)
    delete(paths, 60)

    summary = scan_library(settings, library, now=NOW + 1, allow_mass_delete=True)

    assert summary.deleted == 60
    assert file_states(settings) == {"deleted": 60}


def test_a_dry_run_is_not_refused_and_says_the_real_scan_would_be(settings, library, indexed):
    paths = indexed(60)
    before = snapshot(settings)
    delete(paths, 60)

    summary = scan_library(settings, library, dry_run=True, now=NOW + 1)

    assert summary.deleted == 60
    assert summary.refused == "the library folder has no files, so 60 of 60 catalogued files " \
                              "would be marked deleted"
    assert any("real scan would be refused" in w and "--allow-mass-delete" in w
               for w in summary.warnings)
    assert snapshot(settings) == before


def test_config_toml_and_variables_set_the_limits(settings, library, indexed, home, monkeypatch):
    paths = indexed(100)
    delete(paths, 3)
    (home / "config.toml").write_text("max_delete = 2\n", encoding="utf-8")

    with pytest.raises(MassDeleteRefused, match="3 of 100 .*limit: 2 files or 20 %"):
        scan_library(Settings.load(home), library, now=NOW + 1)

    monkeypatch.setenv("OBJLIB_MAX_DELETE", "1000")
    monkeypatch.setenv("OBJLIB_MAX_DELETE_PERCENT", "2.5")
    with pytest.raises(MassDeleteRefused, match="limit: 1000 files or 2.5 %"):
        delete(paths[3:], 8)  # 11 of 100: above the floor and 2.5 %
        scan_library(Settings.load(home), library, now=NOW + 1)

    monkeypatch.setenv("OBJLIB_MAX_DELETE_PERCENT", "100")
    assert scan_library(Settings.load(home), library, now=NOW + 1).deleted == 11


# ---------------------------------------------------------------------------- the command


def test_the_command_refuses_with_a_clear_message_and_exit_1(settings, library, indexed):
    paths = indexed(60)
    before = snapshot(settings)
    delete(paths, 60)

    result = run("scan", str(library))

    assert result.exit_code == 1
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    text = " ".join(result.output.split())
    assert "scan refused: the library folder has no files, so 60 of 60 catalogued files " \
           "would be marked deleted" in text
    assert "Is the library's drive mounted?" in text
    assert f"objlib scan {library} --allow-mass-delete (or --max-delete 60)" in text
    assert "Nothing was recorded." in text
    assert snapshot(settings) == before


def test_allow_mass_delete_accepts_an_empty_library(settings, library, indexed):
    paths = indexed(60)
    delete(paths, 60)

    result = run("scan", str(library), "--allow-mass-delete")

    assert result.exit_code == 0, result.output
    assert file_states(settings) == {"deleted": 60}


def test_max_delete_n_accepts_up_to_n_deletions(settings, library, indexed):
    paths = indexed(60)
    delete(paths, 30)

    refused = run("scan", str(library), "--max-delete", "29")
    accepted = run("scan", str(library), "--max-delete", "30")

    assert refused.exit_code == 1 and "30 of 60" in refused.output
    assert "limit: 29 files" in " ".join(refused.output.split())
    assert accepted.exit_code == 0, accepted.output
    assert file_states(settings) == {"indexed": 30, "deleted": 30}


def test_the_two_confirmations_do_not_go_together(settings, library):
    result = run("scan", str(library), "--allow-mass-delete", "--max-delete", "3")
    assert result.exit_code == 2 and "does not go with" in result.output


def test_the_command_dry_run_reports_the_deletions_and_exits_0(settings, library, indexed):
    paths = indexed(60)
    before = snapshot(settings)
    delete(paths, 60)

    result = run("scan", str(library), "--dry-run")

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert re.search(r"│ deleted +│ +60 │", result.output), result.output
    assert "warning: the real scan would be refused" in text
    assert snapshot(settings) == before


@pytest.mark.parametrize("name", ["", "   "])
def test_an_empty_library_name_is_refused_not_taken_for_the_current_folder(
        settings, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("would be scanned\n", encoding="utf-8")

    with pytest.raises(LibraryError, match="library folder name is empty"):
        check_root(name)
    result = run("scan", name)

    assert result.exit_code == 1 and "library folder name is empty" in result.output
    assert not settings.library_db.exists()


# ---------------------------------------------------------------------------- end to end


def objlib(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "objlib", *args], capture_output=True,
                          text=True, env=dict(os.environ), timeout=timeout_s)


@pytest.mark.slow
def test_an_unmounted_library_leaves_every_document_in_the_store(settings, library, emulator):
    # Given a library of 12 files indexed by `objlib upload`
    write_library(library, 12)
    assert objlib("scan", str(library)).returncode == 0
    first = objlib("upload", "-n", "4")
    assert first.returncode == 0, first.stdout + first.stderr
    assert file_states(settings) == {"indexed": 12} and len(documents(emulator)) == 12
    # When its drive is not mounted: the folder is there, empty
    shutil.rmtree(library)
    library.mkdir()
    scan = objlib("scan", str(library))
    # Then the scan is refused, and a later upload deletes nothing
    assert scan.returncode == 1
    assert "scan refused" in scan.stderr and "Traceback" not in scan.stderr
    second = objlib("upload", "-n", "4")
    assert second.returncode == 0, second.stdout + second.stderr
    assert file_states(settings) == {"indexed": 12}
    assert len(documents(emulator)) == 12
    assert emulator.stats()["requests"].get("documents.delete", 0) == 0
