#!/usr/bin/env python3
"""How fast is `objlib status` on a big catalogue? (target: under 200 ms at 100,000 rows)

    python scripts/bench_status.py [--rows 100000] [--runs 21] [--home /tmp/objlib-bench-status]

Builds a catalogue with the real migrations and fills it the way a long run leaves it: rows
in every state (mostly indexed, some in flight, failed, skipped, deleted), five history rows
per indexed file spread over the last two hours, errors, a queue holding waiting and scheduled
tasks, and a throttle with a minute of requests. Then times, from a fresh open each run:

- ``snapshot() + to_json() + json.dumps()`` in-process: what ``status --json`` does;
- ``objlib status --json`` as a command (Python start-up and imports included).

Prints the median (and min/max) of the runs.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from objlib.catalog import connect
from objlib.settings import Settings
from objlib.status import snapshot, to_json
from objlib.tasks import make_huey
from objlib.throttle import Throttle

# share of rows per state (the rest is indexed)
SHARES = {"pending": 0.03, "queued": 0.02, "uploading": 0.005, "importing": 0.01,
          "failed": 0.01, "skipped": 0.03, "deleted": 0.01}
HISTORY_SPAN_S = 2 * 3600.0
ERROR_CLASSES = ("transient", "rate_limited", "permanent", "timeout")


def build(settings: Settings, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    now = time.time()
    states = []
    for state, share in SHARES.items():
        states += [state] * int(rows * share)
    states += ["indexed"] * (rows - len(states))
    rng.shuffle(states)
    conn = connect(settings.library_db)
    conn.execute("BEGIN")
    files, history = [], []
    for file_id, state in enumerate(states, start=1):
        changed = now - rng.uniform(0, HISTORY_SPAN_S)
        files.append((file_id, f"Courses/Course {file_id % 97}/Lesson {file_id}.txt", 4096,
                      file_id, f"{file_id:064x}", state, changed - 60, changed,
                      "permanent" if state == "failed" else None,
                      "refused" if state == "failed" else None,
                      "empty file" if state == "skipped" else None))
        steps = {"indexed": ("pending", "queued", "uploading", "importing", "indexed"),
                 "failed": ("pending", "queued", "uploading", "failed")}.get(state, (state,))
        for i, to_state in enumerate(steps):
            history.append((file_id, None if i == 0 else steps[i - 1], to_state,
                            changed - 10 * (len(steps) - 1 - i)))
    conn.executemany(
        "INSERT INTO files(id, path, size, mtime_ns, content_hash, state, created_at, "
        "state_changed_at, error_class, error_message, skip_reason) "
        "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", files)
    conn.executemany("INSERT INTO history(file_id, version, from_state, to_state, at, why) "
                     "VALUES(?, 1, ?, ?, ?, 'bench')", history)
    conn.executemany("INSERT INTO errors(file_id, version, at, error_class, message) "
                     "VALUES(?, 1, ?, ?, 'bench')",
                     [(rng.randint(1, rows), now - rng.uniform(0, HISTORY_SPAN_S),
                       rng.choice(ERROR_CLASSES)) for _ in range(rows // 20)])
    conn.execute("INSERT INTO meta(key, value) VALUES('last_reconcile', ?)",
                 (json.dumps({"at": now - 600, "drift": 0, "counts": {}, "fix": False}),))
    conn.execute("COMMIT")
    conn.close()
    print(f"catalogue: {rows} files, {len(history)} history rows, {rows // 20} errors")

    q = make_huey(settings)
    in_flight = [i for i, s in enumerate(states, start=1) if s in ("queued", "importing")]
    for file_id in in_flight:
        if states[file_id - 1] == "importing":
            q.add_schedule(q.poll_import.s(file_id, 1))
        else:
            q.enqueue(q.upload_and_import.s(file_id, 1))
    q.storage.close()
    throttle = Throttle.from_settings(settings)
    for i in range(600):
        throttle.record(429 if i % 50 == 0 else 200, now=now - i * 0.1)
    throttle.close()


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def report(name: str, ms: list[float]) -> None:
    print(f"{name:<44} median {statistics.median(ms):7.1f} ms   "
          f"min {min(ms):7.1f}   max {max(ms):7.1f}   ({len(ms)} runs)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--home", type=Path, default=Path("/tmp/objlib-bench-status"))
    args = parser.parse_args()

    shutil.rmtree(args.home, ignore_errors=True)
    settings = Settings.load(args.home)
    build(settings, args.rows)

    in_process = timed(lambda: json.dumps(to_json(snapshot(settings))), args.runs)
    command = timed(lambda: subprocess.run(
        [sys.executable, "-m", "objlib", "--home", str(args.home), "status", "--json"],
        check=True, capture_output=True), max(3, args.runs // 4))
    files = to_json(snapshot(settings))["files"]
    print(f"files per state: {files}")
    report(f"status --json in-process ({args.rows} rows)", in_process)
    report("objlib status --json (a new process)", command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
