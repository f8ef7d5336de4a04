"""The one small error hierarchy. Each error carries what a user needs to act."""


class ObjlibError(Exception):
    """Base class: the message is shown to the user as it is, without a traceback."""


class ConfigError(ObjlibError):
    """Settings are missing or invalid (an environment variable, the config file)."""


class CatalogError(ObjlibError):
    """The catalogue database cannot be used (corrupt, locked, from a newer objlib)."""


class LibraryError(ObjlibError):
    """The library folder cannot be scanned (missing, not a directory, unreadable)."""


class MassDeleteRefused(LibraryError):
    """A scan would mark too much of the catalogue deleted (an unmounted drive looks like an
    empty library), so it recorded nothing; the user confirms with a flag if it is real."""

    def __init__(self, message: str, *, to_delete: int, live: int):
        super().__init__(message)
        self.to_delete = to_delete
        self.live = live


class QueueError(ObjlibError):
    """The queue file cannot be used (locked, corrupt). The catalogue is the source of truth:
    a lost queue is rebuilt by `objlib enqueue`."""


class StoreLost(ConfigError):
    """The store the catalogue mirrors into is gone (deleted, or forgotten by the service).
    Workers wait and fail nothing; `objlib reconcile --fix` re-creates it."""
