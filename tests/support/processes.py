"""Child processes for tests and scripts: the emulator and huey consumers, each in its own
process group (stopped through it, so nothing outlives a run), CPU time read when it exits.

    with Children() as children:                      # every child still running at the
        emu = children.add(EmulatorProcess(log))      # end is killed with its group
        consumer = children.add(Consumer(home, log2, env={"GOOGLE_GEMINI_BASE_URL": emu.base_url}))
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PYTHON = sys.executable
# the recommended consumer flags (workers/README.md; what `objlib worker` runs)
CONSUMER_FLAGS = ("-k", "thread", "-m", "0.5", "-t", "60")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


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


# ---------------------------------------------------------------------------- consumers


class Consumer(Child):
    """A real ``huey_consumer objlib.tasks.huey`` for the objlib home ``home`` (polling the
    queue every 0.5 s at most), its output in ``log_path``."""

    def __init__(self, home: Path, log_path: Path, workers: int = 7, extra_args=(), env=None,
                 launcher=("-m", "huey.bin.huey_consumer")):
        argv = [PYTHON, *launcher, "objlib.tasks.huey",
                "-w", str(workers), "-m", "0.5", *extra_args]
        super().__init__(argv, env={"OBJLIB_HOME": str(home), **(env or {})}, log_path=log_path)

    def send(self, sig: int) -> None:
        self.signal_group(sig)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""
