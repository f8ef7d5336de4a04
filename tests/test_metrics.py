"""`objlib metrics`: the status snapshot as OpenMetrics, read back with prometheus_client's own
parser; `--serve` scraped over HTTP from a real process. Rows move through the real
lifecycle and the throttle records real answers, with the tests' clock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from objlib import metrics
from objlib import status as st
from objlib.catalog import lifecycle as lc
from objlib.catalog import open_catalog
from objlib.cli import cli
from objlib.queue import bind
from objlib.scan import scan_library
from objlib.throttle import Throttle
from tests.support.catalogue import move
from tests.support.disk import write_library

NOW = 1_800_000_000.0  # the tests' clock

ROOT = Path(__file__).resolve().parent.parent


def parsed(text: str) -> dict[str, dict[tuple, float]]:
    """family name -> {sorted label items: value}, through the library's own parser (which
    rejects anything that is not valid OpenMetrics)."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(family.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def by(label: str, samples: dict[tuple, float]) -> dict[str, float]:
    return {dict(labels)[label]: value for labels, value in samples.items()}


@pytest.fixture
def busy(settings, library):
    """Ten files: 4 indexed in the last minute, 1 failed, 1 importing, 2 queued (their tasks
    in the queue), 2 pending; errors of two classes; requests, 429s and 503s in the last
    minute, enough 503s to open the breaker."""
    write_library(library, 10)
    scan_library(settings, library, now=NOW - 3600)
    catalog = open_catalog(settings)
    for file_id in (1, 2, 3, 4):
        move(catalog, file_id, lc.INDEXED, NOW - 30)
    move(catalog, 5, lc.FAILED, NOW - 20)
    move(catalog, 6, lc.IMPORTING, NOW - 50)
    huey = bind(settings).huey
    for file_id in (7, 8):
        move(catalog, file_id, lc.QUEUED, NOW - 10)
        huey.enqueue(bind(settings).upload_and_import.s(file_id, 1))
    lc.record_attempt(catalog, 6, 1, "transient", "503", NOW - 100)
    lc.record_attempt(catalog, 6, 1, "rate_limited", "429", NOW - 90, rate_limited=True)
    lc.record_attempt(catalog, 6, 1, "rate_limited", "429", NOW - 80, rate_limited=True)
    catalog.close()
    throttle = Throttle.from_settings(settings)
    for _ in range(6):
        throttle.record(200, now=NOW - 40)
    throttle.record(429, now=NOW - 30)
    for _ in range(settings.breaker_min_429):
        throttle.record(503, now=NOW - 2)
    throttle.close()
    return settings


def test_metrics_carry_the_snapshot_in_valid_openmetrics(busy):
    text = metrics.exposition(st.snapshot(busy, now=NOW))
    assert text.endswith("# EOF\n")
    m = parsed(text)

    assert by("state", m["objlib_files"]) == {"pending": 2, "queued": 2, "uploading": 0,
                                              "importing": 1, "indexed": 4, "failed": 1,
                                              "skipped": 0, "deleted": 0}
    assert m["objlib_files_remaining"][()] == 5
    assert m["objlib_indexed_ratio"][()] == pytest.approx(0.4)
    assert by("where", m["objlib_queue_tasks"]) == {"waiting": 2, "scheduled": 0}
    assert by("window", m["objlib_indexed_per_minute"]) == {"1m": 4.0, "5m": 0.8, "15m": 0.27}
    assert by("state", m["objlib_oldest_in_flight_age_seconds"]) == {"queued": 10.0,
                                                                      "importing": 50.0}
    assert by("error_class", m["objlib_errors_last_hour"]) == {"transient": 1, "rate_limited": 2,
                                                               "permanent": 1}  # the failed file
    assert by("objlib_breaker", m["objlib_breaker"]) == {"open": 1, "closed": 0, "half-open": 0}
    assert m["objlib_breaker_trips"][()] == 1
    assert m["objlib_requests_last_minute"][()] == 7 + busy.breaker_min_429
    assert m["objlib_rate_limited_requests_last_minute"][()] == 1
    assert m["objlib_throttled_requests_last_minute"][()] == 1 + busy.breaker_min_429
    assert m["objlib_store_lost"][()] == 0
    (info,) = m["objlib"]
    assert dict(info)["home"] == str(busy.home)


def test_objlib_metrics_prints_the_same_text(busy):
    result = CliRunner().invoke(cli, ["metrics"])
    assert result.exit_code == 0, result.output
    m = parsed(result.stdout)
    assert by("state", m["objlib_files"])["indexed"] == 4
    assert by("where", m["objlib_queue_tasks"])["waiting"] == 2


def test_metrics_without_a_catalogue_exit_1_with_the_reason(home):
    result = CliRunner().invoke(cli, ["metrics"])
    assert result.exit_code == 1 and "no catalogue" in result.stderr
    served = CliRunner().invoke(cli, ["metrics", "--serve", "0"])
    assert served.exit_code == 1 and "no catalogue" in served.stderr


def test_host_goes_with_serve(home):
    result = CliRunner().invoke(cli, ["metrics", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--host goes with --serve" in result.stderr


def scrape(url: str) -> tuple[str, str]:
    request = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode("utf-8")


def test_metrics_serve_is_scraped_over_http_with_a_fresh_snapshot_each_time(settings, library):
    # Given a catalogue of 2 files and `objlib metrics --serve 0` running
    write_library(library, 2)
    scan_library(settings, library)
    proc = subprocess.Popen([sys.executable, "-m", "objlib", "metrics", "--serve", "0"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = proc.stdout.readline()  # blocks until the server listens
        assert first_line.startswith("serving metrics on http://127.0.0.1:"), \
            first_line + proc.stderr.read()
        url = first_line.split()[3].rstrip(";")
        # When it is scraped
        content_type, text = scrape(url)
        # Then it answers OpenMetrics, which the library's parser reads
        assert content_type.startswith("application/openmetrics-text")
        assert by("state", parsed(text)["objlib_files"])["pending"] == 2
        # and a change in the catalogue shows in the next scrape
        write_library(library, 3)
        scan_library(settings, library)
        assert by("state", parsed(scrape(url)[1])["objlib_files"])["pending"] == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
    # SIGTERM (a service manager's stop) is a clean exit
    assert code == 0, proc.stderr.read()
