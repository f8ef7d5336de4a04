"""One log stream per process: objlib's structlog events and the standard library's records
(huey's) leave through the same handler as JSON lines in a worker, honouring huey_consumer's
``-l FILE`` and level; every line written while a task runs names the task; and a command
that logs nothing never pays for structlog."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from objlib import log
from objlib.cli import cli
from tests.support.catalogue import file_states
from tests.support.disk import write_library
from tests.support.waits import wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def restore_logging():
    """Whatever a test does to the root and huey loggers is undone after it."""
    root, huey = logging.getLogger(), logging.getLogger("huey")
    saved = (list(root.handlers), root.level, list(huey.handlers), huey.level, huey.propagate)
    yield
    root.handlers[:], huey.handlers[:] = saved[0], saved[2]
    root.setLevel(saved[1])
    huey.setLevel(saved[3])
    huey.propagate = saved[4]
    logging.captureWarnings(False)
    log.configure_lazily()


def as_huey_consumer_would(stream, level=logging.INFO) -> None:
    """What ``huey_consumer`` does before it builds the consumer (its setup_logger)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s:%(name)s:%(message)s"))
    huey = logging.getLogger("huey")
    huey.addHandler(handler)
    huey.setLevel(level)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_worker_writes_huey_records_and_objlib_events_as_one_json_stream(restore_logging):
    # Given huey_consumer's handler on the huey logger
    stream = io.StringIO()
    as_huey_consumer_would(stream)
    # When the worker configures logging and both kinds of line are written during a task
    log.configure_worker()
    with log.bind_task("task-7", "upload_and_import"):
        logging.getLogger("huey").info("Executing %s", "task-7")
        log.get_logger("objlib.worker").info("uploaded", file_id=3, api_key="secret-value")
    logging.getLogger("huey.consumer").info("Huey consumer started")
    # Then every line is JSON, in the one stream huey_consumer chose
    lines = json_lines(stream.getvalue())
    assert [line["event"] for line in lines] == ["Executing task-7", "uploaded",
                                                  "Huey consumer started"]
    assert [line["logger"] for line in lines] == ["huey", "objlib.worker", "huey.consumer"]
    # and the lines written inside the task carry its id; the one outside does not
    assert [line.get("task_id") for line in lines] == ["task-7", "task-7", None]
    assert lines[1]["file_id"] == 3 and lines[1]["api_key"] == "***"
    assert "secret-value" not in stream.getvalue()
    assert all(line["level"] == "info" and line["timestamp"] for line in lines)


def test_a_logger_made_before_a_reconfiguration_writes_where_the_new_one_says(
        restore_logging):
    """Loggers keep their structlog logger between events (one per configuration): a new
    configuration must still reach a logger that has already written, and a level filtered
    out must stay out whichever way the event is sent."""
    first, second = io.StringIO(), io.StringIO()
    logger = log.get_logger("objlib.worker")
    log.configure(json=True, handlers=[logging.StreamHandler(first)])
    logger.info("one")
    logger.debug("dropped at INFO")
    log.configure(json=True, level=logging.DEBUG, handlers=[logging.StreamHandler(second)])
    logger.info("two")
    logger.debug("kept at DEBUG", step="poll")

    assert [line["event"] for line in json_lines(first.getvalue())] == ["one"]
    assert [(line["event"], line["level"]) for line in json_lines(second.getvalue())] == [
        ("two", "info"), ("kept at DEBUG", "debug")]


def test_a_library_warning_in_a_worker_is_a_json_line_too(restore_logging):
    import warnings

    stream = io.StringIO()
    as_huey_consumer_would(stream)
    log.configure_worker()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("this SDK call is deprecated", DeprecationWarning, stacklevel=1)
    (line,) = json_lines(stream.getvalue())
    assert line["logger"] == "py.warnings" and "deprecated" in line["event"]


def test_a_quiet_worker_writes_warnings_only(restore_logging):
    stream = io.StringIO()
    as_huey_consumer_would(stream, level=logging.WARNING)  # huey_consumer -q
    log.configure_worker()
    log.get_logger("objlib.worker").info("uploaded")
    logging.getLogger("huey").info("Executing x")
    log.get_logger("objlib.worker").warning("recovered stuck rows", requeued=1)
    assert [line["event"] for line in json_lines(stream.getvalue())] == ["recovered stuck rows"]


def test_a_verbose_worker_writes_debug_lines_but_not_httpx_requests(restore_logging):
    stream = io.StringIO()
    as_huey_consumer_would(stream, level=logging.DEBUG)  # huey_consumer -v
    log.configure_worker()
    log.get_logger("objlib.worker").debug("looked")
    logging.getLogger("httpx").info("HTTP Request: GET ...")
    assert [line["event"] for line in json_lines(stream.getvalue())] == ["looked"]


