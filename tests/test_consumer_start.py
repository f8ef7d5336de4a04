"""A real `huey_consumer objlib.tasks.huey` refuses a home it cannot serve, with one line on
stderr and a non-zero exit (no traceback, nothing created), and says which home it serves
when it can. Importing objlib.tasks creates nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from objlib.cli import cli
from tests.support.disk import read_only, write_library
from tests.support.waits import wait_for


def environment(home: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OBJLIB_HOME"}
    if home is not None:
        env["OBJLIB_HOME"] = str(home)
    return env


def start_consumer(cwd: Path, home: Path | None, timeout_s: float = 30.0):
    """Run a consumer as a user would; one that does not stop by itself fails the test."""
    proc = subprocess.Popen([sys.executable, "-m", "huey.bin.huey_consumer", "objlib.tasks.huey",
                             "-w", "7"], cwd=cwd, env=environment(home), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the consumer kept running; it logged:\n{out}{err}")
    return proc.returncode, err


def assert_refused(code: int, stderr: str, *words: str) -> None:
    assert code != 0
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], stderr


def a_home_with_a_catalogue(home: Path, library: Path) -> None:
    write_library(library, 2)
    result = CliRunner().invoke(cli, ["--home", str(home), "scan", str(library)])
    assert result.exit_code == 0, result.output


def test_importing_the_tasks_creates_no_folder(tmp_path):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    subprocess.run([sys.executable, "-c", "import objlib.tasks"], cwd=cwd, check=True,
                   env=environment(None), timeout=60)
    assert list(cwd.iterdir()) == []


def test_a_consumer_started_elsewhere_without_objlib_home_refuses_and_creates_nothing(tmp_path):
    # Given a folder with no objlib home in it, and no OBJLIB_HOME
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    # When a consumer is started there
    code, stderr = start_consumer(cwd, home=None)
    # Then it says which folder it looked at and how to point it at the right one
    assert_refused(code, stderr, f"no catalogue in {cwd / 'data'}", "OBJLIB_HOME is not set",
                   "OBJLIB_HOME=")
    assert list(cwd.iterdir()) == []


def test_a_consumer_whose_home_is_a_file_refuses(tmp_path):
    not_a_folder = tmp_path / "home.txt"
    not_a_folder.write_text("oops")
    code, stderr = start_consumer(tmp_path, home=not_a_folder)
    assert_refused(code, stderr, f"{not_a_folder} is not a folder")
    assert not_a_folder.read_text() == "oops"


def test_a_consumer_whose_home_cannot_be_written_refuses(tmp_path, home, library):
    a_home_with_a_catalogue(home, library)
    with read_only(home):
        code, stderr = start_consumer(tmp_path, home=home)
    assert_refused(code, stderr, f"{home} is a folder this user cannot write")


def test_a_consumer_with_an_empty_catalogue_refuses_and_leaves_it(tmp_path, home):
    (home / "library.db").write_bytes(b"")
    code, stderr = start_consumer(tmp_path, home=home)
    assert_refused(code, stderr, f"{home / 'library.db'} is empty")
    assert (home / "library.db").read_bytes() == b""


def test_a_consumer_with_a_corrupt_queue_refuses_and_says_how_to_rebuild_it(tmp_path, home,
                                                                          library):
    a_home_with_a_catalogue(home, library)
    (home / "queue.db").write_bytes(b"not a queue at all " * 300)
    code, stderr = start_consumer(tmp_path, home=home)
    assert_refused(code, stderr, f"{home / 'queue.db'} is not a usable queue",
                   "objlib enqueue")


def test_a_consumer_logs_the_home_it_serves(home, library, consumers):
    a_home_with_a_catalogue(home, library)
    consumer = consumers(workers=1)
    wait_for(lambda: "consumer serving" in consumer.log(), 30, what="the start-up line")
    line = next(ln for ln in consumer.log().splitlines() if "consumer serving" in ln)
    assert str(home) in line
    assert consumer.proc.poll() is None
