"""Helpers shared by ``bench.py``, ``bench_seed.py`` and ``chaos.py``: the machine measured,
one objlib home as a child-process CLI with its consumers, the catalogue read straight from
SQLite, and percentiles. The child processes themselves (the emulator, consumers, the
``Children`` registry that kills every group left at the end) and ``wait_for`` are
``tests.support``'s, shared with the test suite.
"""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import CONSUMER_FLAGS, PYTHON, Child, Children

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def machine() -> dict:
    """Cores, platform, and the code measured (commit, and objlib files changed since)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import platform

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"cores": os.cpu_count(), "usable_cores": usable,
            "machine": f"{platform.system()} {platform.machine()} "
                       f"Python {platform.python_version()}",
            "commit": git("rev-parse", "--short", "HEAD").strip(),
            "uncommitted": git("status", "--porcelain", "--", "objlib").splitlines()}


# ---------------------------------------------------------------------------- objlib


@dataclass
class Run:
    """One objlib home pointed at one emulator."""

    home: Path
    base_url: str
    env_extra: dict

    @property
    def env(self) -> dict:
        return {"OBJLIB_HOME": str(self.home), "GOOGLE_GEMINI_BASE_URL": self.base_url,
                "PYTHONUNBUFFERED": "1", **self.env_extra}

    def cli(self, *args: str, timeout_s: float = 600.0, check: bool = True) -> str:
        """``objlib ARGS`` as a child process; its output (raises if it fails)."""
        proc = subprocess.run([PYTHON, "-m", "objlib", *args], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=timeout_s,
                              start_new_session=True)
        if check and proc.returncode != 0:
            raise RuntimeError(f"objlib {' '.join(args)} failed ({proc.returncode}):\n"
                               f"{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def consumer(self, children: Children, log_path: Path, *, workers: int = 7,
                 kind: str = "thread", extra: tuple[str, ...] = (),
                 module: str = "objlib.tasks.huey") -> Child:
        flags = list(CONSUMER_FLAGS)
        flags[1] = kind
        argv = [PYTHON, "-m", "huey.bin.huey_consumer", module, "-w", str(workers), *flags,
                *extra]
        return children.add(Child(argv, env=self.env, log_path=log_path))

    def db(self) -> sqlite3.Connection:
        """The catalogue, read-only."""
        conn = sqlite3.connect(f"file:{self.home / 'library.db'}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    def query(self, sql: str, args=()) -> list[sqlite3.Row]:
        conn = self.db()
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def states(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.query("SELECT state, count(*) FROM files GROUP BY state")}

    def eligible(self) -> int:
        return sum(n for state, n in self.states().items() if state not in ("skipped", "deleted"))

    def settled(self) -> bool:
        """Every eligible row is indexed or failed."""
        states = self.states()
        return not any(states.get(s, 0) for s in ("pending", "queued", "uploading", "importing"))

    def queue_depth(self) -> tuple[int, int]:
        path = self.home / "queue.db"
        if not path.exists():
            return 0, 0
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return (conn.execute("SELECT count(*) FROM task").fetchone()[0],
                    conn.execute("SELECT count(*) FROM schedule").fetchone()[0])
        finally:
            conn.close()


# ---------------------------------------------------------------------------- figures


def percentile(values, p: float) -> float | None:
    """The p-th percentile (0..100), linear between closest ranks; None for no values."""
    data = sorted(values)
    if not data:
        return None
    k = (len(data) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def median(values) -> float | None:
    return percentile(values, 50)


def rounded(value, digits: int = 3):
    return None if value is None else round(value, digits)
