"""Every failure of a Gemini call, sorted into the few kinds the pipeline acts on.

``classify(exc, call=...)`` is the one place that reads SDK and transport exceptions:

==========================================================  ==============
what happened                                                kind
==========================================================  ==============
429 "Corpus has reached the storage limit of N bytes."        store_full
429 (any other)                                              rate_limited
502, 503, 504; no answer (refused, reset, timed out)         unavailable
408, 500 and other 5xx, a 503 "Failed to count tokens"       transient
400 "Failed to create file." (a known transient of the API)  transient
upload never finalised, no upload URL (server misbehaved)    transient
the API key refused (see ``_key_refused``)                   bad_key
403/404 on a delete, or on ``get_file`` (expired raw file)   gone
403 on ``import_file`` naming its File (missing, expired)   gone
404 on ``get_document`` / ``get_store``                      gone
any other 4xx (bad request, content rejected, ...)           permanent
anything else unexpected                                     permanent
==========================================================  ==============

``store_full`` (a :class:`Permanent`) is a 429 that is no request to slow down: the project's
File Search storage is used up (googleapis/python-genai#1774), and no retry can succeed until
a human frees space or raises the tier, so the file fails at once with that advice, and the
circuit breaker does not count it (:func:`breaker_status`).

``unavailable`` (a :class:`Transient`) means the service is away, not that this request is
bad: the pipeline waits it out without spending the file's attempts. ``bad_key`` is a
:class:`~objlib.errors.ConfigError` too: an operator's fix, so workers wait and commands stop.

Messages read like ``429 RESOURCE_EXHAUSTED on import_file: Resource has been exhausted``
and never contain the API key: every text goes through :func:`scrub` first, which knows the
key in every spelling it may come back in (escaped, JSON, URL-encoded, split at a newline).
"""

from __future__ import annotations

import email.utils
import functools
import importlib
import json
import os
import re
import time
from collections.abc import Mapping
from types import ModuleType
from urllib.parse import quote, quote_plus

from google.genai import errors as genai_errors

from objlib.errors import ConfigError, ObjlibError


