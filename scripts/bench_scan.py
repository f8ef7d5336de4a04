#!/usr/bin/env python3
"""Benchmark `objlib scan` against `sha256sum` over the same files.

    python scripts/bench_scan.py [--files 10000] [--seed 1] [--runs 3] [--json-out PATH]

Generates a sample library (scripts/make_sample_library.py) in a temporary folder, warms the
page cache, then times, each ``--runs`` times (the median is reported):

- ``find LIB -type f -print0 | xargs -0 sha256sum > /dev/null``: the floor for reading and
  hashing every byte once;
- a cold ``objlib scan`` (a fresh home each run), as a child process: wall time, and its
  ratio to sha256sum (target <= 1.5);
- a no-change re-scan of the same library (target <= 1 s);
- the peak memory (ru_maxrss) of the scan child process (target <= 200 MB).

Wall times are of whole processes (interpreter start-up included), as a user would see them.
Prints a table and writes the figures as JSON (default ``bench-results/scan.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.make_sample_library import make_library

HERE = Path(__file__).resolve().parent

TARGETS = {"cold_ratio": 1.5, "rescan_s": 1.0, "peak_rss_mb": 200.0}


def run_child(cmd: list[str], **kwargs) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one child process; raises if it fails."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text}")
    return elapsed, usage.ru_maxrss / 1024, text


def sha256sum_once(library: Path) -> float:
    started = time.perf_counter()
    subprocess.run("find . -type f -print0 | xargs -0 sha256sum > /dev/null", shell=True,
                   cwd=library, check=True)
    return time.perf_counter() - started


def scan_cmd(home: Path, library: Path) -> list[str]:
    return [sys.executable, "-m", "objlib", "--home", str(home), "scan", str(library)]


def bench(library: Path, work: Path, runs: int) -> dict:
    sha256sum_once(library)  # warm the page cache (and the scan reads the same bytes)
    sha = [sha256sum_once(library) for _ in range(runs)]
    cold, peaks = [], []
    for i in range(runs):
        elapsed, peak, output = run_child(scan_cmd(work / f"home-cold-{i}", library))
        cold.append(elapsed)
        peaks.append(peak)
    rescans = []
    for _ in range(runs):
        elapsed, peak, output = run_child(scan_cmd(work / "home-cold-0", library))
        rescans.append(elapsed)
        peaks.append(peak)
    if "unchanged" not in output:
        raise SystemExit(f"the re-scan printed no summary:\n{output}")
    files = sum(1 for p in library.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in library.rglob("*") if p.is_file())
    sha_s, cold_s, rescan_s = (statistics.median(x) for x in (sha, cold, rescans))
    return {
        "files": files, "bytes": size, "runs": runs,
        "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "machine": f"{platform.system()} {platform.machine()} Python {platform.python_version()}",
        "sha256sum_s": round(sha_s, 3), "sha256sum_runs_s": [round(x, 3) for x in sha],
        "cold_scan_s": round(cold_s, 3), "cold_scan_runs_s": [round(x, 3) for x in cold],
        "cold_ratio": round(cold_s / sha_s, 2),
        "rescan_s": round(rescan_s, 3), "rescan_runs_s": [round(x, 3) for x in rescans],
        "peak_rss_mb": round(max(peaks), 1),
        "targets": TARGETS,
    }


def verdict(figures: dict, key: str) -> str:
    return "ok" if figures[key] <= TARGETS[key] else "MISSED"


def print_table(f: dict) -> None:
    print(f"{f['files']} files, {f['bytes'] / 1e6:.1f} MB; {f['cores']} cores "
          f"({f['usable_cores']} usable); {f['machine']}; median of {f['runs']} runs")
    rows = [
        ("sha256sum (find | xargs)", f"{f['sha256sum_s']:.3f} s", "", ""),
        ("cold objlib scan", f"{f['cold_scan_s']:.3f} s",
         f"{f['cold_ratio']:.2f}x sha256sum", f"<= {TARGETS['cold_ratio']}x " +
         verdict(f, "cold_ratio")),
        ("no-change re-scan", f"{f['rescan_s']:.3f} s", "",
         f"<= {TARGETS['rescan_s']} s " + verdict(f, "rescan_s")),
        ("peak memory (scan process)", f"{f['peak_rss_mb']:.0f} MB", "",
         f"<= {TARGETS['peak_rss_mb']:.0f} MB " + verdict(f, "peak_rss_mb")),
    ]
    for row in rows:
        print(f"  {row[0]:<28} {row[1]:>10}  {row[2]:<18} {row[3]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json-out", default="bench-results/scan.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="objlib-bench-scan-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        make_library(work / "library", args.files, args.seed)
        print(f"generated {args.files} files in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
        figures = bench(work / "library", work, args.runs)
    print_table(figures)
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out}")
    ok = all(verdict(figures, key) == "ok" for key in TARGETS)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
