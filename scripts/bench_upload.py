#!/usr/bin/env python3
"""Wall time of ``objlib upload`` next to the same work done by ``objlib enqueue`` +
``huey_consumer objlib.tasks.huey -w 7 -m 1``, on the emulator's ``realistic`` profile.

    python scripts/bench_upload.py [--files 500] [--runs 2] [--seed 1] [--json-out PATH]

Generates a sample library (scripts/make_sample_library.py), scans it into two fresh homes per
round (not timed), serves one emulator per measurement in this process, and times as child
processes, alternating which goes first:

- ``objlib upload``: from its start to its exit (enqueue, 7 worker threads, stop, summary);
- ``objlib enqueue`` then ``huey_consumer objlib.tasks.huey -w 7 -m 1``: from the enqueue's
  start until every eligible file is indexed (the catalogue is polled every 50 ms), and until
  the consumer has exited after a SIGINT sent then.

Wall times are of whole processes (interpreter start-up included), as a user would see them.
Prints a table and writes the figures as JSON (default ``bench-results/upload.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from objlib.emulator import Emulator
from scripts.make_sample_library import make_library

HERE = Path(__file__).resolve().parent


def _env(home: Path, emu: Emulator) -> dict:
    return {**os.environ, "OBJLIB_HOME": str(home), "GOOGLE_GEMINI_BASE_URL": emu.base_url}


def _scan(home: Path, library: Path) -> int:
    """Scan into a fresh home; returns how many files are eligible (pending)."""
    subprocess.run([sys.executable, "-m", "objlib", "--home", str(home), "scan", str(library)],
                   check=True, capture_output=True)
    with sqlite3.connect(home / "library.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM files WHERE state='pending'").fetchone()[0]


def _count(home: Path, *states: str) -> int:
    with sqlite3.connect(home / "library.db", timeout=30) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM files WHERE state IN "
                            f"({','.join('?' * len(states))})", states).fetchone()[0]


def time_upload(home: Path, emu: Emulator) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "objlib", "upload"], env=_env(home, emu),
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"objlib upload exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return {"wall_s": round(wall, 3)}


def time_enqueue_and_consumer(home: Path, emu: Emulator, eligible: int) -> dict:
    env = _env(home, emu)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "objlib", "enqueue"], env=env, check=True,
                   capture_output=True)
    enqueued = time.perf_counter() - started
    consumer = subprocess.Popen([sys.executable, "-m", "huey.bin.huey_consumer",
                                 "objlib.tasks.huey", "-w", "7", "-m", "1"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        while _count(home, "indexed", "failed") < eligible:
            if consumer.poll() is not None:
                raise SystemExit(f"huey_consumer exited {consumer.returncode}")
            time.sleep(0.05)
        indexed = time.perf_counter() - started
        consumer.send_signal(signal.SIGINT)
        consumer.wait(60)
        stopped = time.perf_counter() - started
    finally:
        if consumer.poll() is None:
            os.killpg(consumer.pid, signal.SIGKILL)
            consumer.wait()
    return {"wall_s": round(indexed, 3), "enqueue_s": round(enqueued, 3),
            "until_consumer_exited_s": round(stopped, 3)}


def measure(kind: str, library: Path, work: Path, seed: int) -> dict:
    home = work / f"home-{kind}"
    eligible = _scan(home, library)
    with Emulator(profile="realistic", seed=seed) as emu:
        figures = (time_upload(home, emu) if kind == "upload"
                   else time_enqueue_and_consumer(home, emu, eligible))
        stats = emu.stats()
    indexed = _count(home, "indexed")
    figures.update(eligible=eligible, indexed=indexed,
                   imports=stats["requests"].get("stores.importFile", 0),
                   files_per_s=round(indexed / figures["wall_s"], 2))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json-out", default="bench-results/upload.json")
    args = parser.parse_args(argv)

    results: dict[str, list[dict]] = {"upload": [], "enqueue+consumer": []}
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        work = Path(tmp)
        make_library(work / "library", args.files, seed=args.seed)
        for i in range(args.runs):
            order = list(results) if i % 2 == 0 else list(reversed(results))
            for kind in order:
                figures = measure(kind, work / "library", work / f"round-{i}", args.seed + i)
                results[kind].append(figures)
                print(f"round {i + 1} {kind:17} {figures}", flush=True)

    summary = {kind: {"median_wall_s": statistics.median(r["wall_s"] for r in runs),
                      "runs": runs} for kind, runs in results.items()}
    print(f"\n{args.files} generated files, realistic profile, 7 workers, "
          f"median of {args.runs} run(s):")
    print(f"{'':20} {'wall s':>8} {'files/s':>8} {'indexed':>8} {'imports':>8}")
    for kind, s in summary.items():
        last = s["runs"][-1]
        rate = last["indexed"] / s["median_wall_s"] if s["median_wall_s"] else 0.0
        print(f"{kind:20} {s['median_wall_s']:8.2f} {rate:8.2f} {last['indexed']:8} "
              f"{last['imports']:8}")
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"files": args.files, "profile": "realistic", "workers": 7,
                               "machine": {"python": platform.python_version(),
                                           "cpus": os.cpu_count()},
                               "results": summary}, indent=2))
    print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
