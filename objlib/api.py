"""objlib from Python: the functions the CLI calls, with typed results, for programs that
keep a library mirrored without shelling out.

    from objlib import api

    found = api.scan("~/library", home="/var/lib/objlib")    # -> ScanSummary
    queued = api.enqueue(home="/var/lib/objlib")             # -> EnqueueSummary
    now = api.status(home="/var/lib/objlib")                 # -> Snapshot
    print(now.files["indexed"], now.remaining, now.done)

The uploads themselves are done by consumers (``huey_consumer objlib.tasks.huey -w 7``),
as with the CLI; ``status`` tells when they are done.

Each function takes ``home`` (the state folder; default ``$OBJLIB_HOME`` or ``./data``) and
any setting as a keyword (``store_name=...``, ``extensions=(".txt",)``, ...), read like the
CLI reads them: defaults, then ``home/config.toml``, then ``OBJLIB_*`` variables, then these
keywords. Nothing is written to ``os.environ``. Problems a person must fix raise
``ObjlibError`` (its subclasses below) with the message the CLI would print. objlib's log
events go to the standard ``logging`` loggers ``objlib.*``; this module adds no handler.
"""

from __future__ import annotations

import os
from typing import Any

from objlib import log
from objlib.errors import (
    CatalogError,
    ConfigError,
    LibraryError,
    MassDeleteRefused,
    ObjlibError,
    QueueError,
    StoreLost,
)
from objlib.queue import EnqueueSummary
from objlib.scan.scanner import ScanSummary
from objlib.settings import Settings
from objlib.status import Snapshot

__all__ = [
    "scan", "enqueue", "status", "settings",
    "ScanSummary", "EnqueueSummary", "Snapshot", "Settings",
    "ObjlibError", "ConfigError", "CatalogError", "LibraryError", "MassDeleteRefused",
    "QueueError", "StoreLost",
]

Home = str | os.PathLike[str] | None


def settings(home: Home = None, **overrides: Any) -> Settings:
    """The settings the other functions use (``ConfigError`` for a bad one)."""
    return Settings.load(home, **overrides)


def scan(library: str | os.PathLike[str], *, home: Home = None, dry_run: bool = False,
         max_delete: int | None = None, allow_mass_delete: bool = False,
         **overrides: Any) -> ScanSummary:
    """Bring the catalogue up to date with ``library`` (``objlib scan``): new, changed,
    deleted files. Raises ``MassDeleteRefused`` (nothing recorded) when the scan would mark
    more files deleted than the deletion guard allows; ``LibraryError`` for a folder that
    cannot be scanned."""
    from objlib.scan import scan_library

    log.configure_for_library()
    return scan_library(settings(home, **overrides), library, dry_run=dry_run,
                        max_delete=max_delete, allow_mass_delete=allow_mass_delete)


def enqueue(*, home: Home = None, limit: int | None = None, retry_failed: bool = False,
            dry_run: bool = False, **overrides: Any) -> EnqueueSummary:
    """Turn every file that needs work into a queued task (``objlib enqueue``); needs
    ``GEMINI_API_KEY`` in the environment (the store is created on the first call).
    ``CatalogError`` when no scan made a catalogue in ``home``."""
    from objlib.queue import enqueue as run_enqueue

    log.configure_for_library()
    return run_enqueue(settings(home, **overrides), limit=limit, dry_run=dry_run,
                       retry_failed=retry_failed)


def status(*, home: Home = None, **overrides: Any) -> Snapshot:
    """Where the pipeline stands (``objlib status``): files per state, queue, throughput,
    ETA, breaker, errors. Only reads; ``CatalogError`` when there is no catalogue.
    ``objlib.status.to_json(snapshot)`` gives the ``status --json`` object."""
    from objlib.status import snapshot

    log.configure_for_library()
    return snapshot(settings(home, **overrides))
