"""A worker reads only regular files, bounded, and streams the upload (issue 12, item 6).

Given a scanned library whose file is then swapped for something else (a FIFO, a symlink to
a huge file, a symlink out of the library, other content), when a worker uploads it, then
the row fails at once with its reason, nothing hangs, and nothing is read without bound. A
file rewritten while its bytes are on the wire leaves no raw file behind; a big file is
streamed in chunks, never held whole. The real SDK talks to the emulator over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from objlib import pipeline
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.enqueue import enqueue, ensure_store
from objlib.gemini import metadata as gm
from objlib.gemini.errors import Gone
from objlib.scan import scan_library
from objlib.settings import Settings
from objlib.throttle import Deferred
from tests.support.catalogue import file_states, queued
from tests.support.disk import write_library
from tests.support.waits import wait_for

MiB = 1 << 20


def build_ctx(settings: Settings) -> pipeline.Context:
    ctx = pipeline.build_context(settings)
    ensure_store(settings, ctx.catalog, ctx.gemini)
    return ctx


@pytest.fixture
def ctx(settings, library, emulator):
    write_library(library, 2)
    scan_library(settings, library)
    context = build_ctx(settings)
    yield context
    context.gemini.close()
    context.catalog.close()


def upload_step(ctx, row: lc.FileRow, task_id: str = "task-1"):
    """Run the upload step; a Deferred (raw file still PROCESSING) counts as done."""
    try:
        return pipeline.upload_and_import(ctx, row.id, row.version, task_id)
    except Deferred:
        return "deferred"


def failure(ctx, row: lc.FileRow) -> tuple[str, str, str]:
    row = lc.get(ctx.catalog, row.id)
    return row.state, row.error_class, row.error_message


def raw_file_exists(ctx, row: lc.FileRow) -> bool:
    try:
        ctx.gemini.get_file(gm.raw_file_id(row.content_hash))
    except Gone:
        return False
    return True


def swap_for_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def bytes_read_by_this_process() -> int:
    """Bytes passed to read(2)/pread(2) and the like so far (Linux's /proc/self/io rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


# ---------------------------------------------------------------------------- not a regular file


def test_a_fifo_swapped_in_after_the_scan_fails_at_once_with_its_reason(ctx, library):
    row = queued(ctx)
    fifo = library / row.path
    swap_for_fifo(fifo)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (upload_step(ctx, row), done.set()), daemon=True)
    worker.start()
    if not done.wait(10):
        # the worker is stuck in open(): a writer releases it, then the test fails
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("the worker blocked on a FIFO")
    state, error_class, message = failure(ctx, row)
    assert (state, error_class) == ("failed", "ineligible")
    assert "no longer a regular file" in message and "FIFO" in message
    assert "objlib scan" in message


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_fifo_fails_in_a_real_consumer_which_then_stops_on_a_signal(
        settings, library, emulator, consumers, sig):
    paths = write_library(library, 4)
    scan_library(settings, library)
    swap_for_fifo(paths[0])
    assert len(enqueue(settings).enqueued) == 4
    consumer = consumers(workers=2, extra_args=("-k", "thread", "-t", "60"))
    wait_for(lambda: file_states(settings) == {"failed": 1, "indexed": 3}, 60,
             what="the FIFO failed and the other files indexed")
    catalog = open_catalog(settings)
    try:
        failed = [dict(r) for r in catalog.query(
            "SELECT path, error_class, error_message FROM files WHERE state='failed'")]
    finally:
        catalog.close()
    assert failed[0]["path"] == "Notes/" + paths[0].name
    assert failed[0]["error_class"] == "ineligible" and "FIFO" in failed[0]["error_message"]
    started = time.monotonic()
    code = consumer.stop(sig, timeout_s=30)
    elapsed_s = time.monotonic() - started
    assert code != -signal.SIGKILL, "the consumer ignored the signal and had to be killed"
    assert elapsed_s < 15, f"stopping took {elapsed_s:.1f} s"


