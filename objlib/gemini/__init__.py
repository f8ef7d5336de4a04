"""The Gemini layer: the only code in objlib that imports ``google.genai``.

It knows nothing of SQLite or the queue; the queue plugs its throttle in through the
``on_request`` / ``on_response`` hooks of :class:`GeminiClient`.
"""

from objlib.gemini.client import (
    DEFAULT_SEARCH_MODEL,
    Answer,
    Document,
    GeminiClient,
    Operation,
    Passage,
    RawFile,
    Store,
    Support,
    upload_cost,
)
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
    "Answer", "DEFAULT_SEARCH_MODEL", "Document", "GeminiClient", "Operation", "Passage",
    "RawFile", "Store", "Support", "upload_cost",
    "BadApiKey", "GeminiError", "Gone", "MissingApiKey", "Permanent", "RateLimited", "StoreFull",
    "Transient", "Unavailable", "classify",
    "build_custom_metadata", "display_name", "raw_file_id",
]
