"""One Settings object: where state lives and every tunable, read from the environment and
an optional ``OBJLIB_HOME/config.toml``. The API key is never part of it: the Gemini layer
reads ``GEMINI_API_KEY`` from the environment at the moment it builds a client.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from objlib.errors import ConfigError

DEFAULT_HOME = "./data"
CONFIG_FILE = "config.toml"


@dataclass(frozen=True)
class Settings:
    home: Path
    # the store's display name; empty: a store of this catalogue's own (objlib-<catalog id>)
    store_name: str = ""
    extensions: tuple[str, ...] = (".txt", ".md")
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
    # polling an import operation: growing delays up to a deadline
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
    # a worker runs `objlib reconcile --fix` this often (0 = never; long runs may set it)
    reconcile_every_minutes: int = 0

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
}


def _read_env() -> dict:
    return {name: os.environ[var] for var, name in _ENV.items() if os.environ.get(var, "") != ""}


def _read_config(path: Path) -> dict:
    if not path.is_file():
        return {}
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
    if settings.rate_limit_per_minute < 0:
        raise ConfigError("rate_limit_per_minute must be 0 (unlimited) or more")
    if settings.max_attempts < 1:
        raise ConfigError("max_attempts must be at least 1")
    if settings.store_name and not 1 <= len(settings.store_name.strip()) <= 512:
        raise ConfigError("store_name must be 1 to 512 characters (the store's display name); "
                          f"got {len(settings.store_name.strip())}")
    return settings


def _coerce(name: str, value, default):
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, tuple):
            items = [value] if isinstance(value, str) else list(value)
            if name == "extensions":
                items = [i if i.startswith(".") else "." + i for i in (s.lower() for s in items)]
            return tuple(items)
        return type(default)(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {value!r} ({exc})") from exc