def _installed(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


# the SDK's transport (google-genai 3.6 depends on httpx2); plain httpx is accepted too should
# the SDK ever use it
_TRANSPORTS = tuple(m for m in (_installed("httpx2"), _installed("httpx")) if m is not None)
_REQUEST_ERRORS = tuple(m.RequestError for m in _TRANSPORTS)
# no answer came back (refused, reset, timed out, cut off): the service is away
_NO_ANSWER = tuple(m.TransportError for m in _TRANSPORTS)
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
# importFile of a raw file that is missing (deleted, expired after 48 h): the Files API's own
# 403 for a missing file; any other 403 on it stays permanent
_FILE_MISSING = re.compile(r"permission to access the File \S+ or it may not exist")
_UNAVAILABLE_CODES = {502, 503, 504}
# a 503 that is about the content, not the service (field lessons: a degenerate transcript
# answered it every time): it spends attempts like any transient error, so the file can fail
_NOT_AWAY = ("failed to count tokens",)
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


class Unavailable(Transient):
    """The service is away (502/503/504, or no answer at all): pause, do not spend attempts."""

    kind = "unavailable"


class Permanent(GeminiError):
    """Retrying will not help: the request or the content was rejected."""

    kind = "permanent"


class StoreFull(Permanent):
    """The project's File Search storage is full (a 429 that names the storage limit)."""

    kind = "store_full"


class Gone(GeminiError):
    """The resource is not there (deleted, or a raw file that expired after 48 h)."""

    kind = "gone"


class MissingApiKey(GeminiError, ConfigError):
    """No API key in the environment, and the base URL is not a local emulator."""

    kind = "config"


class BadApiKey(GeminiError, ConfigError):
    """The API key cannot be used: malformed in the environment, or refused by the service
    (invalid, expired, blocked for this API, its project disabled). Nothing is failed for it:
    workers log it and wait, commands stop, until the key is fixed."""

    kind = "bad_key"


# --- the API key never leaves in a message ------------------------------------------------

KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY")  # read in this order
_secrets: set[str] = set()
_KEY_SHAPE = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")  # what a Google API key looks like
_KEY_FIELD = re.compile(
    r"(?i)((?:x-goog-api-key|api[_-]?key)[\"']?\s*[:=]\s*[\"']?|[?&]key=)[^\s&\"',;}]+")


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`scrub` removes it from every message."""
    if value and len(value) >= 4:
        _secrets.add(value)


def scrub(text: str) -> str:
    """``text`` with any API key (known, from the environment, or key-shaped) replaced, in
    any spelling it may come back in (see :func:`_spellings`)."""
    text = str(text)
    known = frozenset(_secrets | {os.environ.get(v, "") for v in KEY_VARIABLES})
    for form in _every_spelling(known):
        text = text.replace(form, "***")
    return _KEY_FIELD.sub(r"\1***", _KEY_SHAPE.sub("***", text))


_MIN_SECRET_CHARS = 4
_MIN_PIECE_CHARS = 8  # shorter pieces of a split key could be ordinary words
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")


@functools.lru_cache(maxsize=16)
def _every_spelling(secrets: frozenset[str]) -> tuple[str, ...]:
    """The spellings of all ``secrets``, longest first (a longer one may contain a shorter)."""
    forms = set().union(*(_spellings(s) for s in secrets if len(s.strip()) >= _MIN_SECRET_CHARS))
    return tuple(sorted(forms, key=len, reverse=True))


def _spellings(secret: str) -> set[str]:
    """Every way a key comes back inside an error text. Seen: an illegal header value is
    reported as a bytes repr (``b'...\\n...'``), which a JSON log line escapes once more. So:
    the key as is and stripped; escaped once and twice (a str or bytes repr, Python escapes,
    JSON with and without ``ensure_ascii``) and URL-encoded; and, for a key with a line break
    or another control character inside, each piece of 8+ characters between them (an
    escaped form may be cut there too)."""
    forms = {secret, secret.strip()}
    for _ in range(2):  # twice: a repr inside a JSON line
        forms |= {escaped for form in forms for escaped in _escapes(form)}
    pieces = {p for p in _BREAKS.split(secret) if len(p) >= _MIN_PIECE_CHARS}
    forms |= pieces | {quote(p, safe="") for p in pieces}
    return {f for f in forms if len(f) >= _MIN_SECRET_CHARS}


def _escapes(text: str) -> set[str]:
    return {text.encode("unicode_escape").decode("ascii"),
            repr(text)[1:-1],
            repr(text.encode("utf-8", "backslashreplace"))[2:-1],
            json.dumps(text)[1:-1],
            json.dumps(text, ensure_ascii=False)[1:-1],
            quote(text, safe=""), quote(text), quote_plus(text)}


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
        return Unavailable(f"timed out on {call}: {_describe(exc)}", call=call)
    if isinstance(exc, _NO_ANSWER):
        return Unavailable(f"connection failed on {call}: {_describe(exc)}", call=call)
    if isinstance(exc, _REQUEST_ERRORS):  # an answer that could not be read
        return Transient(f"bad answer on {call}: {_describe(exc)}", call=call)
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
    if cls is RateLimited and _STORAGE_LIMIT.search(message):
        return StoreFull(_store_full_message(text), call=call, code=code, status=status)
    reason = _key_refused(code, status, message, _error_infos(exc))
    if reason is not None:  # before "gone": a 403 that names the key is not a missing file
        return BadApiKey(f"the API key was refused on {call} ({code} {reason}): "
                         f"{message.rstrip('.')}. Set a valid GEMINI_API_KEY (or "
                         "GOOGLE_API_KEY); workers wait until they are restarted with it",
                         call=call, code=code, status=status)
    missing_file = call == "import_file" and code == 403 and _FILE_MISSING.search(message)
    if cls is Permanent and (code in _GONE.get(call, ()) or missing_file):
        cls = Gone
    return cls(text, call=call, code=code, status=status, retry_after_s=_retry_after_s(exc))


# the real wording: "Corpus has reached the storage limit of 1000000000 bytes."
_STORAGE_LIMIT = re.compile(r"storage limit", re.IGNORECASE)
TIERS = "Free 1 GB, Tier 1 10 GB, Tier 2 100 GB, Tier 3 1 TB; a document takes about 3x its size"


def _store_full_message(text: str) -> str:
    """The API's text (it names the limit) and what to do about it."""
    return (f"the project's File Search storage is full: {text.rstrip('.')}. Delete "
            f"documents or stores you no longer need, or raise the project's tier ({TIERS}), "
            "then run `objlib enqueue --retry-failed`")


def breaker_status(exc: BaseException, status: int | None) -> int | None:
    """The status the circuit breaker should count for a failed call: the HTTP status, but a
    full store's 429 counts as a 400 (a refused request): it says nothing about the service's
    load, and slowing everyone down would not help."""
    return 400 if isinstance(exc, StoreFull) else status


def _kind_of(code: int | None, message: str) -> type[GeminiError]:
    if code == 429:
        return RateLimited
    if code in _UNAVAILABLE_CODES and not any(m in message.lower() for m in _NOT_AWAY):
        return Unavailable
    if code == 408 or (code is not None and code >= 500):
        return Transient
    if code == 400 and "failed to create file" in message.lower():
        return Transient
    if code is not None and 400 <= code < 500:
        return Permanent
    return Transient  # a status the API should never send (204, 3xx): try again later


# What is known of a refused key, from public reports of the real API and the documented
# google.api.ErrorReason values (domain googleapis.com, in an ErrorInfo detail):
# - a wrong key: 400 INVALID_ARGUMENT "API key not valid. Please pass a valid API key.",
#   reason API_KEY_INVALID (an unknown key: "API Key not found. ..." with the same reason);
# - a key restricted away from this API: 403 PERMISSION_DENIED, API_KEY_SERVICE_BLOCKED;
#   restricted to other referrers/addresses/apps: API_KEY_*_BLOCKED;
# - the API not enabled in the key's project: 403 SERVICE_DISABLED; a suspended key or
#   project: 403 CONSUMER_SUSPENDED (whose message names the key itself: scrubbed);
# - no usable credentials: 401 UNAUTHENTICATED (e.g. CREDENTIALS_MISSING).
# Assumed: any 401 is about credentials; the reasons below mean the same wherever they come;
# a 400/403 without details whose message speaks of the "API key" is about the key too. A 403
# naming none of these stays what it was (on get_file/delete_*: the resource is gone).
_KEY_REASONS = frozenset({
    "API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED",
    "API_KEY_IP_ADDRESS_BLOCKED", "API_KEY_ANDROID_APP_BLOCKED", "API_KEY_IOS_APP_BLOCKED",
    "SERVICE_DISABLED", "BILLING_DISABLED", "CONSUMER_SUSPENDED", "CONSUMER_INVALID",
    "CREDENTIALS_MISSING", "ACCESS_TOKEN_EXPIRED", "ACCESS_TOKEN_TYPE_UNSUPPORTED",
})


def _key_refused(code: int | None, status: str | None, message: str,
                 infos: list[Mapping]) -> str | None:
    """Why the API key was refused (the ErrorInfo reason, else the status), None if not."""
    if code not in (400, 401, 403):
        return None
    for info in infos:
        if info.get("reason") in _KEY_REASONS:
            return str(info["reason"])
    if code == 401 or "api key" in message.lower():
        return status or "UNAUTHENTICATED"
    return None


def _details(exc: genai_errors.APIError) -> list[Mapping]:
    """The ``details`` of an error body (google.rpc.Status), as a list of mappings."""
    error = exc.details.get("error", exc.details) if isinstance(exc.details, Mapping) else {}
    details = error.get("details") if isinstance(error, Mapping) else None
    return [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []


def _error_infos(exc: genai_errors.APIError) -> list[Mapping]:
    return [d for d in _details(exc) if str(d.get("@type", "")).endswith("ErrorInfo")]


def _retry_after_s(exc: genai_errors.APIError) -> float | None:
    """From RetryInfo in the body, else from a ``Retry-After`` header; None if neither."""
    for detail in _details(exc):
        if str(detail.get("@type", "")).endswith("RetryInfo"):
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
