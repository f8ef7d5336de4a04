#!/usr/bin/env python3
"""How fast is `objlib status` on a big catalogue, and `objlib enqueue` of a big library?

    python scripts/bench_status.py [--rows 100000] [--runs 21] [--home /tmp/objlib-bench-status]
    python scripts/bench_status.py --at-scale [--files 20000] [--rows 100000] [--runs 9]

Without ``--at-scale``: builds a catalogue with the real migrations and fills it the way a
long run leaves it: rows in every state (mostly indexed, some in flight, failed, skipped,
deleted), five history rows per indexed file spread over the last two hours, errors, a queue
holding waiting and scheduled tasks, and a throttle with a minute of requests. Then times,
from a fresh open each run:

- ``snapshot() + to_json() + json.dumps()`` in-process: what ``status --json`` does;
- ``objlib status --json`` as a command (Python start-up and imports included).

With ``--at-scale`` (``at_scale``; the ``status`` section of ``make bench``): ``--files``
small text files are scanned into a home, a real ``huey_consumer objlib.tasks.huey -w 7``
(the recommended flags) starts against the ``instant`` emulator, then ``objlib enqueue`` of
every file is timed as a command, and ``objlib status --json`` is timed as a new process
``--runs`` times while the workers drain the queue (each answer must still show work
waiting). Twice: a catalogue of exactly those files, and one padded to ``--rows`` with
indexed rows of earlier runs (history included), as a long-lived library's is. Commands
run as an installed objlib's do (the ``objlib`` console script), with its bytecode cached
(a temporary ``PYTHONPYCACHEPREFIX``; a ``PYTHONDONTWRITEBYTECODE`` in the environment
would make every new process compile objlib from source).

Prints the median (and min/max) of the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from objlib.catalog import connect
from objlib.settings import Settings
from objlib.status import snapshot, to_json
from objlib.tasks import make_huey
from objlib.throttle import Throttle
from scripts import benchlib as bl
from tests.support.processes import PYTHON, Children, EmulatorProcess
from tests.support.waits import wait_for

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


# ---------------------------------------------------------------------------- at scale


def small_library(root: Path, files: int) -> None:
    """``files`` small text files (~250 bytes) named by the library's conventions: what the
    queue and the catalogue see of a big library, without writing gigabytes."""
    for i in range(files):
        course = f"Course {i % 40:02d}"
        folder = root / "Courses" / course
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{course} - Lesson {i + 1} - Topic {i % 13}.txt").write_text(
            f"Lesson {i + 1} of {course}.\n" + "reason and reality " * 12 + "\n")


def pad(settings: Settings, rows: int, seed: int = 7) -> int:
    """Indexed rows of earlier runs up to ``rows`` in all (paths not on disk; five history
    rows each, spread over the last two hours, as ``build`` writes them); the rows added."""
    rng = random.Random(seed)
    now = time.time()
    conn = connect(settings.library_db)
    try:
        have = conn.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM files").fetchone()
        add = max(0, rows - have[0])
        files, history = [], []
        for file_id in range(have[1] + 1, have[1] + 1 + add):
            done = now - rng.uniform(0, HISTORY_SPAN_S)
            files.append((file_id, f"Archive/Course {file_id % 97}/Lesson {file_id}.txt", 4096,
                          file_id, f"{file_id:064x}", done - 60, done, done,
                          f"fileSearchStores/bench/documents/d{file_id}"))
            steps = ("pending", "queued", "uploading", "importing", "indexed")
            history += [(file_id, None if i == 0 else steps[i - 1], step, done - 10 * (4 - i))
                        for i, step in enumerate(steps)]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO files(id, path, size, mtime_ns, content_hash, state, created_at, "
            "state_changed_at, indexed_at, document) VALUES(?, ?, ?, ?, ?, 'indexed', ?, ?, ?, ?)",
            files)
        conn.executemany("INSERT INTO history(file_id, version, from_state, to_state, at, why) "
                         "VALUES(?, 1, ?, ?, ?, 'bench')", history)
        conn.execute("COMMIT")
        return add
    finally:
        conn.close()


def installed_bytecode(cache: Path) -> dict:
    """The environment of a child that runs objlib as installed: its modules' bytecode
    written once (to ``cache``) and read by every later process, whatever
    ``PYTHONDONTWRITEBYTECODE`` says here (set, every new process compiled objlib from
    source: ~30 % of a ``status`` process's instructions)."""
    return {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(cache)}


def objlib_command() -> list[str]:
    """``objlib`` as a user types it: the console script next to this Python (``make``
    installs it), else ``python -m objlib``."""
    script = Path(PYTHON).with_name("objlib")
    return [str(script)] if script.is_file() else [PYTHON, "-m", "objlib"]


def timed_command(argv: list[str], env: dict) -> tuple[float, float, str]:
    """(wall s, CPU s, stdout) of one child process, as a user's shell runs it; raises if it
    fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{err.read().decode(errors='replace')}")
        return wall, usage.ru_utime + usage.ru_stime, out.read().decode()


def at_scale_run(work: Path, library: Path, files: int, rows: int, runs: int,
                 workers: int = 7) -> dict:
    """One home: the library scanned (padded to ``rows``), a consumer started, ``objlib
    enqueue`` timed, then ``objlib status --json`` timed ``runs`` times while it drains."""
    work.mkdir(parents=True, exist_ok=True)
    bytecode = installed_bytecode(work.parent / "pyc")
    with Children() as children:
        emu = children.add(EmulatorProcess(work / "emulator.log", profile="instant"))
        run = bl.Run(work / "home", emu.base_url, bytecode)
        run.cli("scan", str(library))
        padded = pad(Settings.load(run.home), rows)
        status = [*objlib_command(), "status", "--json"]
        timed_command(status, run.env)  # the bytecode of every module it imports, cached
        log_path = work / "consumer.log"
        consumer = run.consumer(children, log_path, workers=workers)
        wait_for(lambda: "consumer started" in log_path.read_text(errors="replace"), 60,
                 what="the consumer to start")
        load = [round(os.getloadavg()[0], 2)]
        enqueue_s, enqueue_cpu_s, _ = timed_command([*objlib_command(), "enqueue"], run.env)
        wall, cpu, answers = [], [], []
        for _ in range(runs):
            w, c, out = timed_command(status, run.env)
            wall.append(w * 1000)
            cpu.append(c * 1000)
            answers.append(json.loads(out))
        load.append(round(os.getloadavg()[0], 2))
        draining = consumer.alive() and all(
            a["queue"]["waiting"] > 0 and a["progress"]["remaining"] > 0 for a in answers)
        indexed = [a["files"]["indexed"] - padded for a in answers]
        consumer.stop()
    return {"files": files, "rows": files + padded, "workers": workers,
            "enqueue_s": round(enqueue_s, 3), "enqueue_cpu_s": round(enqueue_cpu_s, 3),
            "status_ms": round(statistics.median(wall), 1),
            "status_runs_ms": [round(x) for x in wall],
            "status_cpu_ms": round(statistics.median(cpu), 1),
            "indexed_while_measured": [indexed[0], indexed[-1]],
            "draining": draining, "load_average": load}


def at_scale(work: Path, files: int, rows: int, runs: int, log=print,
             workers: int = 7) -> list[dict]:
    """``at_scale_run`` on a catalogue of ``files`` rows, then on one of ``rows``."""
    library = work / "library"
    started = time.perf_counter()
    small_library(library, files)
    log(f"  {files} small files written in {time.perf_counter() - started:.1f} s")
    out = []
    for total in sorted({files, max(rows, files)}):
        log(f"  enqueue + status while {workers} workers drain: {files} files, {total} rows")
        out.append(at_scale_run(work / f"rows-{total}", library, files, total, runs, workers))
        r = out[-1]
        log(f"    enqueue {r['enqueue_s']} s; status --json median {r['status_ms']} ms "
            f"(CPU {r['status_cpu_ms']} ms); load {r['load_average']}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--home", type=Path, default=Path("/tmp/objlib-bench-status"))
    parser.add_argument("--at-scale", action="store_true",
                        help="enqueue and status beside a draining consumer")
    parser.add_argument("--files", type=int, default=20_000, help="with --at-scale")
    args = parser.parse_args()

    if args.at_scale:
        with tempfile.TemporaryDirectory(prefix="objlib-bench-scale-") as tmp:
            results = at_scale(Path(tmp), args.files, args.rows, args.runs)
        print(json.dumps(results, indent=2))
        return 0
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
