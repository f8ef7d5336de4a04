"""The durable queue end to end: real huey_consumer processes, the real SDK over HTTP against
the emulator, real SQLite files. Given a scanned library, when workers run (and are killed,
interrupted, doubled, faulted), then every file ends indexed exactly once or failed with a
reason, and nothing is left in flight."""

from __future__ import annotations

import collections
import os
import random
import signal
import time

import pytest

from objlib.catalog import open_catalog
from objlib.enqueue import enqueue, queue_depth
from objlib.scan import scan_library
from tests.support.catalogue import file_states
from tests.support.disk import write_library
from tests.support.store import assert_converged
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow


def settle(settings, total: int, timeout_s: float = 120.0) -> dict:
    """Wait until every eligible row is indexed or failed; show why any failed."""
    def done():
        states = file_states(settings)
        finished = states.get("indexed", 0) + states.get("failed", 0)
        return states if finished == total else None
    states = wait_for(done, timeout_s, 0.2, f"{total} files indexed or failed")
    catalog = open_catalog(settings)
    for row in catalog.query("SELECT path, error_class, error_message FROM files "
                             "WHERE state='failed'"):
        print("failed:", dict(row))
    return states


def scanned(settings, library, count: int, **kw) -> int:
    write_library(library, count, **kw)
    summary = scan_library(settings, library)
    assert summary.new == count
    return count


def test_200_files_reach_indexed_with_exactly_one_document_each(settings, library, emulator,
                                                                consumers):
    total = scanned(settings, library, 200)
    assert len(enqueue(settings).enqueued) == 200
    consumers(workers=7)
    states = settle(settings, total)
    assert states == {"indexed": 200}
    assert_converged(settings, emulator)
    wait_for(lambda: queue_depth(settings) == (0, 0), 10, what="an empty queue")


def test_a_clean_run_costs_two_tasks_and_four_calls_per_file(settings, library, emulator,
                                                              consumers):
    # Given 20 new files and a service that answers a text upload ACTIVE at once
    total = scanned(settings, library, 20)
    enqueue(settings)
    before = emulator.stats()["requests"]  # the enqueue's store lookup
    # When a real consumer indexes them
    consumer = consumers(workers=7, extra_args=("-s", "1"))
    assert settle(settings, total) == {"indexed": 20}
    # Then each file cost an upload (start + one chunk), one importFile and one
    # operations.get, nothing else: no files.get before the upload, no second look
    calls = collections.Counter(emulator.stats()["requests"])
    calls.subtract(before)
    assert +calls == {"upload.start": 20, "upload.chunk": 20, "stores.importFile": 20,
                      "operations.get": 20}
    # and two task runs: upload_and_import, then the poll, due when the import is expected
    # done (a poll that only waits is never run)
    consumer.stop()
    runs = collections.Counter(
        line.split("Executing objlib.tasks.", 1)[1].split(":", 1)[0]
        for line in consumer.log().splitlines() if "Executing objlib.tasks." in line)
    assert runs["upload_and_import"] == 20 and runs["poll_import"] == 20, runs


def test_process_workers_work_too(settings, library, emulator, consumers):
    total = scanned(settings, library, 30)
    enqueue(settings)
    consumers(workers=4, extra_args=("-k", "process"))
    assert settle(settings, total) == {"indexed": 30}
    assert_converged(settings, emulator)


def test_with_faults_every_file_ends_indexed_or_failed_with_a_reason(settings, library, emulator,
                                                                      consumers, monkeypatch):
    # Given an API that answers 429, 503 and the transient 400, and sometimes never finishes
    # (429s at 5 %: scattered 429s at 10 % or more can look like a quota to the adaptive
    # pace, which then takes minutes to rise again — see throttle.py)
    emulator.configure(faults={"rate_limit": 0.05, "unavailable": 0.1, "create_failed": 0.1,
                               "never_done": 0.05})
    env = {"OBJLIB_BACKOFF_BASE_S": "0.2", "OBJLIB_POLL_TIMEOUT_S": "3",
           "OBJLIB_MAX_ATTEMPTS": "12"}
    total = scanned(settings, library, 80)
    enqueue(settings)
    consumers(workers=7, env=env)
    states = settle(settings, total, timeout_s=180)
    # Then none is stuck, every failure has a class and a message, and no document is doubled
    assert set(states) <= {"indexed", "failed"}
    catalog = open_catalog(settings)
    for row in catalog.query("SELECT path, error_class, error_message FROM files "
                             "WHERE state='failed'"):
        assert row["error_class"] and row["error_message"], dict(row)
    assert states.get("indexed", 0) >= 70
    stats = emulator.stats()
    assert stats["faults"], "the faults were not injected"
    assert_converged(settings, emulator)
    # the never-done operations were decided from the document itself
    errors = {r[0] for r in catalog.query("SELECT DISTINCT error_class FROM errors")}
    assert errors & {"rate_limited", "transient"}


