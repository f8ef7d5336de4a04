"""``scripts/bench.py`` reads where the workers' time went from a consumer's own log: one JSON
object a line (``objlib.log``'s worker stream), huey's lines among objlib's. The sample is
real: lines of a ``huey_consumer objlib.tasks.huey -w 7`` log captured from a field-profile
run with 5 % 429s and 5 % 503s (``tests/support/consumer-log-sample.jsonl``)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from scripts.bench import huey_lines, worker_profile
from scripts.benchlib import percentile

SAMPLE = (Path(__file__).parent / "support" / "consumer-log-sample.jsonl").read_text()


def _at(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_only_hueys_lines_are_read_with_their_utc_time_and_thread():
    lines = list(huey_lines(SAMPLE + "Traceback (most recent call last):\n{not json\n"))

    records = [json.loads(line) for line in SAMPLE.splitlines()]
    hueys = [r for r in records if r["logger"].startswith("huey")]
    assert len(lines) == len(hueys) == len(records) - 3  # objlib's 3 events are passed over
    assert lines[0] == (_at("2026-12-03T13:43:25.276615Z"), "MainThread",
                        "Huey consumer started with 7 thread, PID 4339 at "
                        "2026-12-03 13:43:25.276487")


def test_executions_are_counted_per_task_and_the_files_tasks_apart():
    profile = worker_profile(SAMPLE, files=2, start=_at("2026-12-03T13:43:25Z"),
                             end=_at("2026-12-03T13:43:40Z"), workers=7)

    assert profile["executions_by_task"] == {"poll_import": 1, "recover_stuck": 1,
                                             "upload_and_import": 3}
    assert profile["tasks"] == 4  # the periodic recovery is no file's task
    # a first upload, a re-run after its eta (the lane's import had met a 429), a poll
    assert profile["executions"] == {"other": 1, "upload": 2, "import": 1, "poll": 1}


def test_time_in_tasks_ends_at_the_done_line_or_at_the_retry():
    profile = worker_profile(SAMPLE, files=1, start=_at("2026-12-03T13:43:25Z"),
                             end=_at("2026-12-03T13:43:40Z"), workers=7)

    # 1.084 s (the "executed in" of the first upload) + from the second upload's start to the
    # RetryTask it raised after its 429
    retried = _at("2026-12-03T13:43:36.583021Z") - _at("2026-12-03T13:43:36.353510Z")
    assert profile["in_task_s_per_file"]["upload"] == pytest.approx(1.084 + retried, abs=1e-3)
    assert profile["in_task_s_per_file"]["poll"] == pytest.approx(0.005, abs=1e-4)


def test_a_rescheduled_task_is_late_by_its_start_after_its_eta():
    profile = worker_profile(SAMPLE, files=1, start=_at("2026-12-03T13:43:25Z"),
                             end=_at("2026-12-03T13:43:40Z"), workers=7)

    poll_late = _at("2026-12-03T13:43:36.331589Z") - _at("2026-12-03T13:43:35.446802Z")
    import_late = _at("2026-12-03T13:43:36.348784Z") - _at("2026-12-03T13:43:36.142017Z")
    late = profile["rescheduled_start_late_s"]
    assert late["p50"] == pytest.approx((poll_late + import_late) / 2, abs=1e-3)
    assert late["p95"] == pytest.approx(percentile([poll_late, import_late], 95), abs=1e-3)
