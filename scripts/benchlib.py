"""Helpers shared by ``bench.py``, ``chaos.py`` and ``tests/test_chaos.py``: the emulator and
huey consumers as child processes (each in its own process group, CPU time read when it
exits), the objlib CLI as a child, the catalogue read straight from SQLite, bounded waits and
percentiles.

Every child is started with ``start_new_session=True`` and stopped through its process group,
so nothing outlives a run: use the ``Children`` registry (a context manager) and every child
still running when it closes, on an error or Ctrl+C too, is killed with its group.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
# the recommended consumer flags (workers/README.md; what `objlib worker` runs)
CONSUMER_FLAGS = ("-k", "thread", "-m", "0.5", "-t", "60")  # as shipped in workers/
_CLK_TCK = os.sysconf("SC_CLK_TCK")


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


# ---------------------------------------------------------------------------- children


class Child:
    """A child process in its own process group. ``cpu_s`` (user + system, with the children
    it reaped) is known once it has exited and been waited for here."""

    def __init__(self, argv: list[str], *, env: dict | None = None, log_path: Path | None = None,
                 cwd: Path | None = None):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, cwd=cwd,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.monotonic()
        self.exit_code: int | None = None
        self.cpu_s: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self._reap(block=False) is None

    def _reap(self, block: bool) -> int | None:
        if self.exit_code is not None:
            return self.exit_code
        try:
            pid, status, usage = os.wait4(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: no usage to read
            self.exit_code = self.proc.returncode if self.proc.returncode is not None else -1
            return self.exit_code
        if pid == 0:
            return None
        self.exit_code = self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_s = usage.ru_utime + usage.ru_stime
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.exit_code

    def live_cpu_s(self) -> float:
        """CPU seconds so far of the leader and every live process of its group (/proc)."""
        total = 0.0
        for pid in group_members(self.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / _CLK_TCK
        return total

    def signal_group(self, sig: int) -> None:
        if self.alive():
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while (code := self._reap(block=False)) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return code

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 30.0) -> int:
        """Signal the group, wait up to ``timeout_s``, then SIGKILL the group. Also kills any
        member left behind (a process worker orphaned by its parent's death)."""
        self.signal_group(sig)
        code = self.wait(timeout_s)
        if code is None:
            self.signal_group(signal.SIGKILL)
            code = self.wait(10.0)
        kill_group(self.pid)
        return code if code is not None else -9


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Children:
    """Every child started through it is stopped (group SIGKILL) when the block ends."""

    def __init__(self):
        self.children: list[Child] = []

    def add(self, child: Child) -> Child:
        self.children.append(child)
        return child

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc) -> None:
        for child in self.children:
            if child.exit_code is None:
                child.stop(signal.SIGKILL, 5.0)
            kill_group(child.pid)


# ---------------------------------------------------------------------------- the emulator


class EmulatorProcess(Child):
    """``python -m objlib emulator`` on a free loopback port (port 0, read from its output)."""

    def __init__(self, log_path: Path, *, profile: str = "realistic", faults: dict | None = None,
                 latency: dict | None = None, rpm: int | None = None, seed: int | None = None):
        argv = [PYTHON, "-m", "objlib", "emulator", "--host", "127.0.0.1", "--port", "0",
                "--profile", profile]
        for kind, rate in (faults or {}).items():
            argv += ["--fault", f"{kind}={rate}"]
        for step, seconds in (latency or {}).items():
            argv += ["--latency", f"{step}={seconds}"]
        if rpm:
            argv += ["--rpm", str(rpm)]
        if seed is not None:
            argv += ["--seed", str(seed)]
        super().__init__(argv, env={"PYTHONUNBUFFERED": "1"}, log_path=log_path)
        self.base_url = self._read_url(timeout_s=20.0)

    def _read_url(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if line.startswith("export GOOGLE_GEMINI_BASE_URL="):
                    return line.split("=", 1)[1].strip()
            if not self.alive():
                break
            time.sleep(0.05)
        self.stop(signal.SIGKILL, 2.0)
        raise RuntimeError(f"the emulator did not start:\n{self.log_path.read_text()}")

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.base_url + path, timeout=30) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict:
        return self.get("/_emulator/stats")

    def operations(self) -> list[dict]:
        return self.get("/_emulator/operations")["operations"]


def documents(stats: dict) -> list[dict]:
    """Every document of every store, from an emulator stats dict."""
    return [doc for store in stats["stores"].values()
            for per_raw_file in store["files"].values() for doc in per_raw_file]


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


def wait_until(predicate, timeout_s: float, interval_s: float = 0.2, what: str = "condition",
               on_tick=None):
    """Poll ``predicate`` until it returns something truthy; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        if on_tick is not None:
            on_tick()
        time.sleep(interval_s)


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