@pytest.mark.parametrize("kill", ["sigkill", "sigterm", "sigint"])
def test_a_consumer_stopped_mid_run_resumes_and_indexes_every_file_once(
        kill, settings, library, emulator, consumers):
    # Given uploads slow enough that the stop lands mid-run
    emulator.configure(latency={"upload": 0.15, "import": 0.1, "index": 0.3})
    total = scanned(settings, library, 60)
    enqueue(settings)
    first = consumers(workers=7)
    wait_for(lambda: file_states(settings).get("indexed", 0) >= 5, 60, what="some progress")
    # When the consumer is stopped (SIGKILL: everything lost in flight; SIGTERM: immediate;
    # SIGINT: graceful) and a new one starts
    sig = {"sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM, "sigint": signal.SIGINT}[kill]
    first.stop(sig)
    in_flight_after_stop = sum(file_states(settings).get(s, 0) for s in ("uploading", "importing"))
    consumers(workers=7)
    enqueue(settings)  # what a user would type; harmless twice
    # Then every file ends indexed, exactly once
    assert settle(settings, total, timeout_s=180) == {"indexed": 60}
    assert_converged(settings, emulator)
    print(f"{kill}: {in_flight_after_stop} rows were in flight after the stop")


def test_sigkill_of_one_process_worker_is_recovered_without_a_command(settings, library,
                                                                      emulator, consumers):
    emulator.configure(latency={"upload": 0.3})
    total = scanned(settings, library, 30)
    enqueue(settings)
    consumer = consumers(workers=3, extra_args=("-k", "process"))
    wait_for(lambda: file_states(settings).get("uploading", 0) >= 1, 30, 0.02, "an upload")
    children = _children(consumer.pid)
    assert children, "no worker processes found"
    os.kill(random.Random(7).choice(children), signal.SIGKILL)
    # huey restarts the dead worker; its file's task is lost; the periodic/start-up recovery
    # (not a user) must hand it to a new task. The periodic task runs once a minute.
    assert settle(settings, total, timeout_s=150) == {"indexed": 30}
    assert_converged(settings, emulator)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def test_enqueue_twice_and_two_consumers_create_no_duplicates(settings, library, emulator,
                                                             consumers):
    total = scanned(settings, library, 80)
    first = enqueue(settings)
    second = enqueue(settings)
    assert len(first.enqueued) == 80 and second.enqueued == []
    waiting, _ = queue_depth(settings)
    assert waiting == 80
    consumers(workers=5)
    consumers(workers=5, extra_args=("-n",))
    assert settle(settings, total) == {"indexed": 80}
    assert_converged(settings, emulator)
    stats = emulator.stats()
    assert stats["requests"]["stores.importFile"] == 80


def test_rate_limit_holds_across_three_consumer_processes(settings, library, emulator, consumers):
    # Given a limit of L requests/minute shared by three consumers and more work than fits
    limit = 120
    total = scanned(settings, library, 120)
    env = {"OBJLIB_RPM": str(limit)}
    enqueue(settings)
    started = time.monotonic()
    for _ in range(3):
        consumers(workers=4, env=env)
    time.sleep(70)
    elapsed = time.monotonic() - started
    stats = emulator.stats()
    # Then no 60-second window at the emulator saw more than L requests, yet work flowed
    # (the enqueue's own store calls happened before and are part of the count)
    assert stats["max_requests_in_60s"] <= limit, stats["max_requests_in_60s"]
    assert stats["total_requests"] >= 0.75 * limit * elapsed / 60, (stats["total_requests"],
                                                                   elapsed)
    # and files finish steadily (a step reserves its requests together) rather than all
    # advancing one request at a time
    indexed = file_states(settings).get("indexed", 0)
    print(f"rate limit {limit}/min: busiest 60 s {stats['max_requests_in_60s']}, "
          f"{stats['total_requests']} requests in {elapsed:.0f} s, {indexed} files indexed")
    assert 5 <= indexed < total  # (measured here: 15; before the fix: 0-2)
