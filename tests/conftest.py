"""Shared fixtures: every test gets its own OBJLIB_HOME; the emulator runs on a free port.
The helpers the fixtures use live in ``tests.support`` (shared with ``scripts/``)."""

from __future__ import annotations

import os
import signal

import pytest
import stamina

from objlib.settings import Settings
from tests.support.processes import Consumer

# Property-based tests (hypothesis): `ci` keeps `make test` quick; `deep` is the long run
# (HYPOTHESIS_PROFILE=deep), whose example counts docs/architecture.md reports.
try:
    from hypothesis import HealthCheck
    from hypothesis import settings as hypothesis_settings

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


@pytest.fixture(autouse=True)
def no_retry_waits():
    """In-process retries (``objlib.retry``, on stamina) make every attempt but do not wait
    in the tests' own process (test_retry checks the waits)."""
    with stamina.set_testing(True, attempts=1_000, cap=True):
        yield


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


@pytest.fixture
def consumers(tmp_path, home, emulator):
    """Start real consumer processes against this test's home and emulator; all are stopped
    (whole process group) at the end."""
    started: list[Consumer] = []

    def start(workers: int = 7, extra_args=(), env=None, launcher=None) -> Consumer:
        c = Consumer(home, tmp_path / f"consumer-{len(started)}.log", workers, extra_args,
                     {"GOOGLE_GEMINI_BASE_URL": emulator.base_url, **(env or {})},
                     **({"launcher": launcher} if launcher else {}))
        started.append(c)
        return c

    yield start
    for c in started:
        if c.alive():
            c.stop(signal.SIGKILL)


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "library"
    root.mkdir()
    return root
