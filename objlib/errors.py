"""The one small error hierarchy. Each error carries what a user needs to act."""


class ObjlibError(Exception):
    """Base class: the message is shown to the user as it is, without a traceback."""


class ConfigError(ObjlibError):
    """Settings are missing or invalid (an environment variable, the config file)."""


class CatalogError(ObjlibError):
    """The catalogue database cannot be used (corrupt, locked, from a newer objlib)."""


class LibraryError(ObjlibError):
    """The library folder cannot be scanned (missing, not a directory, unreadable)."""


class QueueError(ObjlibError):
    """The queue file cannot be used (locked, corrupt). The catalogue is the source of truth:
    a lost queue is rebuilt by `objlib enqueue`."""


class StoreLost(ConfigError):
    """The store the catalogue mirrors into is gone (deleted, or forgotten by the service).
    Workers wait and fail nothing; `objlib reconcile --fix` re-creates it."""
