"""Shared fixtures: every test gets its own OBJLIB_HOME; the emulator runs on a free port."""

from __future__ import annotations

import os

import pytest

from objlib.settings import Settings

# Property-based tests (hypothesis): `ci` keeps `make test` quick; `deep` is the long run
# (HYPOTHESIS_PROFILE=deep), whose example counts docs/architecture.md reports.
try:
    from hypothesis import HealthCheck, settings as hypothesis_settings

    _PROFILE = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    hypothesis_settings.register_profile("ci", max_examples=40, stateful_step_count=30,
                                         **_PROFILE)
    hypothesis_settings.register_profile("deep", max_examples=3000, stateful_step_count=80,
                                         **_PROFILE)
    hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # an install without the dev extra: the property tests are not collected
    pass


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A fresh OBJLIB_HOME per test, and no stray Gemini variables from the machine."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("OBJLIB_HOME", str(home))
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "OBJLIB_LOG_JSON",
                "OBJLIB_RPM", "OBJLIB_STORE"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def settings(home) -> Settings:
    return Settings.load(home)


@pytest.fixture
def emulator(monkeypatch):
    """The local Gemini emulator on a free port (instant profile); the SDK is pointed at it."""
    from objlib.emulator import Emulator

    with Emulator(profile="instant", seed=1) as emu:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        yield emu


# ------------------------------------------------------------------ the pipeline, for real

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def wait_for(predicate, timeout_s: float = 60.0, interval_s: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what} (last: {value!r})")
        time.sleep(interval_s)


class Consumer:
    """A real `huey_consumer objlib.tasks.huey` process (its own process group)."""

    def __init__(self, home: Path, log_path: Path, workers: int = 7, extra_args=(), env=None):
        self.log_path = log_path
        argv = [sys.executable, "-m", "huey.bin.huey_consumer", "objlib.tasks.huey",
                "-w", str(workers), "-m", "0.5", *extra_args]
        full_env = {**os.environ, "OBJLIB_HOME": str(home), **(env or {})}
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, env=full_env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 20.0) -> int:
        self.send(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            return self.proc.wait(10)
        finally:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def consumers(tmp_path, home, emulator):
    """Start real consumer processes against this test's home and emulator; all are stopped
    (whole process group) at the end."""
    started: list[Consumer] = []

    def start(workers: int = 7, extra_args=(), env=None) -> Consumer:
        c = Consumer(home, tmp_path / f"consumer-{len(started)}.log", workers, extra_args,
                     {"GOOGLE_GEMINI_BASE_URL": emulator.base_url, **(env or {})})
        started.append(c)
        return c

    yield start
    for c in started:
        if c.proc.poll() is None:
            c.stop(signal.SIGKILL)


def write_library(root: Path, count: int, *, size: int = 2000, prefix: str = "Notes") -> list[Path]:
    """``count`` small, distinct, valid text files under ``root/prefix``."""
    folder = root / prefix
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = folder / f"note {i:04d}.txt"
        line = f"Note {i}: the quick brown fox jumps over the lazy dog. "
        p.write_text((line * (size // len(line) + 1))[:size], encoding="utf-8")
        paths.append(p)
    return paths


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "library"
    root.mkdir()
    return root


def file_states(settings) -> dict[str, int]:
    from objlib.catalog import open_catalog

    catalog = open_catalog(settings)
    try:
        return {r[0]: r[1] for r in catalog.query(
            "SELECT state, count(*) FROM files GROUP BY state")}
    finally:
        catalog.close()


def queued(ctx, file_id: int = 1, task_id: str = "task-1"):
    """The row handed to a task (as enqueue does), for the in-process pipeline tests."""
    from objlib.catalog import lifecycle as lc

    row = lc.get(ctx.catalog, file_id)
    assert lc.mark_queued(ctx.catalog, row.id, row.version, task_id, time.time())
    return lc.get(ctx.catalog, file_id)
