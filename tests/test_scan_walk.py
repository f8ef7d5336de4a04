"""Walking and eligibility: what is ignored, followed, skipped (with which reason), read."""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3

import pytest

from objlib.scan import scan_library, walk
from objlib.scan.walk import CHUNK_BYTES, VANISHED, read_content
from objlib.settings import Settings

TEXT = "Lesson text about induction and concepts.\n"


def put(root, rel: str, data: bytes | str = TEXT):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def catalogue(settings) -> dict[str, dict]:
    """path -> row, read straight from the SQLite file."""
    with sqlite3.connect(settings.library_db) as conn:
        conn.row_factory = sqlite3.Row
        return {r["path"]: dict(r) for r in conn.execute("SELECT * FROM files")}


@pytest.fixture
def lib(tmp_path):
    root = tmp_path / "library"
    root.mkdir()
    return root


def reason(settings, lib, rel):
    scan_library(settings, lib)
    row = catalogue(settings)[rel]
    assert row["state"] == "skipped"
    return row["skip_reason"]


# ---------------------------------------------------------------------------- skip reasons


def test_txt_and_md_files_are_recorded_pending_with_their_hash(settings, lib):
    put(lib, "a.txt", "alpha\n")
    put(lib, "Notes/b.md", "# beta\n")

    summary = scan_library(settings, lib)

    rows = catalogue(settings)
    assert summary.new == 2
    assert {p: r["state"] for p, r in rows.items()} == {"a.txt": "pending", "Notes/b.md": "pending"}
    assert rows["a.txt"]["content_hash"] == hashlib.sha256(b"alpha\n").hexdigest()


def test_an_unsupported_extension_is_skipped_with_its_extension(settings, lib):
    put(lib, "Books/cover.PNG", b"\x89PNG\r\n\x1a\n")
    put(lib, "README", "no extension")

    scan_library(settings, lib)

    rows = catalogue(settings)
    assert rows["Books/cover.PNG"]["skip_reason"] == "unsupported extension .png"
    assert rows["README"]["skip_reason"] == "no file extension"


def test_extensions_come_from_config_toml(home, lib):
    (home / "config.toml").write_text('extensions = ["rst", ".TXT"]\n')
    put(lib, "a.rst")
    put(lib, "b.txt")
    put(lib, "c.md")

    scan_library(Settings.load(home), lib)

    rows = catalogue(Settings.load(home))
    assert rows["a.rst"]["state"] == rows["b.txt"]["state"] == "pending"
    assert rows["c.md"]["skip_reason"] == "unsupported extension .md"


def test_an_empty_file_is_skipped(settings, lib):
    put(lib, "empty.txt", b"")
    assert reason(settings, lib, "empty.txt") == "empty file"


def test_a_file_over_max_file_bytes_is_skipped_with_its_size(home, lib):
    (home / "config.toml").write_text("max_file_bytes = 1048576\n")
    put(lib, "big.txt", "x" * (1024 * 1024 + 1))
    put(lib, "fits.txt", "x" * (1024 * 1024))

    settings = Settings.load(home)
    assert reason(settings, lib, "big.txt") == "too large: 1048577 bytes > 1 MB"
    assert catalogue(settings)["fits.txt"]["state"] == "pending"


def test_a_tiny_max_file_bytes_override_is_reported_in_bytes(home, lib):
    put(lib, "a.txt", "twelve bytes")
    assert reason(Settings.load(home, max_file_bytes=10), lib, "a.txt") == (
        "too large: 12 bytes > 10 bytes")


def test_a_file_with_a_nul_byte_is_binary(settings, lib):
    put(lib, "data.txt", b"\x01\x02\x00\x00 no known signature")
    assert reason(settings, lib, "data.txt") == "binary file"


