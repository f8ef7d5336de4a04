"""`objlib status`: one read-only snapshot of the catalogue, the queue and the throttle.

Rows are real: a library is scanned, then moved through the real lifecycle with a controlled
clock (``now``), so counts, ages, throughput and ETA are checked without sleeping.
"""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from objlib import status as st
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.cli import cli
from objlib.enqueue import enqueue
from objlib.scan import scan_library
from objlib.settings import Settings
from objlib.tasks import QUEUE_NAME, queue_for
from objlib.throttle import Throttle
from objlib.views import status as view
from objlib.views.words import ago
from tests.support.catalogue import move
from tests.support.disk import write_library
from tests.support.waits import wait_for

NOW = 1_800_000_000.0  # the tests' clock

JSON_KEYS = {"latest_run", "generated_at", "home", "store", "files", "oldest_in_flight_age_s",
             "queue", "progress",
             "throughput", "eta_seconds", "breaker", "rate_limit", "errors", "last_reconcile",
             "last_activity_at"}
NESTED_KEYS = {
    "files": set(lc.STATES),
    "oldest_in_flight_age_s": {"queued", "uploading", "importing"},
    "queue": {"waiting", "scheduled"},
    "store": {"name", "lost_at"},
    "progress": {"indexed", "eligible", "failed", "remaining", "percent", "done"},
    "throughput": {"indexed_per_min_1m", "indexed_per_min_5m", "indexed_per_min_15m"},
    "breaker": {"state", "open_for_s", "trips"},
    "rate_limit": {"requests_last_60s", "throttled_last_60s", "limit_per_minute",
                   "adaptive_per_minute"},
    "errors": {"window_s", "total", "by_class"},
}


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def catalog(settings, library):
    """A scanned library of 20 pending files, scanned at NOW - 3600."""
    write_library(library, 20)
    scan_library(settings, library, now=NOW - 3600)
    cat = open_catalog(settings)
    yield cat
    cat.close()


def ids(catalog) -> list[int]:
    return [r["id"] for r in catalog.query("SELECT id FROM files ORDER BY id")]


# ---------------------------------------------------------------------------- the JSON shape