# ---------------------------------------------------------------------------- bounded


def test_a_symlink_to_a_huge_file_fails_as_too_large_without_reading_it(
        home, library, emulator):
    (home / "config.toml").write_text("max_file_bytes = 1048576\n")
    settings = Settings.load(home)
    write_library(library, 1)
    scan_library(settings, library)
    ctx = build_ctx(settings)
    try:
        row = queued(ctx)
        huge = library / "Notes" / "huge.txt"
        with open(huge, "wb") as f:
            f.truncate(10 << 30)  # 10 GB, sparse: nothing on disk, all of it readable
        (library / row.path).unlink()
        (library / row.path).symlink_to(huge)
        before = bytes_read_by_this_process()
        assert upload_step(ctx, row) is False
        read = bytes_read_by_this_process() - before
        state, error_class, message = failure(ctx, row)
    finally:
        ctx.gemini.close()
        ctx.catalog.close()
    assert (state, error_class) == ("failed", "ineligible")
    assert "too large: 10737418240 bytes > 1 MB" in message
    assert read < 10 * MiB, f"the worker read {read} bytes of a file it had to refuse"
    assert emulator.stats()["requests"].get("upload.start", 0) == 0


def test_a_symlink_escaping_the_root_fails_even_with_the_same_content(ctx, library, tmp_path,
                                                                        emulator):
    row = queued(ctx)
    inside = library / row.path
    outside = tmp_path / "elsewhere.txt"
    outside.write_bytes(inside.read_bytes())  # same bytes: only the symlink rule refuses it
    inside.unlink()
    inside.symlink_to(outside)
    assert upload_step(ctx, row) is False
    state, error_class, message = failure(ctx, row)
    assert (state, error_class) == ("failed", "ineligible")
    assert "outside the library" in message
    assert emulator.stats()["requests"].get("upload.start", 0) == 0


def test_a_symlink_that_stays_inside_the_root_is_uploaded(ctx, library, emulator):
    row = queued(ctx)
    inside = library / row.path
    moved = library / "Notes" / "moved.txt"
    inside.rename(moved)
    inside.symlink_to(moved)
    assert upload_step(ctx, row) in (True, "deferred")
    assert lc.get(ctx.catalog, row.id).remote_file is not None


# ---------------------------------------------------------------------------- content checks


def test_a_file_changed_between_the_scan_and_the_upload_fails_changed(ctx, library, emulator):
    row = queued(ctx)
    path = library / row.path
    data = path.read_bytes()
    path.write_bytes(data[:-1] + (b"X" if data[-1:] != b"X" else b"Y"))  # same size
    assert upload_step(ctx, row) is False
    state, error_class, message = failure(ctx, row)
    assert (state, error_class) == ("failed", "changed")
    assert "changed since the scan" in message and "objlib scan" in message
    assert emulator.stats()["requests"].get("upload.start", 0) == 0