def test_binary_content_of_a_known_type_is_named_in_the_reason(settings, lib):
    put(lib, "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert reason(settings, lib, "image.txt") == "content is image/png, not text"


def test_a_latin1_file_is_not_valid_utf8(settings, lib):
    put(lib, "letter.txt", "déjà vu\n".encode("latin-1"))
    assert reason(settings, lib, "letter.txt") == "not valid UTF-8"


def test_a_file_ending_inside_a_multibyte_character_is_not_valid_utf8(settings, lib):
    put(lib, "cut.txt", "café".encode()[:-1])
    assert reason(settings, lib, "cut.txt") == "not valid UTF-8"


def test_a_character_split_across_read_chunks_and_a_bom_are_fine(settings, lib):
    # "é" is two bytes: the first ends chunk 1, the second starts chunk 2
    data = b"\xef\xbb\xbf" + b"a" * (CHUNK_BYTES - 4) + "é".encode() + b" and more\n"
    assert data[CHUNK_BYTES - 1:CHUNK_BYTES + 1] == "é".encode()
    put(lib, "long.txt", data)

    scan_library(settings, lib)

    row = catalogue(settings)["long.txt"]
    assert row["state"] == "pending"
    assert row["content_hash"] == hashlib.sha256(data).hexdigest()


def test_an_unreadable_file_is_skipped_not_a_crash(settings, lib, monkeypatch):
    path = put(lib, "secret.txt")
    if os.geteuid() != 0:
        path.chmod(0)
    else:
        # root reads anything: make opening this one path fail the way chmod 000 would
        real_open = walk._open_fd

        def deny(p):
            if p == str(path):
                raise PermissionError(errno.EACCES, "Permission denied", p)
            return real_open(p)

        monkeypatch.setattr(walk, "_open_fd", deny)
    try:
        assert reason(settings, lib, "secret.txt") == "unreadable: permission denied"
    finally:
        path.chmod(0o644)


def test_an_unreadable_file_is_tried_again_on_the_next_scan(settings, lib, monkeypatch):
    put(lib, "secret.txt")
    monkeypatch.setattr(walk, "_open_fd", lambda p: (_ for _ in ()).throw(PermissionError(
        errno.EACCES, "Permission denied", p)))
    scan_library(settings, lib)
    monkeypatch.undo()

    summary = scan_library(settings, lib)

    assert summary.changed == 1
    assert catalogue(settings)["secret.txt"]["state"] == "pending"


def test_a_fifo_is_not_a_regular_file_and_does_not_hang(settings, lib):
    os.mkfifo(lib / "pipe.txt")
    assert reason(settings, lib, "pipe.txt") == "not a regular file"


def test_read_content_of_a_missing_file_is_vanished():
    assert read_content("/nonexistent/objlib/file.txt", 100) is VANISHED


def test_a_file_that_vanishes_between_listing_and_reading_is_not_recorded(settings, lib,
                                                                          monkeypatch):
    put(lib, "stays.txt")
    gone = put(lib, "goes.txt", "other text\n")
    real_read = walk.read_content

    def read_after_delete(path, max_bytes):
        if path == str(gone):
            gone.unlink(missing_ok=True)
        return real_read(path, max_bytes)

    monkeypatch.setattr("objlib.scan.scanner.read_content", read_after_delete)
    summary = scan_library(settings, lib, hash_workers=1)

    assert set(catalogue(settings)) == {"stays.txt"}
    assert summary.new == 1


# ---------------------------------------------------------------------------- what is walked


def test_hidden_and_junk_names_are_not_even_recorded(settings, lib):
    put(lib, "a.txt")
    for rel in (".hidden.txt", ".obsidian/workspace.md", "Notes/.DS_Store", "Thumbs.db",
                "Course/desktop.ini", "__pycache__/x.txt", "Notes/~$draft.md"):
        put(lib, rel)

    summary = scan_library(settings, lib)

    assert set(catalogue(settings)) == {"a.txt"}
    assert summary.files == 1


def test_a_name_that_is_not_utf8_is_a_warning_not_a_row(settings, lib):
    put(lib, "a.txt")
    with open(os.path.join(os.fsencode(lib), b"bad\xff name.txt"), "wb") as f:
        f.write(b"text\n")

    summary = scan_library(settings, lib)

    assert set(catalogue(settings)) == {"a.txt"}
    assert any("not valid UTF-8" in w for w in summary.warnings)


def test_symlinks_inside_the_library_are_followed(settings, lib):
    put(lib, "Courses/Logic/Logic - Lesson 1 - Intro.txt")
    (lib / "link.txt").symlink_to(lib / "Courses/Logic/Logic - Lesson 1 - Intro.txt")
    (lib / "Shortcut").symlink_to(lib / "Courses", target_is_directory=True)

    scan_library(settings, lib)

    rows = catalogue(settings)
    assert rows["link.txt"]["state"] == "pending"
    assert rows["Shortcut/Logic/Logic - Lesson 1 - Intro.txt"]["state"] == "pending"
    assert len({r["content_hash"] for r in rows.values()}) == 1


def test_a_symlink_escaping_the_library_is_skipped_with_a_reason(settings, lib, tmp_path):
    outside = tmp_path / "outside"
    put(outside, "private.txt")
    (lib / "escape.txt").symlink_to(outside / "private.txt")
    (lib / "EscapeDir").symlink_to(outside, target_is_directory=True)

    scan_library(settings, lib)

    rows = catalogue(settings)
    assert rows["escape.txt"]["skip_reason"] == "symlink outside library"
    assert rows["EscapeDir"]["skip_reason"] == "symlink outside library"
    assert not any("private" in p for p in rows)


def test_a_symlink_loop_is_detected_and_recorded(settings, lib):
    put(lib, "A/a.txt")
    (lib / "A" / "up").symlink_to(lib, target_is_directory=True)
    (lib / "A" / "self").symlink_to(lib / "A", target_is_directory=True)
    (lib / "dangling.txt").symlink_to(lib / "missing.txt")
    (lib / "ping.txt").symlink_to(lib / "pong.txt")
    (lib / "pong.txt").symlink_to(lib / "ping.txt")

    scan_library(settings, lib)

    rows = catalogue(settings)
    assert rows["A/up"]["skip_reason"] == rows["A/self"]["skip_reason"] == "symlink loop"
    assert rows["ping.txt"]["skip_reason"] == rows["pong.txt"]["skip_reason"] == "symlink loop"
    assert rows["dangling.txt"]["skip_reason"] == "broken symlink"
    assert [p for p, r in rows.items() if r["state"] == "pending"] == ["A/a.txt"]


def test_rows_below_a_folder_that_cannot_be_listed_are_not_deleted(settings, lib, monkeypatch):
    put(lib, "Locked/a.txt")
    put(lib, "b.txt")
    scan_library(settings, lib)
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(lib / "Locked"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # chmod 000 does not stop root
    summary = scan_library(settings, lib)

    assert summary.deleted == 0
    assert catalogue(settings)["Locked/a.txt"]["state"] == "pending"
    assert summary.warnings == ["cannot list Locked: Permission denied"]
