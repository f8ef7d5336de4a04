"""The files in workers/: the systemd unit is hardened (``systemd-analyze security`` rates it
2.0 or better, when systemd-analyze is here), creates private files, needs its key file,
stops gracefully within its timeout; the Procfile fits a 30 s kill window."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKERS = Path(__file__).resolve().parent.parent / "workers"
UNIT = WORKERS / "objlib-worker.service"
MAX_EXPOSURE = 2.0
PLATFORM_KILL_WINDOW_S = 30  # what Procfile platforms commonly allow between SIGTERM and KILL


def directives(path: Path) -> dict[str, list[str]]:
    """A unit's ``Key=value`` lines (keys may repeat), comments and sections left out."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def shutdown_timeout_s(command: str) -> int:
    match = re.search(r"\s-t\s+(\d+)", command)
    assert match, f"no -t (graceful shutdown timeout) in {command!r}"
    return int(match.group(1))


def test_the_unit_creates_private_files_and_requires_its_key_file():
    unit = directives(UNIT)
    assert unit["UMask"] == ["0077"]
    assert unit["StateDirectoryMode"] == ["0700"]
    # the key comes from a file that must exist (a "-" prefix would hide a missing key)
    assert unit["EnvironmentFile"] and not any(v.startswith("-") for v in unit["EnvironmentFile"])
    assert not any("GEMINI_API_KEY" in v for v in unit.get("Environment", []))


def test_the_unit_stops_gracefully_before_systemd_kills_it():
    unit = directives(UNIT)
    assert unit["KillSignal"] == ["SIGINT"]  # huey's graceful signal
    assert unit["KillMode"] == ["control-group"]
    assert shutdown_timeout_s(unit["ExecStart"][0]) < int(unit["TimeoutStopSec"][0])


def test_the_procfile_fits_a_30_s_kill_window():
    line = next(entry for entry in (WORKERS / "Procfile").read_text().splitlines()
                if entry.startswith("worker:"))
    assert "-g TERM" in line  # platforms send SIGTERM: make it the graceful signal
    assert shutdown_timeout_s(line) <= PLATFORM_KILL_WINDOW_S - 5  # room to exit after


def test_supervisord_creates_private_files_and_waits_past_the_shutdown_timeout():
    conf = directives(WORKERS / "supervisord.conf")
    assert conf["umask"] == ["077"]
    assert conf["stopsignal"] == ["INT"]
    assert shutdown_timeout_s(conf["command"][0]) < int(conf["stopwaitsecs"][0])


def _systemd_analyze(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here (apt-get install systemd)")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def test_systemd_rates_the_unit_as_hardened(tmp_path):
    result = _systemd_analyze("security", "--offline=yes", str(UNIT))
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_systemd_verifies_the_unit(tmp_path):
    # verify checks that ExecStart exists: point it at this environment's huey_consumer
    consumer = Path(sys.executable).with_name("huey_consumer")
    if not consumer.exists():
        pytest.skip(f"no huey_consumer beside {sys.executable}")
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/objlib/.venv/bin/huey_consumer",
                                             str(consumer)))
    result = _systemd_analyze("verify", str(copy))
    assert result.returncode == 0, result.stderr
    assert "objlib-worker.service" not in result.stderr, result.stderr
