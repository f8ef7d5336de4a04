"""structlog set-up: a human console renderer for the CLI, JSON lines for workers."""

from __future__ import annotations

import logging
import sys

import structlog

_SECRET_KEYS = {"api_key", "key", "x-goog-api-key", "authorization"}


def _drop_secrets(_logger, _name, event_dict):
    for k in list(event_dict):
        if k.lower() in _SECRET_KEYS:
            event_dict[k] = "***"
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


def configure(json: bool = False, level: int = logging.INFO, stream=None) -> None:
    """Configure structlog (and the stdlib root logger it forwards to) once per process."""
    stream = stream or _CurrentStderr()
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    if json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=stream.isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # third-party libraries (httpx, huey) log through the stdlib: keep them quiet and tidy
    for name in ("httpx", "httpx2", "httpcore", "google_genai"):
        logging.getLogger(name).setLevel(logging.WARNING)


def get_logger(name: str | None = None):
    return structlog.get_logger(name)