def big_text(size: int) -> bytes:
    line = b"Lesson text: the quick brown fox jumps over the lazy dog, again and again.\n"
    return (line * (size // len(line) + 1))[:size]


@pytest.fixture
def big_file_ctx(settings, library, emulator):
    """A scanned 20 MiB file: the SDK sends it in three chunks."""
    (library / "Big").mkdir()
    (library / "Big" / "big.txt").write_bytes(big_text(20 * MiB))
    scan_library(settings, library)
    context = build_ctx(settings)
    yield context
    context.gemini.close()
    context.catalog.close()


def between_chunks(emulator, monkeypatch, action) -> None:
    """Run ``action`` once, after the emulator took the first chunk and before the SDK reads
    the next (it waits for each chunk's answer)."""
    real = emulator.state.append_chunk
    chunks = []

    def append_chunk(upload_id, offset, data):
        received = real(upload_id, offset, data)
        chunks.append(len(data))
        if len(chunks) == 1:
            action()
        return received

    monkeypatch.setattr(emulator.state, "append_chunk", append_chunk)


def test_a_file_rewritten_during_the_upload_leaves_no_raw_file_and_fails_changed(
        big_file_ctx, library, emulator, monkeypatch):
    ctx = big_file_ctx
    row = queued(ctx)
    path = library / row.path

    def rewrite_the_last_chunk_in_place():  # same size, same inode: fstat cannot tell
        with open(path, "r+b") as f:
            f.seek(-5, os.SEEK_END)
            f.write(b"EDIT\n")

    between_chunks(emulator, monkeypatch, rewrite_the_last_chunk_in_place)
    assert upload_step(ctx, row) is False
    state, error_class, message = failure(ctx, row)
    assert (state, error_class) == ("failed", "changed")
    assert "while it was uploaded" in message
    assert emulator.stats()["requests"].get("upload.start") == 1, "the upload was not made"
    assert not raw_file_exists(ctx, row)
    assert lc.get(ctx.catalog, row.id).remote_file is None


def test_a_file_truncated_during_the_upload_leaves_no_raw_file_and_fails_changed(
        big_file_ctx, library, emulator, monkeypatch):
    ctx = big_file_ctx
    row = queued(ctx)
    path = library / row.path
    between_chunks(emulator, monkeypatch, lambda: os.truncate(path, 9 * MiB))
    assert upload_step(ctx, row) is False
    state, error_class, message = failure(ctx, row)
    assert (state, error_class) == ("failed", "changed")
    assert "shrank" in message
    assert not raw_file_exists(ctx, row)


def test_an_untouched_big_file_is_streamed_whole_and_verified(big_file_ctx, emulator):
    ctx = big_file_ctx
    row = queued(ctx)
    assert upload_step(ctx, row) in (True, "deferred")
    raw = emulator.state.files[gm.raw_file_id(row.content_hash)]
    assert (raw.size_bytes, raw.sha256_hex) == (row.size, row.content_hash)


# ---------------------------------------------------------------------------- memory


_CHILD = """
import json, sys, tracemalloc
from objlib import pipeline
from objlib.settings import Settings
from objlib.throttle import Deferred

ctx = pipeline.build_context(Settings.load())
ctx.gemini.get_store(ctx.store)  # the SDK client is built before measuring
file_id, version = int(sys.argv[1]), int(sys.argv[2])
tracemalloc.start()
try:
    outcome = pipeline.upload_and_import(ctx, file_id, version, "task-1")
except Deferred:
    outcome = "deferred"
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"outcome": outcome, "peak_bytes": peak}))
"""


def test_uploading_a_64_mib_file_keeps_the_worker_peak_well_below_its_size(
        settings, library, emulator):
    size = 64 * MiB
    (library / "Big").mkdir()
    (library / "Big" / "big.txt").write_bytes(big_text(size))
    scan_library(settings, library)
    emulator.configure(latency={"activate": 600.0})  # the step ends after the upload
    ctx = build_ctx(settings)
    try:
        row = queued(ctx)
    finally:
        ctx.gemini.close()
        ctx.catalog.close()
    # the uploading worker is a process of its own: the emulator (in this process) and the
    # test's own buffers are not counted
    child = subprocess.run([sys.executable, "-c", _CHILD, str(row.id), str(row.version)],
                           env={**os.environ, "OBJLIB_HOME": str(settings.home)},
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    assert measured["outcome"] == "deferred"
    raw = emulator.state.files[gm.raw_file_id(row.content_hash)]
    assert (raw.size_bytes, raw.sha256_hex) == (size, row.content_hash)
    # every buffer the upload allocates is a Python object that tracemalloc counts (the
    # child's ru_maxrss is no measure: it inherits the forking test process's high-water
    # mark). A whole-file read holds the 64 MiB and more (84 MB was measured before the
    # fix); streaming holds an 8 MiB chunk and a copy of it (17 MB).
    assert measured["peak_bytes"] < size // 3, measured