def test_status_json_has_the_documented_keys_and_every_state(catalog):
    result = run("status", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == JSON_KEYS
    for key, keys in NESTED_KEYS.items():
        assert set(data[key]) == keys, key
    assert data["files"] == {**dict.fromkeys(lc.STATES, 0), "pending": 20}
    assert data["progress"] == {"indexed": 0, "eligible": 20, "failed": 0, "remaining": 20,
                                "percent": 0.0, "done": False}
    assert data["queue"] == {"waiting": 0, "scheduled": 0}
    assert data["eta_seconds"] is None
    assert data["breaker"] == {"state": "closed", "open_for_s": 0.0, "trips": 0}
    assert data["errors"] == {"window_s": 3600, "total": 0, "by_class": {}}
    assert data["last_reconcile"] is None and data["last_activity_at"] is None


def test_skipped_and_deleted_rows_are_not_eligible(settings, catalog, library):
    (library / "Notes" / "empty.txt").write_text("")
    (library / "Notes" / "note 0000.txt").unlink()
    scan_library(settings, library, now=NOW - 60)

    data = st.to_json(st.snapshot(settings, now=NOW))

    assert data["files"]["skipped"] == 1 and data["files"]["deleted"] == 1
    assert data["progress"]["eligible"] == 19


# ---------------------------------------------------------------------------- stuck work


def test_oldest_in_flight_ages_show_how_long_work_has_waited(settings, catalog):
    first, second, third, fourth = ids(catalog)[:4]
    move(catalog, first, lc.QUEUED, NOW - 50)
    move(catalog, second, lc.QUEUED, NOW - 10)
    move(catalog, third, lc.UPLOADING, NOW - 20)
    move(catalog, fourth, lc.IMPORTING, NOW - 5)
    # a worker that died long ago left its row uploading
    with catalog.write() as conn:
        conn.execute("UPDATE files SET state_changed_at=? WHERE id=?", (NOW - 7200, third))

    snap = st.snapshot(settings, now=NOW)

    assert snap.oldest_in_flight_age_s == {"queued": 50.0, "uploading": 7200.0,
                                           "importing": 5.0}
    assert snap.files["queued"] == 2
    assert "2h 00m" in plain_render(snap)


def test_no_age_for_an_empty_in_flight_state(settings, catalog):
    snap = st.snapshot(settings, now=NOW)

    assert snap.oldest_in_flight_age_s == {"queued": None, "uploading": None, "importing": None}


# ---------------------------------------------------------------------------- throughput, ETA


def test_throughput_counts_rows_indexed_in_the_last_1_5_and_15_minutes(settings, catalog):
    rows = ids(catalog)
    for file_id in rows[:2]:
        move(catalog, file_id, lc.INDEXED, NOW - 30)     # in all three windows
    for file_id in rows[2:5]:
        move(catalog, file_id, lc.INDEXED, NOW - 200)    # in the 5 and 15 minute windows
    for file_id in rows[5:9]:
        move(catalog, file_id, lc.INDEXED, NOW - 600)    # in the 15 minute window
    for file_id in rows[9:12]:
        move(catalog, file_id, lc.INDEXED, NOW - 2000)   # in none

    snap = st.snapshot(settings, now=NOW)

    assert snap.throughput_per_min == {"indexed_per_min_1m": 2.0, "indexed_per_min_5m": 1.0,
                                       "indexed_per_min_15m": 0.6}
    # 8 rows remain; 5 were indexed in the last 5 minutes, the first of them 200 s ago
    assert snap.remaining == 8
    assert snap.eta_s == pytest.approx(8 * 200 / 5, abs=0.1)
    assert st.to_json(snap)["progress"]["percent"] == 60.0


def test_eta_follows_the_recent_rate_with_a_floor_on_the_span():
    assert st.eta_s(10, 5, NOW - 100, NOW) == pytest.approx(200.0)
    # one row indexed a second ago is not a rate of one per second
    assert st.eta_s(10, 1, NOW - 1, NOW) == pytest.approx(10 * st.ETA_MIN_SPAN_S)
    # the span never exceeds the window
    assert st.eta_s(10, 5, NOW - 10_000, NOW) == pytest.approx(10 * st.ETA_WINDOW_S / 5)


def test_eta_is_zero_when_done_and_unknown_when_nothing_was_indexed_lately():
    assert st.eta_s(0, 0, None, NOW) == 0.0
    assert st.eta_s(7, 0, None, NOW) is None


def test_eta_is_null_in_json_when_nothing_was_indexed_lately(settings, catalog):
    move(catalog, ids(catalog)[0], lc.INDEXED, NOW - 3000)

    data = st.to_json(st.snapshot(settings, now=NOW))

    assert data["eta_seconds"] is None
    assert data["throughput"]["indexed_per_min_15m"] == 0.0


def test_done_when_nothing_is_pending_or_in_flight(settings, catalog):
    rows = ids(catalog)
    for file_id in rows[:-1]:
        move(catalog, file_id, lc.INDEXED, NOW - 10)
    move(catalog, rows[-1], lc.FAILED, NOW - 5)

    snap = st.snapshot(settings, now=NOW)

    assert snap.done and snap.remaining == 0 and snap.eta_s == 0.0
    assert st.to_json(snap)["progress"] == {"indexed": 19, "eligible": 20, "failed": 1,
                                            "remaining": 0, "percent": 95.0, "done": True}


# ---------------------------------------------------------------------------- health


def test_errors_are_counted_by_class_over_the_last_hour(settings, catalog):
    a, b, c, d = ids(catalog)[:4]
    for file_id in (a, b, c, d):
        move(catalog, file_id, lc.UPLOADING, NOW - 5000)
    lc.record_attempt(catalog, a, 1, "transient", "503", NOW - 10)
    lc.record_attempt(catalog, a, 1, "transient", "503", NOW - 3000)
    lc.record_attempt(catalog, b, 1, "rate_limited", "429", NOW - 100, rate_limited=True)
    lc.record_attempt(catalog, c, 1, "transient", "timeout", NOW - 4000)  # over an hour ago
    lc.mark_failed(catalog, d, 1, "permanent", "400 bad content", NOW - 50)

    data = st.to_json(st.snapshot(settings, now=NOW))

    assert data["errors"] == {"window_s": 3600, "total": 4,
                              "by_class": {"transient": 2, "permanent": 1, "rate_limited": 1}}
    assert list(data["errors"]["by_class"]) == ["transient", "permanent", "rate_limited"]


def test_breaker_and_rate_window_are_read_from_the_shared_throttle(home, catalog):
    settings = Settings.load(home, rate_limit_per_minute=120)
    throttle = Throttle.from_settings(settings)
    for _ in range(3):
        throttle.record(200, now=NOW - 30)
    for _ in range(settings.breaker_min_429):
        throttle.record(503, now=NOW - 2)
    throttle.record(200, now=NOW - 90)  # outside the 60 s window
    throttle.close()

    data = st.to_json(st.snapshot(settings, now=NOW))

    assert data["breaker"]["state"] == "open" and data["breaker"]["trips"] == 1
    assert data["breaker"]["open_for_s"] == pytest.approx(settings.breaker_cooldown_s - 2)
    assert data["rate_limit"] == {"requests_last_60s": 3 + settings.breaker_min_429,
                                  "throttled_last_60s": settings.breaker_min_429,
                                  "limit_per_minute": 120, "adaptive_per_minute": None}
    assert data["last_activity_at"] == NOW - 2


def test_the_pace_adapted_to_429s_is_shown_with_the_configured_limit(home, catalog):
    # Given a quota the service enforces: 60 requests accepted, then a burst of 429s
    settings = Settings.load(home, rate_limit_per_minute=300)
    throttle = Throttle.from_settings(settings)
    for _ in range(60):
        throttle.record(200, now=NOW - 20)
    for _ in range(20):
        throttle.record(429, now=NOW - 2)
    throttle.close()

    snap = st.snapshot(settings, now=NOW)

    # Then the pace is 0.9 of what the service accepted, and the breaker stayed closed
    assert st.to_json(snap)["rate_limit"]["adaptive_per_minute"] == 54
    assert st.to_json(snap)["breaker"]["state"] == "closed"
    assert "(limit 54/min adapted to 429s; configured 300/min)" in view.rate_text(snap.throttle)


def test_breaker_is_half_open_once_its_cooldown_has_passed(settings, catalog):
    throttle = Throttle.from_settings(settings)
    for _ in range(settings.breaker_min_429):
        throttle.record(None, now=NOW - 100)
    throttle.close()

    data = st.to_json(st.snapshot(settings, now=NOW))

    assert data["breaker"] == {"state": "half-open", "open_for_s": 0.0, "trips": 1}


def test_last_activity_is_the_latest_worker_event(settings, catalog):
    a, b = ids(catalog)[:2]
    move(catalog, a, lc.INDEXED, NOW - 40)
    move(catalog, b, lc.UPLOADING, NOW - 100)
    lc.record_attempt(catalog, b, 1, "transient", "503", NOW - 25)
    lc.mark_queued(catalog, ids(catalog)[2], 1, "t", NOW - 1)  # enqueue is not a worker

    snap = st.snapshot(settings, now=NOW)

    assert snap.last_activity_at == NOW - 25
    assert ago(snap.last_activity_at, NOW) == "25s ago"


def test_last_reconcile_is_shown_when_present_else_never(settings, catalog):
    assert st.snapshot(settings, now=NOW).last_reconcile is None
    record = {"at": NOW - 120, "drift": 3, "counts": {"missing": 2, "orphans": 1, "stale": 0},
              "fix": True, "errors": 0}
    catalog.set_meta("last_reconcile", json.dumps(record))

    snap = st.snapshot(settings, now=NOW)

    assert st.to_json(snap)["last_reconcile"] == record
    assert view.reconcile_text(snap.last_reconcile, NOW) == \
        "2m 00s ago, drift 3 (missing 2, orphans 1), fixed"
    assert view.reconcile_text(None, NOW) == "never"


# ---------------------------------------------------------------------------- the queue


def test_queue_depth_is_read_from_huey_storage(settings, catalog):
    q = queue_for(settings)
    for file_id in ids(catalog)[:3]:
        q.enqueue(q.upload_and_import.s(file_id, 1))
    poll = q.poll_import.s(1, 1)
    poll.eta = datetime.fromtimestamp(NOW + 60)
    q.add_schedule(poll)

    data = st.to_json(st.snapshot(settings, now=NOW))

    assert data["queue"] == {"waiting": 3, "scheduled": 1}


def test_the_queue_name_is_the_one_objlib_tasks_uses(settings):
    assert queue_for(settings).name == QUEUE_NAME == st.QUEUE_NAME


# ---------------------------------------------------------------------------- reading only


def test_status_json_as_a_new_process_imports_no_heavy_library(settings, catalog):
    """A script's `status --json` is a new process each time, beside busy workers: it reads
    SQLite and prints JSON, without Rich, huey, stamina, structlog or the SDK."""
    heavy = ("rich", "huey", "stamina", "tenacity", "structlog", "google", "secrets")
    code = ("import sys; from objlib.cli import cli; "
            "cli(['status', '--json'], standalone_mode=False); "
            f"sys.stderr.write(' '.join(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parent.parent,
                          env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                               "OBJLIB_HOME": str(settings.home), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"]["pending"] == 20
    assert done.stderr == ""


def test_status_creates_no_queue_or_throttle_file(settings, catalog):
    result = run("status", "--json")

    assert result.exit_code == 0, result.output
    assert not settings.queue_db.exists() and not settings.throttle_db.exists()


def test_status_reads_while_a_worker_holds_a_write_transaction(settings, catalog):
    writer = sqlite3.connect(settings.library_db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE files SET state='queued' WHERE id=?", (ids(catalog)[0],))
    try:
        result = run("status", "--json")
    finally:
        writer.execute("ROLLBACK")
        writer.close()

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["files"]["pending"] == 20  # the uncommitted change unseen


# ---------------------------------------------------------------------------- the command


def test_status_without_a_catalogue_says_to_scan_first(settings):
    result = run("status")

    assert result.exit_code == 1
    assert "no catalogue" in result.output and "objlib scan" in result.output
    assert "Traceback" not in result.output
    assert not settings.library_db.exists()


def test_status_table_shows_states_progress_and_health(catalog):
    result = run("status")

    assert result.exit_code == 0, result.output
    for text in ("pending", "importing", "0 / 20 eligible", "health", "breaker", "closed",
                 "0 waiting, 0 scheduled", "reconcile", "never", "unlimited"):
        assert text in result.output, text


@pytest.mark.parametrize("args, message", [
    (["--json", "--watch"], "does not go with --watch"),
    (["--until-done"], "goes with --watch"),
    (["--watch", "--interval", "0"], "--interval"),
])
def test_status_rejects_options_that_do_not_go_together(catalog, args, message):
    result = run("status", *args)

    assert result.exit_code == 2
    assert message in result.output


def test_watch_without_a_terminal_prints_plain_lines_and_stops_when_done(settings, catalog):
    for file_id in ids(catalog):
        move(catalog, file_id, lc.INDEXED, NOW)

    result = run("status", "--watch", "--until-done", "--interval", "0.1")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1
    assert "indexed 20/20 (100.0%)" in lines[0] and "breaker closed" in lines[0]


def plain_render(snap) -> str:
    from rich.console import Console

    console = Console(width=120, file=io.StringIO())
    console.print(view.render(snap))
    return console.file.getvalue()


# ---------------------------------------------------------------------------- for real


@pytest.mark.slow
def test_status_follows_a_real_pipeline_to_the_end(settings, library, emulator, consumers):
    emulator.configure(latency={"index": 1.0})  # imports last long enough to be seen
    write_library(library, 30)
    scan_library(settings, library)
    enqueue(settings)
    consumers(workers=4)

    def status_when(condition, what: str) -> dict:
        def check():
            result = run("status", "--json")
            assert result.exit_code == 0, result.output
            data = json.loads(result.output)
            return data if condition(data) else None
        return wait_for(check, timeout_s=120, what=what)

    running = status_when(lambda d: d["files"]["importing"] > 0, "files importing")
    final = status_when(lambda d: d["progress"]["done"] and d["queue"] == {"waiting": 0,
                                                                         "scheduled": 0},
                        "every file indexed and the queue empty")

    assert sum(running["files"].values()) == 30 and not running["progress"]["done"]
    assert running["oldest_in_flight_age_s"]["importing"] is not None
    assert running["queue"]["waiting"] + running["queue"]["scheduled"] > 0  # polls, uploads
    assert final["files"]["indexed"] == 30 and final["progress"]["percent"] == 100.0
    assert final["throughput"]["indexed_per_min_1m"] > 0
    assert final["eta_seconds"] == 0.0
    assert final["rate_limit"]["requests_last_60s"] > 0
    assert final["last_activity_at"] is not None
