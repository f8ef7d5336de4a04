"""The catalogue: the source of truth for every file of the library."""

from objlib.catalog.db import Catalog, connect, transaction

__all__ = ["Catalog", "connect", "transaction", "open_catalog"]


def open_catalog(settings) -> Catalog:
    """The catalogue under settings.home, opened (and migrated) eagerly so errors show early
    (connect() creates the home folder if needed, and refuses a file that is not ours)."""
    catalog = Catalog(settings.library_db, settings.busy_timeout_s)
    catalog.conn  # noqa: B018 — the property opens (and migrates) the connection
    return catalog
