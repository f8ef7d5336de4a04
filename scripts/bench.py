#!/usr/bin/env python3
"""``make bench``: the pipeline, objlib's own overhead, the rate limit, scan and status, each
against its target, on this machine. Prints a table and writes ``bench-results/bench.json``.

    python scripts/bench.py [--quick]
                            [--only pipeline,overhead,rate,scan,status,seed,first,search]
                            [--files 500] [--workers 7] [--runs 3] [--pipeline-runs 3]
                            [--rate-runs 1] [--rpm 300] [--duration 150] [--seed 1]
                            [--quota-rpm 60] [--quota-duration 360]
                            [--baseline-files 450] [--baseline-runs 1]
                            [--baseline-profile field]

Every run is real: ``python -m objlib emulator`` and ``huey_consumer objlib.tasks.huey`` as
child processes (own process groups, always stopped), ``objlib scan`` and ``objlib enqueue``
as a user types them, a sample library from ``make_sample_library.py``.

pipeline  N files on the ``realistic`` profile at ``-w 7`` (recommended flags: ``-k thread
          -m 0.5 -t 60``). files/s = indexed files / (last ``indexed_at`` - ``queued_at``),
          against the bound the design allows: workers / the seconds a worker is occupied per
          file by the profile's remote calls (see ``worker_model``). Also per-file latency
          (``queued_at`` -> ``indexed_at``), the lag from an operation being done at the
          emulator (``/_emulator/operations``) to its row being indexed, the calls per file the
          emulator counted, and where the workers' time went (parsed from huey's own log).
overhead  the same on the ``instant`` profile: files/s with no remote latency, and the CPU
          seconds of the consumer process (and, apart, of the emulator) per file.
rate      OBJLIB_RPM=L with more work than fits, for ``--duration`` seconds (> 60): the
          emulator's busiest 60 s window (``max_requests_in_60s``, which counts upload chunks
          as objlib's limiter does) and the sustained rate (requests in the last 60 s), as
          fractions of L. The emulator enforces ``--rpm L`` too (it counts calls without
          chunks, so objlib should never meet its quota). And the files it indexes: files/min
          in the steady part (after the first ``RATE_WARM_S``) against L / the requests it
          sent per file indexed over the run (upload chunks included, as the limit counts
          them): the most the limit allows with that cost per file; it should reach 0.9 of
          it (issue 14). Then a quota objlib is *not* told
          about: the emulator enforces ``--quota-rpm Q``, OBJLIB_RPM is unset, for
          ``--quota-duration`` seconds. After the first ``QUOTA_WARM_S`` (the pace is learnt
          from the first burst, whose 429s last as long as the service remembers it): the
          calls the quota accepted per minute as a fraction of Q, the files/min against those
          the quota allows (Q / accepted calls per indexed file), the 429s, and whether the
          breaker opened (it should not: 429s set the pace).
scan      ``scripts/bench_scan.py``'s measurements (cold scan vs sha256sum, re-scan, memory).
status    ``scripts/bench_status.py``'s catalogue and timings (snapshot + JSON in-process, and
          ``objlib status --json`` as a command), then at scale: ``objlib enqueue`` of
          ``--status-files`` (20,000) small files, and ``objlib status --json`` as a new
          process while ``huey_consumer -w 7`` drains them (instant profile), on a catalogue
          of those files and on one padded to ``--status-rows`` (100,000) rows.
seed      ``scripts/bench_seed.py``: objlib and the seed's design (``baseline_seed.py``) on the
          same library, profile (``field``) and N, clean and with 5 % 429 + 5 % 503: files/s,
          % indexed, calls and huey tasks per file, the ratio. 450 files take ~12 min.
first     ``scripts/bench_first_file.py``: ``objlib upload`` in a fresh home (field latencies, 7
          files), the time from work starting to the first file indexed, against that file's
          remote work (5 s); median of ``--runs``.
search    ``scripts/bench_search.py``: one search's latency (real SDK over HTTP) in an
          emulator store of ``--search-documents`` (5,000) sample documents: common words,
          a rare phrase, with a filter, and the index alone.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from objlib.emulator import PROFILES
from objlib.lane import PER_WORKER as LANE_PER_WORKER
from scripts import bench_first_file, bench_seed
from scripts import benchlib as bl
from scripts.make_sample_library import make_library
from tests.support.processes import Children, EmulatorProcess
from tests.support.waits import wait_for

HERE = Path(__file__).resolve().parent

TARGETS = {"pipeline_ratio": 0.95, "overhead_files_per_s": 200.0,
           "rate_max_window": 1.0, "rate_sustained": 0.9, "rate_files": 0.9, "quota_used": 0.8,
           "status_ms": 200.0, "enqueue_s": 5.0,
           "first_file_ratio": bench_first_file.TARGET}
QUOTA_WARM_S = 120.0
RATE_WARM_S = 60.0  # the rate section's steady part begins once a whole window has passed
SECTIONS = ("pipeline", "overhead", "rate", "scan", "status", "seed", "first", "search")
SETUP_ENDPOINTS = ("stores.list", "stores.create", "stores.get")
STEADY_MIN_FILES = 300


# ---------------------------------------------------------------------------- the model


def worker_model(profile: str) -> dict:
    """Seconds one new file occupies a worker and a lane thread, from the profile's latencies.

    A worker sends the upload: its start (``call``) and the finalize chunk (``upload``), no
    ``files.get`` first (a 409 would say the raw file exists). The raw file is ACTIVE in the
    answer (``activate`` 0, every profile; with ``activate`` > 0 the task re-schedules itself
    and runs again: ``files.get``, ``call``), and the worker hands the ``importFile``
    (``import``) to its process's control lane (``objlib.lane``, 2 threads a worker) and
    takes the next file. The poll is due when the import is expected done; its one
    ``operations.get`` (``call``) goes on the lane too; ``index`` passes while nobody waits.
    The bound is the lower of workers / worker-seconds and lane threads / lane-seconds."""
    lat = PROFILES[profile].latency_s
    steps = [("upload", "upload start", lat["call"]),
             ("upload", "upload chunk + finalize", lat["upload"])]
    if lat["activate"] > 0:
        steps.append(("upload", "files.get (ACTIVE), after the re-schedule", lat["call"]))
    lane = [("import", "importFile (lane)", lat["import"]),
            ("poll", "operations.get (done; lane)", lat["call"])]
    return {"steps": [{"task": t, "call": c, "s": s} for t, c, s in steps + lane],
            "worker_s_per_file": round(sum(s for _, _, s in steps), 4),
            "lane_s_per_file": round(sum(s for _, _, s in lane), 4),
            "lane_threads_per_worker": LANE_PER_WORKER,
            "not_held_s": {"activate wait (re-scheduled)": lat["activate"],
                           "index (operation running)": lat["index"]}}


def model_bound(model: dict, workers: int) -> float | None:
    """Files a second N workers and their lane can sustain (None on the instant profile)."""
    bounds = [workers / model["worker_s_per_file"] if model["worker_s_per_file"] else None,
              workers * model["lane_threads_per_worker"] / model["lane_s_per_file"]
              if model["lane_s_per_file"] else None]
    bounds = [b for b in bounds if b is not None]
    return min(bounds) if bounds else None


# ---------------------------------------------------------------------------- huey's log


_EXEC = re.compile(r"^Executing objlib\.tasks\.(\w+): ([0-9a-f-]{36})(?: @(\S+ \S+))?")
_DONE = re.compile(r"^objlib\.tasks\.(\w+): ([0-9a-f-]{36}).* executed in ([0-9.]+)s$")
_RETRY = re.compile(r"^Task ([0-9a-f-]{36}) raised RetryTask")
_ERROR = re.compile(r"^Unhandled exception in task ([0-9a-f-]{36})")
# the tasks that work on one file; the periodic ones (recovery, reconcile, sync) are not
FILE_TASKS = frozenset({"upload_and_import", "poll_import", "remove_document",
                        "settle_superseded"})


def huey_lines(log_text: str):
    """(epoch s, thread, message) of each of huey's own lines in a consumer's log: one JSON
    object a line (``objlib.log``'s worker stream), ``timestamp`` ISO 8601 in UTC, ``thread``
    the worker's name, ``event`` huey's message. Lines that are not JSON (a traceback a
    library printed itself) and objlib's own events are passed over."""
    for line in log_text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or not str(record.get("logger", "")).startswith("huey"):
            continue
        try:
            at = datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            continue
        yield at.timestamp(), str(record.get("thread", "")), str(record.get("event", ""))


def _utc_epoch(text: str) -> float:  # huey's etas are naive UTC (utc=True)
    return calendar.timegm(datetime.fromisoformat(text).timetuple()) + \
        datetime.fromisoformat(text).microsecond / 1e6


def worker_profile(log_text: str, files: int, start: float, end: float, workers: int) -> dict:
    """Where the workers' time went between ``start`` and ``end`` (epoch s), from huey's INFO
    lines in the consumer's JSON log (``huey_lines``): executions by task (``tasks``: those
    of the files, the periodic ones left out), time inside tasks per kind, the gaps between
    one task's end and the worker's next task, how late re-scheduled tasks started after
    their eta, and the ramp-up and tail (from ``start`` until every worker is first busy at
    once; from the last moment they all were until ``end``)."""
    span_s = end - start
    runs: dict[str, list] = {}     # worker -> [(start, end, kind)]
    open_: dict[str, tuple] = {}
    late = []
    by_task: dict[str, int] = {}
    for at, worker, msg in huey_lines(log_text):
        if e := _EXEC.match(msg):
            name, eta = e[1], e[3]
            by_task[name] = by_task.get(name, 0) + 1
            kind = {"upload_and_import": "import" if eta else "upload",
                    "poll_import": "poll"}.get(name, "other")
            open_[worker] = (at, kind)
            if eta:
                late.append(at - _utc_epoch(eta))
        elif (d := _DONE.match(msg)) and worker in open_:
            began, kind = open_.pop(worker)
            runs.setdefault(worker, []).append((began, began + float(d[3]), kind))
        elif (_RETRY.match(msg) or _ERROR.match(msg)) and worker in open_:
            began, kind = open_.pop(worker)
            runs.setdefault(worker, []).append((began, at, kind))
    in_tasks: dict[str, float] = {}
    counts: dict[str, int] = {}
    gaps = []
    for seq in runs.values():
        seq.sort()
        for began, ended, kind in seq:
            in_tasks[kind] = in_tasks.get(kind, 0.0) + ended - began
            counts[kind] = counts.get(kind, 0) + 1
        gaps += [b[0] - a[1] for a, b in itertools.pairwise(seq)]
    short = [g for g in gaps if g < 0.1]
    busy = sum(in_tasks.values())
    edges = sorted([(a, 1) for seq in runs.values() for a, _, _ in seq] +
                   [(b, -1) for seq in runs.values() for _, b, _ in seq])
    running, all_busy = 0, None
    for at, step in edges:
        running += step
        if running >= workers:
            all_busy = at
            break
    last_upload = max((a for seq in runs.values() for a, _, kind in seq if kind == "upload"),
                      default=None)
    return {
        "executions": counts,
        "executions_by_task": dict(sorted(by_task.items())),
        "tasks": sum(n for name, n in by_task.items() if name in FILE_TASKS),
        "in_task_s_per_file": {k: round(v / files, 4) for k, v in in_tasks.items()},
        "mean_s_per_execution": {k: round(in_tasks[k] / counts[k], 4) for k in counts},
        "busy_fraction": round(busy / (workers * span_s), 3) if span_s else None,
        "between_tasks_s_per_file": round(sum(short) / files, 4),
        "between_tasks_median_ms": bl.rounded(bl.median(short) and bl.median(short) * 1000, 1),
        "idle_s_per_file": round(sum(g for g in gaps if g >= 0.1) / files, 4),
        "rescheduled_start_late_s": {"p50": bl.rounded(bl.percentile(late, 50)),
                                     "p95": bl.rounded(bl.percentile(late, 95))},
        "ramp_up_s": bl.rounded(all_busy - start if all_busy else None),
        "tail_s": bl.rounded(end - last_upload if last_upload else None),
    }


# ---------------------------------------------------------------------------- one run


def waits_at_scale(profile: str) -> dict:
    """objlib's first waits (activation, first poll) at the profile's scale. The defaults,
    1 s each, suit the real API (an import takes 4-6 s there); the profiles are that time
    scaled down, and a benchmark of them should scale objlib's waits the same way."""
    lat = PROFILES[profile].latency_s
    return {"OBJLIB_ACTIVATE_FIRST_DELAY_S": str(lat["activate"]),
            "OBJLIB_POLL_FIRST_DELAY_S": str(lat["index"])}


def pipeline_run(work: Path, *, profile: str, files: int, workers: int, seed: int,
                 timeout_s: float, faults: dict | None = None, library: Path | None = None,
                 env: dict | None = None) -> dict:
    """Scan N files (or ``library``), start a consumer, enqueue, wait until every row is
    indexed or failed. ``env``: objlib settings (default: its waits scaled to the profile)."""
    work.mkdir(parents=True, exist_ok=True)
    if library is None:
        library = work / "library"
        make_library(library, files, seed)
    with Children() as children:
        emu = children.add(EmulatorProcess(work / "emulator.log", profile=profile,
                                              faults=faults, seed=seed))
        run = bl.Run(work / "home", emu.base_url,
                     waits_at_scale(profile) if env is None else env)
        run.cli("scan", str(library))
        eligible = run.eligible()
        log_path = work / "consumer.log"
        consumer = run.consumer(children, log_path, workers=workers)
        wait_for(lambda: "consumer started" in log_path.read_text(errors="replace"), 30,
                      what="the consumer to start")
        time.sleep(0.5)  # its start-up recovery has run
        cpu_before, emu_cpu_before = consumer.live_cpu_s(), emu.live_cpu_s()
        load = [round(os.getloadavg()[0], 2)]
        run.cli("enqueue")
        wait_for(run.settled, timeout_s, 0.1, f"{eligible} files indexed or failed")
        stats, operations = emu.stats(), emu.operations()
        load.append(round(os.getloadavg()[0], 2))
        consumer.stop(signal.SIGINT, 60)
        emu_cpu = emu.live_cpu_s() - emu_cpu_before
        emu.stop(signal.SIGINT, 10)
    rows = run.query("SELECT queued_at, upload_started_at, indexed_at, document FROM files "
                     "WHERE state='indexed'")
    failed = run.states().get("failed", 0)
    if not rows:
        raise RuntimeError(f"no file was indexed ({failed} failed); see {log_path}")
    queued = min(r["queued_at"] for r in rows)
    span_s = max(r["indexed_at"] for r in rows) - queued
    done_at = {op["document"]: op["done_at"] for op in operations if op["done_at"]}
    lags = [r["indexed_at"] - done_at[r["document"]] for r in rows if r["document"] in done_at]
    latency = [r["indexed_at"] - r["queued_at"] for r in rows]
    service = [r["indexed_at"] - r["upload_started_at"] for r in rows]
    # steady state: files entering the pipeline (first upload step) between the 10th and the
    # 90th percentile of those moments; continuations go first, so they pace new uploads.
    # Below STEADY_MIN_FILES the first uploads (no continuations yet) are most of the window.
    began = sorted(r["upload_started_at"] for r in rows)
    lo, hi = began[len(began) // 10], began[len(began) * 9 // 10]
    steady = (len(began) * 9 // 10 - len(began) // 10) / (hi - lo) \
        if hi > lo and len(began) >= STEADY_MIN_FILES else None
    model = worker_model(profile)
    bound = model_bound(model, workers)
    files_per_s = len(rows) / span_s
    calls = {k: round(v / len(rows), 2) for k, v in stats["requests"].items()
             if k not in ("stores.list", "stores.create")}
    cpu_s = (consumer.cpu_s or 0.0) - cpu_before
    workers_time = worker_profile(log_path.read_text(errors="replace"), len(rows), queued,
                                  queued + span_s, workers)
    return {
        "profile": profile, "files": files, "eligible": eligible, "indexed": len(rows),
        "failed": failed, "workers": workers, "span_s": round(span_s, 3),
        "files_per_s": round(files_per_s, 2),
        "bound_files_per_s": bl.rounded(bound, 2),
        "ratio": bl.rounded(bound and files_per_s / bound),
        "steady_files_per_s": bl.rounded(steady, 2),
        "steady_ratio": bl.rounded(bound and steady and steady / bound),
        "latency_s": {"p50": bl.rounded(bl.percentile(latency, 50)),
                      "p95": bl.rounded(bl.percentile(latency, 95))},
        "upload_to_indexed_s": {"p50": bl.rounded(bl.percentile(service, 50)),
                                "p95": bl.rounded(bl.percentile(service, 95))},
        "done_to_indexed_s": {"p50": bl.rounded(bl.percentile(lags, 50)),
                              "p95": bl.rounded(bl.percentile(lags, 95)),
                              "max": bl.rounded(max(lags, default=None))},
        "calls_per_file": calls,
        "consumer_cpu_ms_per_file": round(cpu_s / len(rows) * 1000, 2),
        "emulator_cpu_ms_per_file": round(emu_cpu / len(rows) * 1000, 2),
        "api_calls": sum(v for k, v in stats["requests"].items()
                         if k not in SETUP_ENDPOINTS),
        "tasks": workers_time["tasks"],
        "workers_time": workers_time,
        "load_average": load,
        "model": model,
    }


def rate_run(work: Path, *, rpm: int, duration_s: float, files: int, workers: int,
             seed: int) -> dict:
    """OBJLIB_RPM=rpm with more work than fits in ``duration_s``."""
    make_library(work / "library", files, seed)
    with Children() as children:
        emu = children.add(EmulatorProcess(work / "emulator.log", profile="realistic",
                                              rpm=rpm, seed=seed))
        run = bl.Run(work / "home", emu.base_url, {"OBJLIB_RPM": str(rpm)})
        run.cli("scan", str(work / "library"))
        run.cli("enqueue")
        before = _work_requests(emu.stats())
        consumer = run.consumer(children, work / "consumer.log", workers=workers)
        started = time.monotonic()
        load = [round(os.getloadavg()[0], 2)]
        time.sleep(RATE_WARM_S)
        warm_requests, indexed_warm = _work_requests(emu.stats()), run.states().get("indexed", 0)
        warm_s = time.monotonic() - started
        time.sleep(max(0.0, duration_s - warm_s))
        load.append(round(os.getloadavg()[0], 2))
        stats = emu.stats()
        elapsed = time.monotonic() - started
        indexed_end = run.states().get("indexed", 0)
        consumer.stop(signal.SIGINT, 60)
        emu.stop(signal.SIGINT, 10)
    states = run.states()
    sent = _work_requests(stats) - before
    # the requests each indexed file cost over the whole run (its waste included: 429s met,
    # repeated looks, the requests of files still in flight at the end)
    per_file = sent / indexed_end if indexed_end else None
    steady_min = (elapsed - warm_s) / 60
    files_per_min = (indexed_end - indexed_warm) / steady_min
    allowed = rpm / per_file if per_file else None
    return {
        "limit_per_minute": rpm, "duration_s": round(elapsed, 1), "files": files,
        "indexed": states.get("indexed", 0),
        "unfinished": sum(states.get(s, 0) for s in ("pending", "queued", "uploading",
                                                     "importing")),
        "max_requests_in_60s": stats["max_requests_in_60s"],
        "max_calls_in_60s": stats["max_calls_in_60s"],
        "requests_in_last_60s": stats["requests_in_last_60s"],
        "max_window_fraction": round(stats["max_requests_in_60s"] / rpm, 3),
        "sustained_fraction": round(stats["requests_in_last_60s"] / rpm, 3),
        "average_fraction": round(sent / elapsed * 60 / rpm, 3),
        "steady_files_per_min": round(files_per_min, 2),
        "requests_per_file": per_file and round(per_file, 3),
        "allowed_files_per_min": allowed and round(allowed, 2),
        "files_fraction": allowed and round(files_per_min / allowed, 3),
        "steady_requests_per_min": round((_work_requests(stats) - warm_requests) / steady_min,
                                         1),
        "quota_429s": stats["faults"].get("rpm_quota", 0),
        "requests_before_workers": before,
        "requests_by_endpoint": stats["requests"],
        "load_average": load,
    }


def _work_requests(stats: dict) -> int:
    """Every request the emulator saw (upload chunks included) but the store's setup."""
    return stats["total_requests"] - sum(stats["requests"].get(k, 0) for k in SETUP_ENDPOINTS)


def _quota_calls(stats: dict) -> int:
    """The calls the emulator's quota accepted: every call but chunk POSTs and 429s."""
    return (stats["total_requests"] - stats["requests"].get("upload.chunk", 0)
            - stats["faults"].get("rpm_quota", 0))


def quota_run(work: Path, *, rpm: int, duration_s: float, files: int, workers: int,
              seed: int) -> dict:
    """An rpm quota the service enforces and objlib was not told about (no OBJLIB_RPM)."""
    make_library(work / "library", files, seed)
    with Children() as children:
        emu = children.add(EmulatorProcess(work / "emulator.log", profile="realistic",
                                              rpm=rpm, seed=seed))
        run = bl.Run(work / "home", emu.base_url, {})
        run.cli("scan", str(work / "library"))
        run.cli("enqueue")
        calls_0 = _quota_calls(emu.stats())
        consumer = run.consumer(children, work / "consumer.log", workers=workers)
        started = time.monotonic()
        time.sleep(QUOTA_WARM_S)
        calls_warm, indexed_warm = _quota_calls(emu.stats()), run.states().get("indexed", 0)
        time.sleep(duration_s - QUOTA_WARM_S)
        stats, indexed = emu.stats(), run.states().get("indexed", 0)
        elapsed = time.monotonic() - started
        status = json.loads(run.cli("status", "--json"))
        consumer.stop(signal.SIGINT, 60)
        emu.stop(signal.SIGINT, 10)
    calls = _quota_calls(stats)
    steady_min = (elapsed - QUOTA_WARM_S) / 60
    finished = indexed - indexed_warm
    calls_per_file = (calls - calls_warm) / finished if finished else None  # the steady part's
    return {
        "quota_per_minute": rpm, "duration_s": round(elapsed, 1), "files": files,
        "indexed": indexed, "indexed_after_warm_up": indexed_warm,
        "quota_calls_before_workers": calls_0,
        "files_per_min": round(finished / steady_min, 2),
        "calls_per_file": calls_per_file and round(calls_per_file, 2),
        "allowed_files_per_min": calls_per_file and round(rpm / calls_per_file, 2),
        "quota_used": round((calls - calls_warm) / steady_min / rpm, 3),
        "quota_429s": stats["faults"].get("rpm_quota", 0),
        "breaker_trips": status["breaker"]["trips"],
        "breaker_deferrals": (work / "consumer.log").read_text(errors="replace")
                             .count("circuit breaker open"),
        "adaptive_per_minute": status["rate_limit"].get("adaptive_per_minute"),
    }


# ---------------------------------------------------------------------------- sections


def _median_of(runs: list[dict], path: str):
    values = []
    for r in runs:
        value = r
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(value)
    return bl.rounded(statistics.median(values), 4) if values else None


def _medians(runs: list[dict], paths: list[str]) -> dict:
    return {p: _median_of(runs, p) for p in paths}


def bench_pipeline(args, tmp: Path, profile: str, n_runs: int) -> dict:
    runs = []
    for i in range(n_runs):
        log(f"pipeline ({profile}) run {i + 1}/{n_runs}: {args.files} files, -w {args.workers}")
        runs.append(pipeline_run(tmp / f"{profile}-{i}", profile=profile, files=args.files,
                                 workers=args.workers, seed=args.seed + i,
                                 timeout_s=args.timeout))
        log(f"  {runs[-1]['files_per_s']} files/s")
    keys = ["files_per_s", "bound_files_per_s", "ratio", "steady_files_per_s", "steady_ratio",
            "latency_s.p50", "latency_s.p95", "upload_to_indexed_s.p50",
            "upload_to_indexed_s.p95",
            "done_to_indexed_s.p50", "done_to_indexed_s.p95", "consumer_cpu_ms_per_file",
            "emulator_cpu_ms_per_file", "workers_time.busy_fraction"]
    return {"runs": runs, "median": _medians(runs, keys), "n_runs": n_runs}


def bench_rate(args, tmp: Path) -> dict:
    runs = []
    # enough work: ~4.2 requests per file at most rpm/60 per second, with a margin, so that
    # the workers never run out of files before the end
    files = max(100, int(args.rpm / 60 * args.duration / 3))
    for i in range(args.rate_runs):
        log(f"rate limit run {i + 1}/{args.rate_runs}: L={args.rpm}/min for {args.duration:.0f} s")
        runs.append(rate_run(tmp / f"rate-{i}", rpm=args.rpm, duration_s=args.duration,
                             files=files, workers=args.workers, seed=args.seed + i))
    keys = ["max_window_fraction", "sustained_fraction", "average_fraction", "quota_429s",
            "steady_files_per_min", "allowed_files_per_min", "files_fraction"]
    files = max(100, int(args.quota_rpm / 4 * args.quota_duration / 60 * 1.5))
    log(f"unannounced quota: Q={args.quota_rpm}/min for {args.quota_duration:.0f} s")
    quota = quota_run(tmp / "quota", rpm=args.quota_rpm, duration_s=args.quota_duration,
                      files=files, workers=args.workers, seed=args.seed)
    return {"runs": runs, "median": _medians(runs, keys), "n_runs": args.rate_runs,
            "quota": quota}


def bench_scan(args, tmp: Path) -> dict:
    import bench_scan

    log(f"scan: {args.scan_files} files, {args.runs} runs")
    library = tmp / "scan-library"
    make_library(library, args.scan_files, args.seed)
    figures = bench_scan.bench(library, tmp / "scan", args.runs)
    return figures


def bench_status(args, tmp: Path) -> dict:
    """``scripts/bench_status.py``: its synthetic catalogue (rows in every state, history,
    errors, a queue, a throttle) timed in-process and as a command with nothing running;
    then, at scale, ``objlib enqueue`` of ``--status-files`` files and ``objlib status
    --json`` as a new process while a consumer's 7 workers drain them (instant profile), on
    a catalogue of those files and on one of ``--status-rows`` rows."""
    import bench_status

    rows = args.status_rows
    log(f"status: {rows} rows")
    home = tmp / "status-home"
    from objlib.settings import Settings
    from objlib.status import snapshot, to_json

    settings = Settings.load(home)
    with contextlib.redirect_stdout(sys.stderr):
        bench_status.build(settings, rows)
    in_process = bench_status.timed(lambda: json.dumps(to_json(snapshot(settings))),
                                    max(5, args.runs * 7))
    argv = [*bench_status.objlib_command(), "--home", str(home), "status", "--json"]
    env = {**os.environ, **bench_status.installed_bytecode(tmp / "status-pyc")}
    subprocess.run(argv, check=True, capture_output=True, env=env)  # bytecode cached
    command = bench_status.timed(lambda: subprocess.run(argv, check=True, capture_output=True,
                                                        env=env), max(3, args.runs))
    log(f"status at scale: {args.status_files} files, {args.workers} workers")
    scale = bench_status.at_scale(tmp / "status-scale", args.status_files, rows,
                                  max(5, args.runs * 3), log=log, workers=args.workers)
    return {"rows": rows, "in_process_ms": round(statistics.median(in_process), 1),
            "command_ms": round(statistics.median(command), 1),
            "runs": [len(in_process), len(command)], "at_scale": scale,
            "target_ms": TARGETS["status_ms"], "target_enqueue_s": TARGETS["enqueue_s"]}


def bench_search(args) -> dict:
    """``scripts/bench_search.py``: searches of a store of ``--search-documents``."""
    import bench_search as bs

    log(f"search: a store of {args.search_documents} documents")
    return bs.run(args.search_documents, max(5, args.runs * 7), args.seed)


# ---------------------------------------------------------------------------- report


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _ok(good: bool | None) -> str:
    return "" if good is None else ("ok" if good else "MISSED")


def _loads(runs: list[dict]) -> str:
    """Each run's load average before/after, e.g. ``1.2/2.3 0.9/2.1``."""
    return " ".join("/".join(f"{x:g}" for x in r["load_average"]) for r in runs)


def table(results: dict) -> str:
    m = results["machine"]
    dirty = f", uncommitted: {' '.join(x.split()[-1] for x in m['uncommitted'])}" \
        if m.get("uncommitted") else ""
    lines = [f"objlib bench - {m['cores']} cores ({m['usable_cores']} usable), {m['machine']}; "
             f"code {m.get('commit')}{dirty}",
             f"{'figure':<46} {'value':>12}  target"]

    def row(name, value, target="", good=None):
        value = "n/a" if value is None else value
        lines.append(f"  {name:<44} {value:>12}  {target} {_ok(good)}".rstrip())

    if p := results.get("pipeline"):
        md, r0 = p["median"], p["runs"][0]
        lines.append(f"pipeline: {r0['files']} files ({r0['eligible']} eligible), realistic, "
                     f"-w {r0['workers']} -k thread -m 0.5; median of {p['n_runs']} run(s)")
        row("files/s", md["files_per_s"])
        row("bound: workers / worker-s per file", md["bound_files_per_s"],
            f"({r0['workers']} / {r0['model']['worker_s_per_file']} s; the lane: "
            f"{r0['workers'] * r0['model'].get('lane_threads_per_worker', 0)} / "
            f"{r0['model'].get('lane_s_per_file', 0)} s)")
        row("ratio", md["ratio"], f">= {TARGETS['pipeline_ratio']}",
            md["ratio"] >= TARGETS["pipeline_ratio"])
        row("steady state (10-90 % of upload starts) files/s", md["steady_files_per_s"])
        row("steady-state ratio", md["steady_ratio"])
        row("latency enqueue->indexed P50 / P95 (s)",
            f"{md['latency_s.p50']:.2f} / {md['latency_s.p95']:.2f}")
        row("  of which first upload step->indexed (s)",
            f"{md['upload_to_indexed_s.p50']:.2f} / {md['upload_to_indexed_s.p95']:.2f}")
        row("lag op done->indexed P50 / P95 (s)",
            f"{md['done_to_indexed_s.p50']:.2f} / {md['done_to_indexed_s.p95']:.2f}")
        row("workers busy (in tasks)", f"{md['workers_time.busy_fraction']:.0%}")
        wt = r0["workers_time"]
        row("  in tasks per file, run 1 (s)", ", ".join(
            f"{k} {v:.3f}" for k, v in sorted(wt["in_task_s_per_file"].items())))
        row("  between tasks / idle per file, run 1 (s)",
            f"{wt['between_tasks_s_per_file']:.3f} / {wt['idle_s_per_file']:.3f}")
        row("  ramp-up / tail (after the last new upload), run 1 (s)",
            f"{wt['ramp_up_s']:.2f} / {wt['tail_s']:.2f}")
        row("  calls per file, run 1", " ".join(
            f"{k}={v:g}" for k, v in sorted(r0["calls_per_file"].items())))
        row("consumer CPU per file (ms)", md["consumer_cpu_ms_per_file"])
        row("machine load (1-min average), each run", _loads(p["runs"]))
    if o := results.get("overhead"):
        md, r0 = o["median"], o["runs"][0]
        lines.append(f"overhead: {r0['files']} files, instant profile, -w {r0['workers']}; "
                     f"median of {o['n_runs']} run(s)")
        row("files/s", md["files_per_s"], f">= {TARGETS['overhead_files_per_s']:g}",
            md["files_per_s"] >= TARGETS["overhead_files_per_s"])
        row("steady state (10-90 % of upload starts) files/s", md["steady_files_per_s"])
        row("tail after the last new upload, run 1 (s)", r0["workers_time"]["tail_s"])
        row("consumer CPU per file (ms)", md["consumer_cpu_ms_per_file"])
        row("emulator CPU per file (ms)", md["emulator_cpu_ms_per_file"])
        # a thread consumer is one Python process: its CPU a file bounds it on any number of
        # cores (the GIL); a figure that moves less with the machine than files/s does
        row("  files/s its CPU allows (1,000 / consumer ms)",
            round(1000 / md["consumer_cpu_ms_per_file"], 1)
            if md["consumer_cpu_ms_per_file"] else "n/a")
        row("machine load (1-min average), each run", _loads(o["runs"]))
    if r := results.get("rate"):
        md, r0 = r["median"], r["runs"][0]
        lines.append(f"rate limit: L={r0['limit_per_minute']}/min for {r0['duration_s']:.0f} s, "
                     f"{r0['files']} files queued; median of {r['n_runs']} run(s)")
        row("busiest 60 s window / L (all requests)", md["max_window_fraction"],
            f"<= {TARGETS['rate_max_window']}",
            md["max_window_fraction"] <= TARGETS["rate_max_window"])
        row("sustained: last 60 s / L", md["sustained_fraction"],
            f">= {TARGETS['rate_sustained']}",
            md["sustained_fraction"] >= TARGETS["rate_sustained"])
        row("average over the run / L", md["average_fraction"])
        row("files/min after the first minute / L per file",
            f"{md['steady_files_per_min']} / {md['allowed_files_per_min']}",
            f"(L / {r0['requests_per_file']} requests a file, run 1)")
        row("  their ratio", md["files_fraction"], f">= {TARGETS['rate_files']}",
            md["files_fraction"] is not None and md["files_fraction"] >= TARGETS["rate_files"])
        row("busiest window of quota calls, run 1",
            f"{r0['max_calls_in_60s']}/{r0['limit_per_minute']}")
        row("emulator quota 429s", md["quota_429s"])
        row("files indexed during the run, run 1", r0["indexed"])
        q = r["quota"]
        lines.append(f"unannounced quota: Q={q['quota_per_minute']}/min, no OBJLIB_RPM, "
                     f"{q['duration_s']:.0f} s, judged after the first {QUOTA_WARM_S:.0f} s")
        row("calls the quota accepted / Q", q["quota_used"], f">= {TARGETS['quota_used']}",
            q["quota_used"] >= TARGETS["quota_used"])
        row("files/min / allowed (Q / quota calls per file)",
            f"{q['files_per_min']} / {q['allowed_files_per_min']}", f"({q['calls_per_file']})")
        row("quota 429s; breaker trips", f"{q['quota_429s']}; {q['breaker_trips']}", "trips 0",
            q["breaker_trips"] == 0)
        row("adaptive limit at the end (/min)", q["adaptive_per_minute"])
    if s := results.get("scan"):
        t = s["targets"]
        lines.append(f"scan: {s['files']} files, {s['bytes'] / 1e6:.1f} MB; "
                     f"median of {s['runs']} runs")
        row("sha256sum (find | xargs) (s)", f"{s['sha256sum_s']:.3f}")
        row("cold objlib scan (s)", f"{s['cold_scan_s']:.3f}")
        row("cold scan / sha256sum", f"{s['cold_ratio']:.2f}x", f"<= {t['cold_ratio']}x",
            s["cold_ratio"] <= t["cold_ratio"])
        row("no-change re-scan (s)", f"{s['rescan_s']:.3f}", f"<= {t['rescan_s']} s",
            s["rescan_s"] <= t["rescan_s"])
        row("peak memory (MB)", f"{s['peak_rss_mb']:.0f}", f"<= {t['peak_rss_mb']:.0f} MB",
            s["peak_rss_mb"] <= t["peak_rss_mb"])
    if st := results.get("status"):
        lines.append(f"status: scripts/bench_status.py's catalogue of {st['rows']} rows, nothing "
                     f"running; median of {st['runs'][0]} / {st['runs'][1]} runs")
        row("snapshot + JSON in-process (ms)", st["in_process_ms"])
        row("objlib status --json, a new process (ms)", st["command_ms"])
        for sc in st.get("at_scale", []):
            lines.append(f"status at scale: {sc['files']} small files, {sc['rows']} rows, "
                         f"instant, huey_consumer -w {sc['workers']} draining; "
                         f"median of {len(sc['status_runs_ms'])} runs")
            if sc["rows"] == sc["files"]:
                row("objlib enqueue of the files, a command (s)", sc["enqueue_s"],
                    f"<= {st['target_enqueue_s']:g} s", sc["enqueue_s"] <= st["target_enqueue_s"])
            else:
                row("objlib enqueue of the files, a command (s)", sc["enqueue_s"])
            row("  its CPU (s)", sc["enqueue_cpu_s"])
            row("objlib status --json, a new process (ms)", sc["status_ms"],
                f"<= {st['target_ms']:g} ms", sc["status_ms"] <= st["target_ms"])
            row("  its CPU (ms); workers draining throughout", sc["status_cpu_ms"],
                "" if sc["draining"] else "(the queue ran dry: not measured under load)",
                sc["draining"] or None)
            row("machine load (1-min average) before/after", "/".join(
                f"{x:g}" for x in sc["load_average"]))
    if sd := results.get("seed"):
        lines += bench_seed.table_lines(sd, _ok)
    if f := results.get("first"):
        lines.append(f"objlib upload, first file: {f['files']} files, field latencies, a fresh "
                     f"home; median of {len(f['runs'])} runs")
        row("first file indexed after work started (s)", f["median_first_indexed_s"],
            f"(its remote work: {f['remote_work_s']:g} s)")
        row("  / its remote work", f"{f['median_ratio']:.2f}x",
            f"<= {TARGETS['first_file_ratio']}x", f["met"])
        row("  from the command being started (s)", f["median_from_command_s"])
    if se := results.get("search"):
        lines.append(f"search: {se['documents']} documents, {se['chunks']} chunks, "
                     f"{se['megabytes']} MB; median of {se['common']['runs']} searches")
        for key, what in (("common", "4 common words, SDK over HTTP (ms)"),
                          ("rare", "a rare phrase, SDK over HTTP (ms)"),
                          ("filtered", "common words + a filter, SDK over HTTP (ms)"),
                          ("index_only", "common words, the index alone (ms)")):
            row(what, se[key]["median_ms"])
    return "\n".join(lines)


def verdicts(results: dict) -> list[bool]:
    out = []
    if p := results.get("pipeline"):
        out.append(p["median"]["ratio"] >= TARGETS["pipeline_ratio"])
    if o := results.get("overhead"):
        out.append(o["median"]["files_per_s"] >= TARGETS["overhead_files_per_s"])
    if r := results.get("rate"):
        out += [r["median"]["max_window_fraction"] <= TARGETS["rate_max_window"],
                r["median"]["sustained_fraction"] >= TARGETS["rate_sustained"],
                (r["median"]["files_fraction"] or 0) >= TARGETS["rate_files"],
                r["quota"]["quota_used"] >= TARGETS["quota_used"],
                r["quota"]["breaker_trips"] == 0]
    if s := results.get("scan"):
        out += [s[k] <= v for k, v in s["targets"].items()]
    if st := results.get("status"):
        for sc in st.get("at_scale", []):
            out += [sc["status_ms"] <= st["target_ms"], sc["draining"]]
            if sc["rows"] == sc["files"]:
                out.append(sc["enqueue_s"] <= st["target_enqueue_s"])
    if sd := results.get("seed"):
        out += bench_seed.verdicts(sd)
    if f := results.get("first"):
        out.append(f["met"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 100 files, 1 run each, a 65 s rate window, "
                        "30 files side by side")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections ({', '.join(SECTIONS)})")
    parser.add_argument("--files", type=int, help="pipeline and overhead files (500)")
    parser.add_argument("--workers", type=int, default=7)
    parser.add_argument("--runs", type=int, help="runs of the fast benchmarks (3)")
    parser.add_argument("--pipeline-runs", type=int, help="runs of pipeline (3)")
    parser.add_argument("--rate-runs", type=int, default=1)
    parser.add_argument("--rpm", type=int, default=300, help="the rate limit L (300)")
    parser.add_argument("--duration", type=float, help="rate-limit run seconds (150; > 60)")
    parser.add_argument("--quota-rpm", type=int, default=60,
                        help="the unannounced quota Q the emulator enforces (60)")
    parser.add_argument("--quota-duration", type=float,
                        help=f"unannounced-quota run seconds (360; > {QUOTA_WARM_S + 60:.0f})")
    parser.add_argument("--scan-files", type=int, help="scan benchmark files (10000)")
    parser.add_argument("--status-rows", type=int, help="status catalogue rows (100000)")
    parser.add_argument("--status-files", type=int,
                        help="status at scale: files enqueued and drained (20000)")
    parser.add_argument("--baseline-files", type=int,
                        help="seed section: eligible files, batches of 150 (450)")
    parser.add_argument("--baseline-runs", type=int, help="seed section: runs per condition (1)")
    parser.add_argument("--baseline-profile", default="field", choices=sorted(PROFILES),
                        help="seed section: the emulator profile (field)")
    parser.add_argument("--search-documents", type=int,
                        help="search section: documents in the store (5000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600, help="per pipeline run (s)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (libraries, homes, consumer logs)")
    parser.add_argument("--json-out", default="bench-results/bench.json")
    args = parser.parse_args(argv)
    quick = args.quick
    args.files = args.files or (100 if quick else 500)
    args.runs = args.runs or (1 if quick else 3)
    args.pipeline_runs = args.pipeline_runs or (1 if quick else 3)
    args.duration = args.duration or (65.0 if quick else 150.0)
    args.quota_duration = args.quota_duration or (200.0 if quick else 360.0)
    args.scan_files = args.scan_files or (1000 if quick else 10_000)
    args.status_rows = args.status_rows or (10_000 if quick else 100_000)
    args.status_files = args.status_files or (2_000 if quick else 20_000)
    args.baseline_files = args.baseline_files or (30 if quick else 450)
    args.baseline_runs = args.baseline_runs or 1
    args.search_documents = args.search_documents or (500 if quick else 5000)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    if "rate" in only and args.duration <= 60:
        parser.error("--duration must be over 60 s: the busiest 60 s window needs a full one")
    if "rate" in only and args.quota_duration <= QUOTA_WARM_S + 60:
        parser.error(f"--quota-duration must be over {QUOTA_WARM_S + 60:.0f} s")

    results: dict = {"machine": bl.machine(), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "options": {k: v for k, v in vars(args).items() if k != "json_out"},
                     "targets": TARGETS}
    started = time.monotonic()
    kept = tempfile.mkdtemp(prefix="objlib-bench-") if args.keep else None
    with tempfile.TemporaryDirectory(prefix="objlib-bench-") as name:
        tmp = Path(kept or name)
        if "pipeline" in only:
            results["pipeline"] = bench_pipeline(args, tmp, "realistic", args.pipeline_runs)
        if "overhead" in only:
            results["overhead"] = bench_pipeline(args, tmp, "instant", args.runs)
        if "rate" in only:
            results["rate"] = bench_rate(args, tmp)
        if "scan" in only:
            results["scan"] = bench_scan(args, tmp)
        if "status" in only:
            results["status"] = bench_status(args, tmp)
        if "seed" in only:
            results["seed"] = bench_seed.bench(args, tmp, pipeline_run, log)
        if "first" in only:
            log(f"first file: objlib upload, {args.runs} runs")
            results["first"] = bench_first_file.measure(7, args.runs, args.seed, log)
        if "search" in only:
            results["search"] = bench_search(args)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    text = table(results)
    print(text)
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out} ({results['elapsed_s']:.0f} s)")
    if kept:
        print(f"work folder kept: {kept}")
    return 0 if all(verdicts(results)) else 1


if __name__ == "__main__":
    sys.exit(main())
