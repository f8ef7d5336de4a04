"""`objlib scan` on the command line, and the sample-library generator it is tried on."""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from objlib.cli import cli
from objlib.scan import scan_library

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_sample_library.py"


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("make_sample_library", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


# ---------------------------------------------------------------------------- the command


def test_scan_prints_a_summary_and_a_rescan_finds_nothing_new(tmp_path, settings, generator):
    lib = tmp_path / "library"
    generator.make_library(lib, 40, seed=3)

    first = run("scan", str(lib))
    second = run("scan", str(lib))

    assert first.exit_code == 0, first.output
    assert "new" in first.output and "content is image/png, not text" in first.output
    assert second.exit_code == 0, second.output
    assert "│ new" in second.output and "│     0 │" in second.output
    assert settings.library_db.exists()


def test_scan_dry_run_writes_no_catalogue(tmp_path, settings):
    lib = tmp_path / "library"
    lib.mkdir()
    (lib / "a.txt").write_text("text\n")

    result = run("scan", str(lib), "--dry-run")

    assert result.exit_code == 0, result.output
    assert "dry run: nothing written" in result.output
    assert not settings.library_db.exists()


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "does not exist"),
    (lambda p: (p.write_text("x"), p)[1], "is not a directory"),
])
def test_scan_of_a_missing_folder_or_a_file_fails_cleanly(tmp_path, make, message):
    target = make(tmp_path / "library")

    result = run("scan", str(target))

    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_scan_of_an_unreadable_folder_fails_cleanly(tmp_path, monkeypatch):
    lib = tmp_path / "library"
    lib.mkdir()
    if os.geteuid() != 0:
        lib.chmod(0)
    else:  # root lists anything: make listing this folder fail as chmod 000 would
        real_scandir = os.scandir
        monkeypatch.setattr(os, "scandir", lambda p=".": (_ for _ in ()).throw(
            PermissionError(errno.EACCES, "Permission denied", p))
            if os.fspath(p) == str(lib) else real_scandir(p))
    try:
        result = run("scan", str(lib))
    finally:
        lib.chmod(0o755)

    assert result.exit_code == 1
    assert "is not readable (permission denied)" in result.output


def test_scan_of_another_library_in_the_same_home_says_to_use_another_home(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    assert run("scan", str(tmp_path / "one")).exit_code == 0

    result = run("scan", str(tmp_path / "two"))

    assert result.exit_code == 1
    assert "belongs to the library" in result.output and "--home" in result.output


# ---------------------------------------------------------------------------- the generator


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def test_the_generator_is_deterministic(tmp_path, generator):
    generator.make_library(tmp_path / "a", 120, seed=5)
    generator.make_library(tmp_path / "b", 120, seed=5)
    generator.make_library(tmp_path / "c", 120, seed=6)

    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert _tree(tmp_path / "a") != _tree(tmp_path / "c")
    assert len(_tree(tmp_path / "a")) == 120


def test_the_generated_library_has_the_conventions_and_the_bad_inputs(tmp_path, settings,
                                                                     generator):
    lib = tmp_path / "library"
    paths = generator.make_library(lib, 300, seed=1)

    assert set(generator.BAD_INPUTS.values()) | set(generator.DOCUMENTS.values()) <= set(paths)
    books = [p for p in paths if p.startswith("Books/") and p.endswith(".txt")]
    assert len(books) == 1 and 1_000_000 <= (lib / books[0]).stat().st_size <= 3_100_000
    summary = scan_library(settings, lib)
    assert summary.skipped == {
        "empty file": 1, "content is image/png, not text": 1, "not valid UTF-8": 1,
        "content is a PDF document, not text (rename it .pdf)": 1,
        "content is text, not a PDF (rename it .txt)": 1,
        "truncated PDF: no %%EOF marker at its end": 1,
        "encrypted PDF: File Search cannot read a password-protected PDF; save a copy "
        "without encryption": 1,
        "content is text, not a DOCX (rename it .txt)": 1,
        "damaged DOCX: not a readable ZIP archive (File is not a zip file)": 1,
        "EPUB: not a type File Search indexes (application/epub+zip is not in its list)": 1}
    hidden_and_junk = 3  # .hidden note.txt, .obsidian/workspace.md, Thumbs.db
    assert summary.new == len(paths) - summary.skipped_total - hidden_and_junk
    assert summary.files == len(paths) - hidden_and_junk
    from objlib.catalog import open_catalog

    catalog = open_catalog(settings)
    qualities = {r[0] for r in catalog.query("SELECT metadata_quality FROM files")}
    catalog.close()
    assert {"complete", "minimal"} <= qualities


def test_the_generator_script_runs(tmp_path, generator):
    assert generator.main(["--files", "25", "--out", str(tmp_path / "lib"), "--seed", "2"]) == 0
    assert len(_tree(tmp_path / "lib")) == 25
