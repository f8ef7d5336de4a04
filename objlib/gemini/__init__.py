"""The Gemini layer: the only code in objlib that imports ``google.genai``.

It knows nothing of SQLite or the queue; the queue plugs its throttle in through the
``on_request`` / ``on_response`` hooks of :class:`GeminiClient`.
"""

from objlib.gemini.client import Document, GeminiClient, Operation, RawFile, Store, upload_cost
from objlib.gemini.errors import (
    BadApiKey,
    GeminiError,
    Gone,
    MissingApiKey,
    Permanent,
    RateLimited,
    StoreFull,
    Transient,
    Unavailable,
    classify,
)
from objlib.gemini.metadata import build_custom_metadata, display_name, raw_file_id

__all__ = [
    "Document", "GeminiClient", "Operation", "RawFile", "Store", "upload_cost",
    "BadApiKey", "GeminiError", "Gone", "MissingApiKey", "Permanent", "RateLimited", "StoreFull",
    "Transient", "Unavailable", "classify",
    "build_custom_metadata", "display_name", "raw_file_id",
]
