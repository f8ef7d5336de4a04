"""``objlib upload``: the whole job in one foreground command. Given a scanned library and the
emulator, when ``objlib upload`` runs as a real process (to the end, interrupted once, twice,
or next to a running consumer), then every file ends indexed with exactly one document, and a
second run finishes what the first left. The run records themselves are tested in-process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from objlib import runs
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.cli import cli
from objlib.scan import scan_library
from objlib.views.status import latest_run_line
from tests.support.catalogue import file_states
from tests.support.disk import write_library
from tests.support.store import assert_converged
from tests.support.waits import wait_for

ANSI = re.compile(r"\x1b\[")


def scanned(settings, library, count: int) -> None:
    write_library(library, count)
    assert scan_library(settings, library).new == count


class Upload:
    """``objlib upload`` as a real process, output captured to a file (not a terminal)."""

    def __init__(self, tmp_path, home, *args: str, name: str = "upload"):
        self.out = tmp_path / f"{name}.out"
        self._out = open(self.out, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "objlib", "upload", *args],
                                     env={**os.environ, "OBJLIB_HOME": str(home)},
                                     stdout=self._out, stderr=subprocess.STDOUT)

    def wait(self, timeout_s: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._out.close()

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()


@pytest.fixture
def upload(tmp_path, home, emulator):
    started: list[Upload] = []

    def start(*args: str) -> Upload:
        u = Upload(tmp_path, home, *args, name=f"upload-{len(started)}")
        started.append(u)
        return u

    yield start
    for u in started:
        u.kill()


def imports(emu) -> int:
    return emu.stats()["requests"].get("stores.importFile", 0)


def all_runs(settings) -> list[dict]:
    catalog = open_catalog(settings)
    try:
        return [runs.get_run(catalog, r["id"]) for r in catalog.query("SELECT id FROM runs")]
    finally:
        catalog.close()


# ---------------------------------------------------------------------------- real processes


@pytest.mark.slow
def test_a_foreground_run_of_100_files_indexes_all_of_them_with_readable_plain_output(
        settings, library, emulator, upload):
    scanned(settings, library, 100)
    run = upload()
    assert run.wait() == 0, run.output()
    assert file_states(settings) == {"indexed": 100}
    assert_converged(settings, emulator)
    assert imports(emulator) == 100
    # the run is recorded, closed, with its figures
    [record] = all_runs(settings)
    assert (record["outcome"], record["total"], record["indexed"], record["failed"]) == \
        ("done", 100, 100, 0)
    assert record["finished_at"] >= record["started_at"]
    # without a terminal: plain lines (no control sequences), then the summary panel
    out = run.output()
    assert not ANSI.search(out), out
    assert re.search(r"run 1: 100/100 done \(100\.0%\), 100 indexed, 0 failed \| batch 1/1", out)
    assert "breaker closed" in out
    assert re.search(r"objlib upload · run 1 · done", out)
    for label in ("indexed", "failed", "skipped", "retried", "rate-limited", "duration",
                  "files/s"):
        assert re.search(rf"│ {label} +\S+", out), label


@pytest.mark.slow
@pytest.mark.parametrize("presses", [1, 2], ids=["sigint-once", "sigint-twice"])
def test_an_interrupted_run_resumed_by_a_second_one_indexes_every_file_exactly_once(
        presses, settings, library, emulator, upload):
    # Given uploads slow enough for the interruption to land mid-run, and imports slow
    # enough (0.3 s on the lane) for the second Ctrl+C to land while the first one's stop
    # waits for the steps in flight
    emulator.configure(latency={"upload": 0.05, "index": 0.2, "import": 0.3})
    scanned(settings, library, 100)
    first = upload()
    wait_for(lambda: file_states(settings).get("indexed", 0) >= 10, 30, 0.02, "some progress")
    # When Ctrl+C comes once (graceful) or twice (at once)
    for _ in range(presses):
        first.proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    assert first.wait(45) == 130, first.output()
    states = file_states(settings)
    assert 10 <= states.get("indexed", 0) < 100, states
    print(f"after {presses} Ctrl+C: {states}")
    left = 100 - states["indexed"]
    expected = "interrupted" if presses == 1 else "aborted"
    assert f"run 1 · {expected}" in first.output()
    unfinished = re.search(r"not finished +(\d+)\b", first.output())
    assert unfinished, first.output()
    if presses == 1:  # graceful: the steps in flight finished before the summary
        assert int(unfinished[1]) == left, first.output()
    else:  # at once: a worker thread may still record an import after the summary was read
        assert left <= int(unfinished[1]) <= left + 7, first.output()
    # Then a second run continues where it stopped, never touching an indexed file again
    second = upload()
    assert second.wait() == 0, second.output()
    assert file_states(settings) == {"indexed": 100}
    assert_converged(settings, emulator)
    one, two = all_runs(settings)
    assert (one["outcome"], two["outcome"]) == (expected, "done")
    assert two["total"] == left and two["indexed"] == left
    if presses == 1:  # nothing was cut off mid-import: no import was ever repeated
        assert imports(emulator) == 100


@pytest.mark.slow
def test_alongside_a_running_consumer_there_is_no_double_work(settings, library, emulator,
                                                             consumers, upload, tmp_path):
    emulator.configure(latency={"upload": 0.05})
    scanned(settings, library, 100)
    consumer = consumers(workers=3)
    run = upload("-n", "4")
    assert run.wait() == 0, run.output()
    assert file_states(settings) == {"indexed": 100}
    assert imports(emulator) == 100
    assert_converged(settings, emulator)
    # both took part: the consumer's log and the run's log each started imports
    run_log = (settings.home / "logs" / "upload.log").read_text()
    assert "import started" in run_log and "import started" in consumer.log()


# ---------------------------------------------------------------------------- --dry-run


def test_dry_run_counts_and_lists_the_first_20_and_changes_nothing(settings, library, emulator):
    scanned(settings, library, 30)
    catalog = open_catalog(settings)
    before = [tuple(r) for r in catalog.query("SELECT * FROM files ORDER BY id")]
    history = catalog.query("SELECT COUNT(*) FROM history")[0][0]
    result = CliRunner().invoke(cli, ["upload", "--dry-run", "--store", "elsewhere"])
    assert result.exit_code == 0, result.output
    assert "would upload 30 file(s) to elsewhere (created on the first real run)" in result.output
    listed = re.findall(r"Notes/note (\d{4})\.txt", result.output)
    assert listed == [f"{i:04d}" for i in range(20)]
    assert "2,000" in result.output and "minimal" in result.output
    # nothing changed: rows, history, no run, no store, no request, no queue
    assert [tuple(r) for r in catalog.query("SELECT * FROM files ORDER BY id")] == before
    assert catalog.query("SELECT COUNT(*) FROM history")[0][0] == history
    assert catalog.query("SELECT COUNT(*) FROM runs")[0][0] == 0
    assert catalog.get_meta("store") is None
    assert emulator.stats()["total_requests"] == 0
    assert not settings.queue_db.exists()


def test_upload_without_a_catalogue_says_to_scan_first(settings):
    result = CliRunner().invoke(cli, ["upload", "--dry-run"])
    assert result.exit_code == 1
    assert "objlib scan" in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------------------- run records


@pytest.fixture
def catalog(settings):
    catalog = open_catalog(settings)
    yield catalog
    catalog.close()


def _rows(catalog, count: int, now: float = 1000.0) -> list[int]:
    files = [lc.NewFile(path=f"f{i}.txt", size=10, mtime_ns=1, content_hash=f"h{i}",
                        metadata={}, quality="none") for i in range(count)]
    lc.record_new_many(catalog, files, now)
    return [r["id"] for r in catalog.query("SELECT id FROM files ORDER BY id")]


def test_in_flight_rows_read_as_the_step_they_are_at():
    assert runs.step_of("uploading", None, None) == "uploading"
    assert runs.step_of("uploading", "files/abc", None) == "waiting ACTIVE"
    assert runs.step_of("uploading", "files/abc", 12.0) == "importing"
    assert runs.step_of("importing", "files/abc", 12.0) == "indexing"


def test_work_to_do_puts_rows_in_flight_first_then_pending_rows_in_id_order(catalog):
    ids = _rows(catalog, 5)
    lc.mark_queued(catalog, ids[3], 1, "t3", now=1002.0)
    lc.mark_queued(catalog, ids[2], 1, "t2", now=1003.0)
    with catalog.write() as conn:  # a pending row that was queued once (an earlier version)
        conn.execute("UPDATE files SET queued_at=999 WHERE id=?", (ids[4],))
    assert runs.work_to_do(catalog) == [(ids[3], 1), (ids[2], 1), (ids[0], 1), (ids[1], 1),
                                        (ids[4], 1)]


def test_progress_counts_the_current_batch_and_what_left_the_run(catalog):
    # Given a run of 5 files in batches of 2
    ids = _rows(catalog, 5)
    for i in ids:
        lc.mark_queued(catalog, i, 1, f"t{i}", now=1001.0)
    run_id = runs.start(catalog, [(i, 1) for i in ids], now=1002.0, owner="nohost:1")
    # When the first two are done (one indexed, one failed) and the third is uploading,
    lc.claim(catalog, ids[0], 1, f"t{ids[0]}", 1003.0, 60, "h:1")
    lc.record_operation(catalog, ids[0], 1, f"t{ids[0]}", "op", 1003.0, 2000.0, 60)
    lc.mark_indexed(catalog, ids[0], 1, "doc0", 1004.0)
    lc.mark_failed(catalog, ids[1], 1, "permanent", "bad", 1004.0)
    lc.claim(catalog, ids[2], 1, f"t{ids[2]}", 1005.0, 60, "h:1")
    # and the last one was changed on disk (a new version: not this run's any more)
    with catalog.write() as conn:
        conn.execute("UPDATE files SET version=2, state='pending' WHERE id=?", (ids[4],))
    p = runs.progress(catalog, run_id, batch_size=2)
    # Then
    assert (p.total, p.indexed, p.failed, p.queued, p.active, p.left_over) == (5, 1, 1, 1, 1, 1)
    assert (p.batch_index, p.batches, p.batch_total, p.batch_settled) == (1, 3, 2, 0)
    assert [(f.path, f.step) for f in p.in_flight] == [("f2.txt", "uploading")]
    assert not p.done


def test_finish_keeps_the_figures_and_retries_are_told_from_final_errors(catalog):
    ids = _rows(catalog, 2)
    for i in ids:
        lc.mark_queued(catalog, i, 1, f"t{i}", now=1001.0)
    run_id = runs.start(catalog, [(i, 1) for i in ids], now=1002.0)
    # one file met a 429 and two transient errors, then was indexed
    lc.record_attempt(catalog, ids[0], 1, "rate_limited", "429", 1003.0, rate_limited=True)
    lc.record_attempt(catalog, ids[0], 1, "transient", "503", 1004.0)
    lc.record_attempt(catalog, ids[0], 1, "transient", "503", 1005.0)
    # the other met one transient error, then failed for good (its last error is no retry)
    lc.record_attempt(catalog, ids[1], 1, "transient", "503", 1004.0)
    lc.record_attempt(catalog, ids[1], 1, "transient", "503", 1006.0)
    lc.mark_failed(catalog, ids[1], 1, "transient", "503", 1006.0)
    run = runs.finish(catalog, run_id, runs.INTERRUPTED, now=1012.0)
    assert (run["outcome"], run["failed"], run["open"]) == ("interrupted", 1, 1)
    assert (run["retried"], run["rate_limited"]) == (3, 1)
    assert run["duration_s"] == 10.0
    # a closed run stays as it was
    assert runs.finish(catalog, run_id, runs.DONE, now=1020.0)["outcome"] == "interrupted"


def test_latest_run_tells_a_live_run_from_one_whose_runner_died(catalog):
    assert runs.latest_run(catalog) is None
    ids = _rows(catalog, 1)
    runs.start(catalog, [(ids[0], 1)], now=1000.0, owner=f"{socket.gethostname()}:{os.getpid()}")
    live = runs.latest_run(catalog, now=1010.0)
    assert (live["outcome"], live["total"], live["open"], live["duration_s"]) == \
        ("running", 1, 0, 10.0)  # still pending: nobody enqueued it, so it is not open
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    runs.start(catalog, [(ids[0], 1)], now=1020.0, owner=f"{socket.gethostname()}:{dead}")
    latest = runs.latest_run(catalog, now=1030.0)
    assert (latest["id"], latest["outcome"]) == (2, "abandoned")
    assert latest_run_line(latest).startswith("run 2 (abandoned): 0/1 indexed (0.0%)")


def test_status_shows_the_latest_run_next_to_the_whole_library(catalog):
    ids = _rows(catalog, 4)
    for i in ids[:2]:
        lc.mark_queued(catalog, i, 1, f"t{i}", now=1001.0)
    run_id = runs.start(catalog, [(i, 1) for i in ids[:2]], now=1002.0)
    lc.mark_failed(catalog, ids[0], 1, "permanent", "bad", 1003.0)
    runs.finish(catalog, run_id, runs.INTERRUPTED, now=1004.0)
    result = CliRunner().invoke(cli, ["status"], terminal_width=140)
    assert result.exit_code == 0, result.output
    assert re.search(r"indexed .* 0 / 4 eligible", result.output), result.output
    assert re.search(r"run 1 .* 0 / 2 in the run\s+0\.0% interrupted", result.output)
