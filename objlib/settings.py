"""One Settings object: where state lives and every tunable, read from the environment and
an optional ``OBJLIB_HOME/config.toml``. The API key is never part of it: the Gemini layer
reads ``GEMINI_API_KEY`` from the environment at the moment it builds a client.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from objlib.errors import ConfigError

DEFAULT_HOME = "./data"
CONFIG_FILE = "config.toml"


@dataclass(frozen=True)
class Settings:
    home: Path
    # the store's display name; empty: a store of this catalogue's own (objlib-<catalog id>)
    store_name: str = ""
    # eligible extensions; each file's content must be its extension's type, and the type one
    # File Search indexes (EPUB is not: skipped with that reason) -- objlib.scan.filetypes
    extensions: tuple[str, ...] = (".txt", ".md", ".pdf", ".docx", ".html", ".epub")
    max_file_bytes: int = 100 * 1024 * 1024
    # extra path -> metadata regexes (named groups), tried before the built-in ones
    metadata_patterns: tuple[str, ...] = ()
    # request rate shared by every worker process, requests per minute (0 = unlimited)
    rate_limit_per_minute: int = 0
    # circuit breaker on 429s: opens when, within the window, at least `breaker_min_429`
    # requests were rate-limited and they were at least `breaker_ratio` of all requests
    breaker_window_s: float = 30.0
    breaker_min_429: int = 5
    breaker_ratio: float = 0.25
    breaker_cooldown_s: float = 10.0
    breaker_max_cooldown_s: float = 300.0
    # transient errors: exponential backoff with jitter, then the row fails
    max_attempts: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 120.0
    # polling an import operation: the first look when the import is expected done (learned,
    # starting from poll_first_delay_s: objlib.pace), then growing delays up to a deadline
    poll_first_delay_s: float = 1.0
    poll_max_delay_s: float = 30.0
    poll_timeout_s: float = 900.0
    # waiting for a raw file to become ACTIVE (re-scheduled, never slept on)
    activate_first_delay_s: float = 1.0
    activate_timeout_s: float = 600.0
    # a running task holds its row for this long; a row whose lease ran out with no task
    # in the queue is stuck and gets re-enqueued
    lease_s: float = 300.0
    # HTTP timeout for one API call
    request_timeout_s: float = 120.0
    # how long to wait for another writer of library.db / queue.db before a clear error
    busy_timeout_s: float = 30.0
    log_json: bool = False
    # work that waits on an operator's fix (a missing or refused key, a database that cannot
    # be used, a lost store) looks again this often; nothing is failed meanwhile
    operator_wait_s: float = 60.0
    # a worker runs `objlib reconcile --fix` this often (0 = never; long runs may set it)
    reconcile_every_minutes: int = 0
    # the consumer that runs periodic tasks re-scans the library and enqueues what changed
    # this often (0 = off); checked once a minute, so fractions only matter in tests
    sync_every_minutes: float = 0.0
    # the deletion guard: a scan that would mark more files deleted than this (or more than
    # this share of the catalogue, above a floor of 10 files) records nothing and asks
    max_delete: int = 50
    max_delete_percent: float = 20.0

    @property
    def library_db(self) -> Path:
        return self.home / "library.db"

    @property
    def queue_db(self) -> Path:
        return self.home / "queue.db"

    @property
    def throttle_db(self) -> Path:
        return self.home / "throttle.db"

    @property
    def config_file(self) -> Path:
        return self.home / CONFIG_FILE

    def ensure_home(self) -> Settings:
        self.home.mkdir(parents=True, exist_ok=True)
        return self

    @classmethod
    def load(cls, home: str | os.PathLike | None = None, **overrides) -> Settings:
        """Defaults, then ``config.toml`` in the home folder, then ``OBJLIB_*`` variables,
        then explicit overrides (from CLI options)."""
        home_path = Path(home or os.environ.get("OBJLIB_HOME") or DEFAULT_HOME).expanduser()
        values: dict = {}
        values.update(_read_config(home_path / CONFIG_FILE))
        values.update(_read_env())
        values.update({k: v for k, v in overrides.items() if v is not None})
        return _build(cls, home_path.absolute(), values)


_ENV = {
    "OBJLIB_STORE": "store_name",
    "OBJLIB_RPM": "rate_limit_per_minute",
    "OBJLIB_MAX_ATTEMPTS": "max_attempts",
    "OBJLIB_POLL_TIMEOUT_S": "poll_timeout_s",
    "OBJLIB_POLL_FIRST_DELAY_S": "poll_first_delay_s",
    "OBJLIB_ACTIVATE_FIRST_DELAY_S": "activate_first_delay_s",
    "OBJLIB_LEASE_S": "lease_s",
    "OBJLIB_BACKOFF_BASE_S": "backoff_base_s",
    "OBJLIB_LOG_JSON": "log_json",
    "OBJLIB_BUSY_TIMEOUT_S": "busy_timeout_s",
    "OBJLIB_OPERATOR_WAIT_S": "operator_wait_s",
    "OBJLIB_MAX_DELETE": "max_delete",
    "OBJLIB_MAX_DELETE_PERCENT": "max_delete_percent",
    "OBJLIB_SYNC_EVERY_MINUTES": "sync_every_minutes",
}


def _read_env() -> dict:
    return {name: os.environ[var] for var, name in _ENV.items() if os.environ.get(var, "") != ""}


def _read_config(path: Path) -> dict:
    if not path.is_file():
        return {}
    import tomllib  # only when there is a config file

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    known = {f.name for f in fields(Settings)} - {"home"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
    return data


def _build(cls, home: Path, values: dict) -> Settings:
    settings = cls(home=home)
    typed = {}
    for f in fields(cls):
        if f.name not in values:
            continue
        default = getattr(settings, f.name)
        typed[f.name] = _coerce(f.name, values[f.name], default)
    settings = replace(settings, **typed)
    _check_ranges(settings)
    if settings.store_name and not 1 <= len(settings.store_name.strip()) <= 512:
        raise ConfigError("store_name must be 1 to 512 characters (the store's display name); "
                          f"got {len(settings.store_name.strip())}")
    return settings


def _coerce(name: str, value, default):
    try:
        if isinstance(default, bool):
            return _yes_no(name, value)
        if isinstance(default, tuple):
            items = [value] if isinstance(value, str) else list(value)
            if name == "extensions":
                items = [i if i.startswith(".") else "." + i for i in (s.lower() for s in items)]
            return tuple(items)
        if isinstance(default, (int, float)):
            return _number(name, value, type(default))
        return type(default)(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {value!r} ({exc})") from exc


_YES = frozenset({"1", "true", "yes", "on"})
_NO = frozenset({"0", "false", "no", "off"})


def _yes_no(name: str, value) -> bool:
    """A bool setting: true/false (TOML), or yes/no words from a variable; anything else is an
    error rather than a silent False."""
    word = str(value).strip().lower()
    if word in _YES or word in _NO:
        return word in _YES
    raise ConfigError(f"setting {name!r}: {value!r} is not a yes/no value "
                      f"(use one of: {', '.join(sorted(_YES | _NO))})")


def _number(name: str, value, kind: type):
    """An int or float setting. True is not 1, and 2.5 is not the count 2."""
    if isinstance(value, bool):
        raise ConfigError(f"setting {name!r}: {value!r} is not a number")
    number = float(value) if kind is float else value
    if kind is int and isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"setting {name!r}: {value!r} is not a whole number")
        number = int(value)
    return kind(number)


# ---------------------------------------------------------------------------- ranges


@dataclass(frozen=True)
class _Range:
    """The values a numeric setting may take: from ``low`` (left out if ``low_open``) up to
    ``high`` (None: no upper bound); ``note`` says what the edge value means."""

    low: float
    high: float | None = None
    low_open: bool = False
    note: str = ""

    def __contains__(self, value) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            text = f"{'>' if self.low_open else '>='} {self.low:g}"
        else:
            text = f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        return f"{text}; {self.note}" if self.note else text


_AT_LEAST_1 = _Range(1)
_DURATION = _Range(0, low_open=True)  # seconds; 0 would mean "never wait" or "expire at once"
_DELAY = _Range(0, note="0 = at once")  # a first wait that may be skipped

RANGES: dict[str, _Range] = {
    "max_file_bytes": _AT_LEAST_1,
    "rate_limit_per_minute": _Range(0, note="0 = unlimited"),
    "breaker_window_s": _DURATION,
    "breaker_min_429": _AT_LEAST_1,
    "breaker_ratio": _Range(0, 1, low_open=True),
    "breaker_cooldown_s": _DURATION,
    "breaker_max_cooldown_s": _DURATION,
    "max_attempts": _AT_LEAST_1,
    "backoff_base_s": _DELAY,
    "backoff_max_s": _DURATION,
    "poll_first_delay_s": _DELAY,
    "poll_max_delay_s": _DURATION,
    "poll_timeout_s": _DURATION,
    "activate_first_delay_s": _DELAY,
    "activate_timeout_s": _DURATION,
    "lease_s": _DURATION,
    "request_timeout_s": _DURATION,
    "busy_timeout_s": _DURATION,
    "operator_wait_s": _DURATION,
    "reconcile_every_minutes": _Range(0, note="0 = never"),
    "sync_every_minutes": _Range(0, note="0 = off"),
    "max_delete": _Range(0, note="0 = refuse any deletion"),
    "max_delete_percent": _Range(0, 100, low_open=True),
}
"""Every numeric setting's allowed values (a test checks that none is missing)."""


def _check_ranges(settings: Settings) -> None:
    """A number out of its range is an error that names it, not a silent misbehaviour
    (``max_file_bytes = -1`` would skip every file)."""
    for name, allowed in RANGES.items():
        value = getattr(settings, name)
        if value not in allowed:
            var = next((v for v, n in _ENV.items() if n == name), None)
            raise ConfigError(f"setting {name}{f' ({var})' if var else ''} = {value!r} is out "
                              f"of range; allowed: {allowed}")
