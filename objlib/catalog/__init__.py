"""The catalogue: the source of truth for every file of the library."""

from objlib.catalog.db import Catalog, connect, transaction

__all__ = ["Catalog", "connect", "transaction", "open_catalog"]


def open_catalog(settings) -> Catalog:
    """The catalogue under settings.home, opened (and migrated) eagerly so errors show early."""
    catalog = Catalog(settings.ensure_home().library_db, settings.busy_timeout_s)
    catalog.conn
    return catalog
