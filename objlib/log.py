"""Logging: structlog events and the standard library's records (huey's, httpx's) through one
``logging`` handler, formatted by structlog's ``ProcessorFormatter`` — a console renderer for
the CLI, JSON lines for workers. A worker process writes ONE stream of JSON lines, huey's
own included, where ``huey_consumer -l FILE / -v / -q`` says; every line written while a task
runs carries its ``task_id`` (``bind_task``).

    log = get_logger("objlib.queue")     # at import: costs nothing, imports no structlog
    log.info("enqueued", files=3)        # the first event applies the configuration

Configured lazily: ``configure_lazily`` (the CLI) only records what is wanted, and structlog
is imported and set up by the first event. A read-only command that logs nothing
(``objlib status --json``) never imports structlog (~130 ms of imports on a small machine),
nor the standard ``logging`` (5 % of that process's instructions): this module imports it
where it is used.
"""

from __future__ import annotations

import functools
import sys
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

# logging's levels (the module itself is imported where it is used)
DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50

_SECRET_KEYS = {"api_key", "key", "x-goog-api-key", "authorization"}
# third-party loggers that would drown the stream at INFO (one line per HTTP request)
_NOISY = ("httpx", "httpx2", "httpcore", "google_genai")

_lock = threading.RLock()
_wanted: dict | None = None  # configure_lazily's choice, applied by the first event
_applied = False
_generation = 0  # moved on by every configuration: loggers made before are made again


def _drop_secrets(_logger, _name, event_dict):
    for k in list(event_dict):
        if k.lower() in _SECRET_KEYS:
            event_dict[k] = "***"
    return event_dict


def _origin(_logger, _name, event_dict):
    """Which process and thread wrote the line (a consumer's workers share its stream)."""
    record = event_dict.get("_record")
    if record is not None:
        event_dict.setdefault("pid", record.process)
        event_dict.setdefault("thread", record.threadName)
    return event_dict


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written, not when logging was configured
    (a CLI runner or a test's capture may replace it, then close it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _formatter(json: bool, colors: bool):
    import structlog

    shared: list[Any] = [structlog.contextvars.merge_contextvars, structlog.stdlib.add_log_level,
              structlog.stdlib.add_logger_name,
              structlog.processors.TimeStamper(fmt="iso", utc=True)]
    render: list[Any]
    if json:  # a worker's stream: which process and thread wrote each line
        render = [_origin, structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                  _drop_secrets, structlog.processors.format_exc_info,
                  structlog.processors.JSONRenderer()]
    else:
        render = [structlog.stdlib.ProcessorFormatter.remove_processors_meta, _drop_secrets,
                  structlog.dev.ConsoleRenderer(colors=colors)]
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=render)