def test_a_real_task_run_by_huey_logs_with_its_id(restore_logging, settings):
    # Given a task huey runs in this process (recovery meeting a catalogue it cannot use)
    from objlib import tasks

    stream = io.StringIO()
    as_huey_consumer_would(stream)
    log.configure_worker()
    settings.library_db.write_bytes(b"")
    queue = tasks.make_huey(settings)
    task = queue.recover_stuck.s()
    # When huey executes it
    queue.execute(task)
    # Then huey's lines and objlib's error line all name the task
    lines = [line for line in json_lines(stream.getvalue()) if line.get("task_id") == task.id]
    loggers = {line["logger"] for line in lines}
    assert {"huey", "objlib.worker"} <= loggers, lines
    assert any(line["event"].startswith("skipped: the database") for line in lines)


def test_an_exception_is_one_json_line_with_its_traceback(restore_logging):
    stream = io.StringIO()
    as_huey_consumer_would(stream)
    log.configure_worker()
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("huey").exception("Unhandled exception in task %s.", "t")
    (line,) = json_lines(stream.getvalue())
    assert line["level"] == "error" and "ValueError: boom" in line["exception"]


def test_the_cli_logs_for_the_console_only_when_something_is_logged(restore_logging, settings):
    code = ("import sys; from objlib.cli import cli; "
            "cli(['status', '--json'], standalone_mode=False); "
            "sys.stderr.write('structlog imported' if 'structlog' in sys.modules else 'no')")
    write_library(settings.home.parent / "lib", 1)
    CliRunner().invoke(cli, ["scan", str(settings.home.parent / "lib")], catch_exceptions=False)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "OBJLIB_HOME": str(settings.home),
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"]["pending"] == 1
    assert done.stderr == "no"


def test_an_event_below_the_wanted_level_configures_nothing(restore_logging, capsys):
    log.configure_lazily(level=logging.INFO)
    log.get_logger("objlib.scan").debug("scan.finished", files=2)
    assert not log._applied and capsys.readouterr().err == ""
    log.get_logger("objlib.scan").warning("scan.warning", message="odd")
    assert log._applied and "scan.warning" in capsys.readouterr().err


def test_an_event_at_the_wanted_level_is_written(restore_logging, capsys):
    log.configure_lazily(level=logging.DEBUG)
    log.get_logger("objlib.scan").debug("scan.finished", files=2)
    assert "scan.finished" in capsys.readouterr().err


def test_cli_json_logging_applies_at_the_first_event(restore_logging, settings, capsys):
    log.configure_lazily(json=True)
    log.get_logger("objlib.scan").info("scanned", files=2)
    (line,) = json_lines(capsys.readouterr().err)
    assert line["event"] == "scanned" and line["files"] == 2


# ---------------------------------------------------------------------------- real consumers


def worker_lines(text: str) -> list[dict]:
    """Every line a consumer wrote, each of which must be a JSON object."""
    lines = []
    for raw in text.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            pytest.fail(f"not a JSON line: {raw!r}")
    return lines


def task_ids(settings) -> set[str]:
    from objlib.catalog import open_catalog

    catalog = open_catalog(settings)
    try:
        return {r[0] for r in catalog.query("SELECT task_id FROM files")}
    finally:
        catalog.close()


@pytest.mark.slow
def test_a_real_consumer_with_a_log_file_writes_one_json_stream_there(
        settings, library, consumers, monkeypatch, tmp_path):
    from objlib.enqueue import enqueue

    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    write_library(library, 3)
    CliRunner().invoke(cli, ["scan", str(library)], catch_exceptions=False)
    enqueue(settings)
    enqueued = task_ids(settings)
    log_file = tmp_path / "worker.log"

    consumer = consumers(workers=2, extra_args=["-l", str(log_file)])
    wait_for(lambda: file_states(settings) == {"indexed": 3}, 30, what="3 files indexed")
    consumer.stop()

    assert consumer.log() == ""  # nothing on stdout or stderr: all of it went to the file
    lines = worker_lines(log_file.read_text())
    loggers = {line["logger"] for line in lines}
    assert {"huey", "huey.consumer", "objlib.worker"} <= loggers
    # every objlib step and every huey line about a task names the task it belongs to
    steps = [line for line in lines if "step" in line]
    assert steps and all(line.get("task_id") for line in steps)
    executing = [line for line in lines if line["event"].startswith("Executing")]
    assert executing and all(line["task_id"] in line["event"] for line in executing)
    uploads = {line["task_id"] for line in steps if line["step"] == "upload"}
    assert enqueued <= uploads and len(enqueued) == 3  # (+ any a start-up recovery made)


@pytest.mark.slow
def test_a_real_consumer_without_a_log_file_writes_json_lines_only_to_stderr(
        settings, library, consumers, monkeypatch):
    from objlib.enqueue import enqueue

    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    write_library(library, 1)
    CliRunner().invoke(cli, ["scan", str(library)], catch_exceptions=False)
    enqueue(settings)
    # (stopped once it has worked: a SIGINT before huey sets its handlers is a raw traceback)
    consumer = consumers(workers=1)
    wait_for(lambda: file_states(settings) == {"indexed": 1}, 30, what="the file indexed")
    consumer.stop()
    lines = worker_lines(consumer.log())
    assert {"huey", "huey.consumer", "objlib.worker"} <= {line["logger"] for line in lines}
    assert all(line.get("task_id") for line in lines if "step" in line)
