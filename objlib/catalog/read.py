"""Reading the catalogue without writing it, for the commands that only look (``status``,
``failures``, ``upload --dry-run``).

    catalog = existing_catalog(settings)     # CatalogError if no scan made one yet
    with read_transaction(catalog) as cat:   # every query sees the same moment
        cat.query("SELECT state, COUNT(*) FROM files GROUP BY state")

A reader never creates the catalogue: a missing file is a clear error that says to scan
first, not a new empty catalogue in the wrong folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from objlib.catalog.db import Catalog
from objlib.errors import CatalogError

if TYPE_CHECKING:
    from objlib.settings import Settings


def existing_catalog(settings: Settings) -> Catalog:
    """The catalogue, if a scan made one; a clear error (not an empty new file) otherwise."""
    if not settings.library_db.is_file():
        raise CatalogError(f"no catalogue in {settings.home} yet: run `objlib scan LIBRARY` "
                           "first (or point --home / OBJLIB_HOME at the right folder)")
    catalog = Catalog(settings.library_db)
    catalog.conn  # noqa: B018 — open now, so a bad file is reported before any query
    return catalog


@contextmanager
def read_transaction(catalog: Catalog) -> Iterator[Catalog]:
    """Every query inside sees the same moment of the catalogue (one WAL read snapshot)."""
    catalog.query("BEGIN")
    try:
        yield catalog
    finally:
        catalog.query("COMMIT")