def configure(json: bool = False, level: int = INFO, stream=None,
              handlers: list[logging.Handler] | None = None, quiet_huey: bool = True) -> None:
    """Send structlog's events and every stdlib record at ``level`` or above through
    ``handlers`` (default: one stream handler on ``stream``, or stderr as it is at write
    time), each line rendered as JSON or for the console. ``quiet_huey``: huey's INFO lines
    (one per task) are left out, as a command wants; a worker keeps them."""
    import logging

    import structlog

    global _applied, _generation
    with _lock:
        stream = stream or _CurrentStderr()
        if handlers is None:
            handlers = [logging.StreamHandler(stream)]
        colors = not json and bool(getattr(stream, "isatty", lambda: False)())
        formatter = _formatter(json, colors)
        root = logging.getLogger()
        # objlib's handler is marked, and replaced (not stacked) when logging is configured
        # again; other handlers (pytest's, a host program's) are left alone
        for old in [h for h in root.handlers if getattr(h, "objlib", False)]:
            root.removeHandler(old)
        for handler in handlers:
            handler.setFormatter(formatter)
            setattr(handler, "objlib", True)  # noqa: B010 — marks objlib's own handler
            root.addHandler(handler)
        root.setLevel(level)
        for name in _NOISY:
            logging.getLogger(name).setLevel(max(level, logging.WARNING))
        logging.getLogger("huey").setLevel(max(level, logging.WARNING) if quiet_huey else level)
        structlog.configure(
            processors=[structlog.stdlib.filter_by_level, structlog.contextvars.merge_contextvars,
                        structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                        structlog.processors.TimeStamper(fmt="iso", utc=True),
                        structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=False,
        )
        # the lines carry no caller (function, line): spare logging the frame walk that
        # finds it for every record (logging's documented optimisation; objlib's own
        # processes only, never a host program's: see configure_for_library)
        logging._srcfile = None
        _applied, _generation = True, _generation + 1


def configure_lazily(json: bool = False, level: int = INFO) -> None:
    """What the CLI wants, applied by the first event (a command that logs nothing pays
    nothing). Replaces an earlier configuration of this process at that moment."""
    global _wanted, _applied, _generation
    with _lock:
        _wanted, _applied, _generation = {"json": json, "level": level}, False, _generation + 1


def configure_worker() -> None:
    """A huey consumer's process: JSON lines, huey's records and objlib's events in one
    stream. ``huey_consumer`` has put its handler (stderr, or ``-l FILE``) on the ``huey``
    logger and its level (``-v`` DEBUG, ``-q`` WARNING, else INFO) there; that handler now
    serves the root logger instead, so objlib's events (and httpx's warnings) go where
    huey's lines go, at the level huey_consumer was given."""
    import logging

    huey_logger = logging.getLogger("huey")
    handlers = [h for h in huey_logger.handlers if not getattr(h, "objlib", False)]
    for handler in handlers:
        huey_logger.removeHandler(handler)
    huey_logger.propagate = True
    level = huey_logger.level or logging.INFO
    huey_logger.setLevel(level)
    configure(json=True, level=level, handlers=handlers or None, quiet_huey=False)
    logging.captureWarnings(True)  # a library's warnings.warn: a JSON line too, not raw text


@functools.cache
def _record_fields() -> frozenset[str]:
    import logging

    return (frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
            | {"message", "asctime"}) - {"exc_info", "stack_info"}  # logging's own kwargs


def _as_record_extra(_logger, _name, event_dict):
    """Fields named like a LogRecord attribute (``name``, ``thread``, ...) get a trailing
    ``_``: ``logging`` refuses to overwrite its own."""
    fields = _record_fields()
    return {f"{k}_" if k in fields else k: v for k, v in event_dict.items()}


def configure_for_library() -> None:
    """objlib imported by another program (``objlib.api``): its events go to the standard
    ``logging`` loggers ``objlib.*`` as plain records (the event as the message, its fields
    as ``extra``), and the program's own logging set-up decides where they go. No handler
    is added and no level is set. Does nothing if logging was configured already."""
    global _applied, _generation
    with _lock:
        if _applied or _wanted is not None:
            return
        import structlog

        structlog.configure(
            processors=[structlog.stdlib.filter_by_level, structlog.contextvars.merge_contextvars,
                        _drop_secrets, _as_record_extra, structlog.stdlib.render_to_log_kwargs],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=False,
        )
        _applied, _generation = True, _generation + 1


def _ensure_configured() -> None:
    if _applied:
        return
    with _lock:
        if not _applied:
            configure(**(_wanted or {}))


@contextmanager
def bind_task(task_id: str, task_name: str):
    """Every line logged inside (objlib's and huey's) carries the task's id and name."""
    import structlog

    with structlog.contextvars.bound_contextvars(task_id=task_id, task=task_name):
        yield


# the level of each event method; an event below the level logging will be configured with
# is dropped before it configures anything (it would be filtered out anyway)
_LEVEL_OF = {"debug": DEBUG, "info": INFO, "msg": INFO, "warning": WARNING, "warn": WARNING,
             "error": ERROR, "exception": ERROR, "critical": CRITICAL, "fatal": CRITICAL}


def _ignore(*_args, **_kwargs) -> None:
    return None


def _below_the_wanted_level(method: str) -> bool:
    """Logging is not configured yet, and an event of this method would be filtered out by
    the level it will be configured with."""
    return not _applied and _LEVEL_OF.get(method, CRITICAL) < (_wanted or {}).get("level", INFO)


class _LazyLogger:
    """``get_logger``'s answer: a name until the first event, which configures logging.
    The structlog logger behind it is made once per configuration (not at every event),
    and a level the stdlib logger filters out returns before any processor runs: a worker
    sends ~20 events a file, half of them debug lines nobody keeps. An event below the level
    that configuration will have costs nothing, not even the configuration (a no-change
    ``objlib scan`` ends with a debug event: it imported structlog for it, ~0.1 s)."""

    def __init__(self, name: str | None):
        self._name = name
        self._made: tuple[int, Any, logging.Logger] | None = None

    def _loggers(self) -> tuple[Any, logging.Logger]:
        """The structlog logger of the configuration in force, and the stdlib one below it."""
        made = self._made
        if made is None or made[0] != _generation or not _applied:
            _ensure_configured()
            import logging

            import structlog

            made = self._made = (_generation, structlog.get_logger(self._name).bind(),
                                 logging.getLogger(self._name))
        return made[1], made[2]

    def debug(self, event: str, *args: Any, **kw: Any) -> Any:
        if _below_the_wanted_level("debug"):
            return None
        logger, stdlib = self._loggers()  # configured first: the level is the one wanted
        if not stdlib.isEnabledFor(DEBUG):
            return None
        return logger.debug(event, *args, **kw)

    def __getattr__(self, attr: str):
        if _below_the_wanted_level(attr):
            return _ignore
        return getattr(self._loggers()[0], attr)


def get_logger(name: str | None = None) -> _LazyLogger:
    return _LazyLogger(name)
