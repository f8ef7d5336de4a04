"""Every failure of a Gemini call, sorted into the few kinds the pipeline acts on.

``classify(exc, call=...)`` is the one place that reads SDK and transport exceptions:

==========================================================  ==============
what happened                                                kind
==========================================================  ==============
429 (any call)                                               rate_limited
408, 5xx, timeouts, connection/protocol errors               transient
400 "Failed to create file." (a known transient of the API)  transient
upload never finalised, no upload URL (server misbehaved)    transient
403/404 on a delete, or on ``get_file`` (expired raw file)   gone
404 on ``get_document`` / ``get_store``                      gone
any other 4xx (bad request, content rejected, ...)           permanent
anything else unexpected                                     permanent
==========================================================  ==============

Messages read like ``429 RESOURCE_EXHAUSTED on import_file: Resource has been exhausted``
and never contain the API key: every text goes through :func:`scrub` first.
"""

from __future__ import annotations

import email.utils
import os
import re
import time
from collections.abc import Mapping

from google.genai import errors as genai_errors

from objlib.errors import ConfigError, ObjlibError

try:  # the SDK's transport; plain httpx is accepted too should the SDK ever use it
    import httpx2
except ImportError:  # pragma: no cover - google-genai 3.6 depends on httpx2
    httpx2 = None
try:
    import httpx
except ImportError:
    httpx = None

_TRANSPORTS = tuple(m for m in (httpx2, httpx) if m is not None)
_REQUEST_ERRORS = tuple(m.RequestError for m in _TRANSPORTS)
_TIMEOUTS = tuple(m.TimeoutException for m in _TRANSPORTS)
# the request could not even be formed (a bad base URL, an illegal header value): retrying
# the same request cannot help
_BAD_REQUEST = tuple(cls for m in _TRANSPORTS
                     for cls in (m.UnsupportedProtocol, m.InvalidURL, m.LocalProtocolError))

# Which HTTP statuses mean "the thing is not there (any more)", per call.
_GONE = {
    "delete_file": {403, 404},
    "delete_document": {403, 404},
    "delete_store": {403, 404},
    "get_file": {403, 404},  # an expired raw file answers 403
    "get_document": {404},
    "get_store": {404},
}
_TRANSIENT_CODES = {408, 500, 502, 503, 504}
_MAX_MESSAGE_CHARS = 400


class GeminiError(ObjlibError):
    """A Gemini call failed. ``kind`` tells the pipeline what to do about it."""

    kind = "error"

    def __init__(self, message: str, *, call: str | None = None, code: int | None = None,
                 status: str | None = None, retry_after_s: float | None = None):
        self.message = scrub(message)
        self.call = call
        self.code = code
        self.status = status
        self.retry_after_s = retry_after_s
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class RateLimited(GeminiError):
    """429: slow down (the throttle's circuit breaker counts these)."""

    kind = "rate_limited"


class Transient(GeminiError):
    """Worth retrying after a backoff: 408, 5xx, network trouble, known API hiccups."""

    kind = "transient"


class Permanent(GeminiError):
    """Retrying will not help: the request or the content was rejected."""

    kind = "permanent"


class Gone(GeminiError):
    """The resource is not there (deleted, or a raw file that expired after 48 h)."""

    kind = "gone"


class MissingApiKey(GeminiError, ConfigError):
    """No API key in the environment, and the base URL is not a local emulator."""

    kind = "config"


# --- the API key never leaves in a message ------------------------------------------------

_KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
_secrets: set[str] = set()
_KEY_SHAPE = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")  # what a Google API key looks like
_KEY_FIELD = re.compile(
    r"(?i)((?:x-goog-api-key|api[_-]?key)[\"']?\s*[:=]\s*[\"']?|[?&]key=)[^\s&\"',;}]+")


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`scrub` removes it from every message."""
    if value and len(value) >= 4:
        _secrets.add(value)


def scrub(text: str) -> str:
    """``text`` with any API key (known, from the environment, or key-shaped) replaced."""
    text = str(text)
    known = _secrets | {os.environ.get(v, "") for v in _KEY_VARIABLES}
    for secret in sorted((s for s in known if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _KEY_FIELD.sub(r"\1***", _KEY_SHAPE.sub("***", text))


# --- classification -----------------------------------------------------------------------


def classify(exc: BaseException, *, call: str) -> GeminiError:
    """The :class:`GeminiError` for an exception raised while making the API call ``call``."""
    if isinstance(exc, GeminiError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        return _from_api_error(exc, call)
    if isinstance(exc, _BAD_REQUEST):
        return Permanent(f"request could not be sent on {call}: {_describe(exc)}", call=call)
    if isinstance(exc, _TIMEOUTS):
        return Transient(f"timed out on {call}: {_describe(exc)}", call=call)
    if isinstance(exc, _REQUEST_ERRORS):
        return Transient(f"connection failed on {call}: {_describe(exc)}", call=call)
    text = str(exc)
    # the SDK's own upload protocol failures: the server did not finish its part
    if "not finalized" in text or "Upload URL was not returned" in text:
        return Transient(f"upload failed on {call}: {_describe(exc)}", call=call)
    return Permanent(f"unexpected error on {call}: {_describe(exc)}", call=call)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status behind an exception, or None when no response came back."""
    code = getattr(exc, "code", None) if isinstance(exc, genai_errors.APIError) else None
    return code if isinstance(code, int) else None


def _from_api_error(exc: genai_errors.APIError, call: str) -> GeminiError:
    code = status_of(exc)
    status = exc.status if isinstance(exc.status, str) else None
    message = _clip(exc.message if exc.message is not None else exc.details)
    text = f"{code} {status or 'ERROR'} on {call}" + (f": {message}" if message else "")
    cls = _kind_of(code, message)
    if cls is Permanent and code in _GONE.get(call, ()):
        cls = Gone
    return cls(text, call=call, code=code, status=status, retry_after_s=_retry_after_s(exc))


def _kind_of(code: int | None, message: str) -> type[GeminiError]:
    if code == 429:
        return RateLimited
    if code in _TRANSIENT_CODES or (code is not None and code >= 500):
        return Transient
    if code == 400 and "failed to create file" in message.lower():
        return Transient
    if code is not None and 400 <= code < 500:
        return Permanent
    return Transient  # a status the API should never send (204, 3xx): try again later


def _retry_after_s(exc: genai_errors.APIError) -> float | None:
    """From RetryInfo in the body, else from a ``Retry-After`` header; None if neither."""
    error = exc.details.get("error", exc.details) if isinstance(exc.details, Mapping) else {}
    details = error.get("details") if isinstance(error, Mapping) else None
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("RetryInfo"):
            delay = _duration_s(detail.get("retryDelay", detail.get("retry_delay")))
            if delay is not None:
                return delay
    headers = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    return _http_retry_after_s(value) if value else None


def _duration_s(value: object) -> float | None:
    """A protobuf Duration as JSON: ``"7s"``, ``"1.5s"`` or ``{"seconds": 7, "nanos": 0}``."""
    try:
        if isinstance(value, str) and value.endswith("s"):
            return max(0.0, float(value[:-1]))
        if isinstance(value, Mapping):
            return max(0.0, float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9)
    except (TypeError, ValueError):
        pass
    return None


def _http_retry_after_s(value: str) -> float | None:
    """``Retry-After``: delay seconds or an HTTP date."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _describe(exc: BaseException) -> str:
    text = _clip(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _clip(value: object) -> str:
    text = " ".join(str(value if value is not None else "").split())
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[: _MAX_MESSAGE_CHARS - 3] + "..."
    return text
