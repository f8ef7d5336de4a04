"""The store a catalogue mirrors into, bound both ways (like a backup repository to its id).

- The catalogue records its store (``meta.store``, ``meta.store_display_name``) and has an id
  of its own (``meta.catalog_id``); every document it imports carries that id
  (``objlib_catalog`` metadata), and reconcile deletes only documents that carry it.
- With no ``store_name`` set, the store is named for the catalogue (``objlib-<id>``), so two
  homes never share a store by accident; a store that holds another catalogue's documents is
  never adopted.
- Store decisions are single-flight: a lock per home, and the catalogue's record re-read
  under it, so concurrent enqueues and uploads of a new home end with one store.
- A store that is gone is a state (``meta.store_lost_at``), not a wedge: workers wait, status
  says so, and ``objlib reconcile --fix`` creates a new store and sends every file again.
"""

from __future__ import annotations

import fcntl
import itertools
import time
from contextlib import contextmanager

from objlib.catalog import Catalog
from objlib.catalog import lifecycle as lc
from objlib.clients import command_client
from objlib.errors import ConfigError, ObjlibError, StoreLost
from objlib.log import get_logger
from objlib.settings import Settings

log = get_logger("objlib.store")

LOST_KEY = "store_lost_at"


def default_store_name(catalog: Catalog) -> str:
    """The store a catalogue mirrors into when no ``store_name`` is set: named for the
    catalogue's id, so two homes never share a store by accident."""
    return f"objlib-{catalog.id}"


def ensure_store(settings: Settings, catalog: Catalog, gemini=None) -> str:
    """The catalogue's store, bound both ways: recorded in the catalogue, and checked to hold
    no other catalogue's documents. Single-flight: concurrent enqueues and uploads of one home
    take a lock and re-read the catalogue's record, so they end with one store.

    A store already recorded is asked for (one call); if it is gone, StoreLost. A store name
    that differs from the recorded one is refused before any remote call while this catalogue
    has documents in its store."""
    from objlib.gemini.errors import Gone  # not at import: status reads this module's facts
    from objlib.gemini.metadata import display_name

    with _store_lock(settings):
        recorded = catalog.get_meta("store")
        if recorded and catalog.get_meta(LOST_KEY):
            raise StoreLost(store_lost_message(recorded))
        closers: list = []
        if gemini is None:  # a command's: through the shared throttle, waiting for a slot
            gemini, closers = command_client(settings, holder="store")
        try:
            return _ensure(settings, catalog, gemini, recorded, Gone, display_name)
        finally:
            for close in closers:
                close()


def _ensure(settings: Settings, catalog: Catalog, gemini, recorded: str | None, gone,
            display_name) -> str:
    wanted = settings.store_name or default_store_name(catalog)
    if recorded:
        shown = catalog.get_meta("store_display_name")
        if shown is None:  # recorded before display names were: ask once, and keep it
            shown = _current(settings, catalog, gemini, recorded, gone).display_name
            _bind(catalog, recorded, shown)
        if not settings.store_name or display_name(settings.store_name) == shown:
            _current(settings, catalog, gemini, recorded, gone)
            return recorded
        if catalog.query("SELECT 1 FROM files WHERE document IS NOT NULL "
                         "UNION ALL SELECT 1 FROM removals WHERE removed_at IS NULL LIMIT 1"):
            raise ConfigError(
                f"this catalogue mirrors the library into {recorded} ({shown!r}); "
                f"{settings.store_name!r} is another store. Use another --home for another "
                "store (nothing was created)")
    store = _with_retries(settings, lambda: gemini.ensure_store(wanted))
    _check_not_anothers(store.name, catalog, gemini, settings)
    _bind(catalog, store.name, store.display_name)
    return store.name


def _current(settings: Settings, catalog: Catalog, gemini, recorded: str, gone):
    """The recorded store, asked for; StoreLost (and the loss recorded) if it is gone."""
    try:
        return _with_retries(settings, lambda: gemini.get_store(recorded))
    except gone as err:
        mark_store_lost(catalog, recorded, time.time())
        raise StoreLost(store_lost_message(recorded)) from err


def recreate_store(settings: Settings, catalog: Catalog, gemini, lost: str, now: float) -> str:
    """A new store for a catalogue whose store is gone: every row that had been sent to the
    old store goes back to pending (the next enqueue sends it again), and the removals and
    superseded imports of the old store are closed (their documents went with it)."""
    with _store_lock(settings):
        current = catalog.get_meta("store")
        if current is not None and current != lost:
            return current  # another command re-created it meanwhile
        wanted = settings.store_name or catalog.get_meta("store_display_name") \
            or default_store_name(catalog)
        store = _with_retries(settings, lambda: gemini.ensure_store(wanted))
        if store.name == lost:
            raise ObjlibError(f"the store {lost} answers again; nothing was changed")
        _check_not_anothers(store.name, catalog, gemini, settings)
        lc.restart_all(catalog, now, f"store {lost} lost")
        _bind(catalog, store.name, store.display_name)
        log.warning("store re-created", lost=lost, store=store.name)
        return store.name


def _bind(catalog: Catalog, name: str, shown: str) -> None:
    with catalog.write() as conn:
        for key, value in (("store", name), ("store_display_name", shown)):
            conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))
        conn.execute("DELETE FROM meta WHERE key=?", (LOST_KEY,))


def _check_not_anothers(store: str, catalog: Catalog, gemini, settings: Settings) -> None:
    """A store that holds another objlib catalogue's documents is not adopted (like a backup
    repository bound to its id): the first page of its documents tells."""
    docs = _with_retries(settings, lambda: list(itertools.islice(
        gemini.list_documents(store), 20)))
    owners = {d.custom_metadata.get("objlib_catalog") for d in docs} - {None, catalog.id}
    if owners:
        raise ConfigError(
            f"the store {store} holds documents of another objlib catalogue "
            f"({', '.join(sorted(map(str, owners)))}); this one ({catalog.id}) will not share "
            "it. Choose another store_name (or leave it unset: each catalogue gets its own)")


@contextmanager
def _store_lock(settings: Settings):
    """One store decision at a time per home, across processes."""
    with open(settings.ensure_home().home / "store.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def store_lost_message(store: str) -> str:
    return (f"the store {store} is gone (deleted, or the service no longer knows it); "
            "`objlib reconcile --fix` creates a new one and sends every file through the "
            "pipeline again. Workers wait meanwhile; nothing is failed")


def mark_store_lost(catalog: Catalog, store: str, now: float) -> None:
    """Record that the store answered 404 (kept until a store is bound again)."""
    with catalog.write() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO NOTHING",
                     (LOST_KEY, repr(now)))
    log.error("store lost", store=store)


def lost_at(catalog: Catalog) -> float | None:
    value = catalog.get_meta(LOST_KEY)
    return float(value) if value else None


def _with_retries(settings: Settings, call, attempts: int = 6):
    """A command (not a worker) may wait a little on a 429 or a transient error: the one
    in-process retry policy (``objlib.retry``; imported here, not at import: stamina costs
    ~25 ms that ``objlib status``, which reads this module's facts, does not need)."""
    from objlib import retry
    from objlib.gemini.errors import RateLimited, Transient

    return retry.call(call, retry_on=lambda exc: isinstance(exc, (RateLimited, Transient)),
                      attempts=attempts, wait_initial_s=settings.backoff_base_s,
                      wait_max_s=settings.backoff_max_s)
