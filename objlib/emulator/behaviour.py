"""How the emulator behaves, apart from what it stores: latency per step, seeded fault
injection, the requests-per-minute quota and request statistics.

Latency steps (seconds; each delays the *response*, the work is done first):

=========  ==================================================================================
upload     before answering the finalize chunk of a resumable upload
activate   a raw file is PROCESSING for this long after the finalize response, then ACTIVE;
           0 in every profile: the real service answers an upload ACTIVE at once, with
           createTime == updateTime (the one real sample, gemini-wire-spec.md "File";
           PROCESSING is documented for video). ``--latency activate=S`` brings it back.
import     before answering importFile (the document already exists, STATE_PENDING)
index      from importFile (or the upload finalize) to operation done / document ACTIVE
call       before answering any other call, errors included
=========  ==================================================================================

Profiles. ``instant``: all zero. ``realistic``: the field figures scaled down 10x. An earlier
pipeline saw upload -> import -> operation done take 4-6 s for a 20-100 KB transcript and a
``documents.get`` P50 of 0.24 s (``field-lessons.md``). Split as roughly upload 1 s, import
0.5 s, index 3 s, call 0.25 s and divided by ten: upload 0.1, import 0.05, index 0.3, call
0.025 (about 0.45 s per file end to end), each with a seeded +-20 % jitter; activate 0.
A few hundred files at 7 workers then finish in well under a minute, so a demo shows the
pipeline's shape without waiting on it; ``--latency index=1.5`` and the like stretch any step.
``field``: those field figures unscaled, as users see them (upload 1, import 0.5, index 3,
call 0.25, same jitter) with raw files ACTIVE at once (activate 0), for side-by-side runs at
real scale (``scripts/bench.py --only seed``); a few hundred files take minutes there.
``Profile.file_s()`` is the end-to-end lower bound for one file, for throughput arithmetic.

Faults (probabilities 0..1, drawn from ``random.Random(seed)``; 1.0 is deterministic):

=============  ===========================================================================
rate_limit     429 RESOURCE_EXHAUSTED "Resource has been exhausted (e.g. check quota).", no
               retry delay (see below)
unavailable    503 UNAVAILABLE
create_failed  the transient 400 INVALID_ARGUMENT "Failed to create file." on an upload start
never_done     the indexing operation never reports done; the document still becomes ACTIVE
index_failed   the operation ends done with error code 13; the document STATE_FAILED
=============  ===========================================================================

``rate_limit``, ``unavailable`` and the rpm quota apply to API *calls*: every JSON call and
every upload start. They do not apply to upload chunk POSTs (the SDK sends those without an
API key and outside its retry policy; a failed chunk fails the whole upload), nor to
``/_emulator/*``. ``--rpm N`` admits at most N calls in any sliding 60 s; calls beyond it get a
429 and do not count against the quota.

What a 429 carries, as the real API sends it. A quota's 429 ("You exceeded your current
quota ... Please retry in 53.016342224s.") says how long to wait in a ``google.rpc.RetryInfo``
detail of its body (``retryDelay``, e.g. "53s", also seen with nanoseconds, "45.837906927s";
googleapis/python-genai#1875, dcdpr/jp#1061): here the whole seconds until the oldest call
leaves the window. The scattered 429 ``rate_limit`` stands for ("Resource has been exhausted
(e.g. check quota).", seen with no quota reached) was reported with a bare body, no details
(google/generative-ai-docs#236, google-gemini/gemini-cli#2020): here no RetryInfo either, so
a client must choose its own backoff. Neither carries a ``Retry-After`` header: a client of
the real API reports that it never sends one (dcdpr/jp#1061), and none is documented; where
that is unknown the emulator takes the stricter answer (no header: the body is the only
hint). A 503 UNAVAILABLE carries no hint either.

API keys: with ``api_keys`` given (``--api-key K``), only those keys are valid; any other
key gets the real API's ``400 INVALID_ARGUMENT`` "API key not valid" with its ErrorInfo
(reason ``API_KEY_INVALID``) on every API call and upload start. Without, any key is accepted.
A call with no key at all is a 403 PERMISSION_DENIED either way.

Statistics: calls per endpoint and per status, the fault and quota rejections, and two window
maxima: ``max_requests_in_60s`` (every request except ``/_emulator/*``, chunk POSTs included)
and ``max_calls_in_60s`` (the calls the quota counts: chunk POSTs excluded, rejected calls
included), each the highest count within any half-open 60 s window.
"""

from __future__ import annotations

import collections
import math
import random
import threading
import time
from dataclasses import dataclass, field
from types import MappingProxyType

from objlib.emulator.state import ApiError

LATENCY_STEPS = ("upload", "activate", "import", "index", "call")
FAULT_KINDS = ("rate_limit", "unavailable", "create_failed", "never_done", "index_failed")
WINDOW_S = 60.0
_KEEP = object()


@dataclass(frozen=True)
class Profile:
    name: str
    latency_s: MappingProxyType
    jitter: float = 0.0          # +- fraction applied to every delay

    def file_s(self) -> float:
        """One file from upload start to indexed, ignoring client-side polling gaps."""
        return sum(self.latency_s[step] for step in LATENCY_STEPS)


def _profile(name: str, latency_s: dict[str, float], jitter: float = 0.0) -> Profile:
    steps = {step: latency_s.get(step, 0.0) for step in LATENCY_STEPS}
    return Profile(name, MappingProxyType(steps), jitter)


PROFILES = MappingProxyType({
    "instant": _profile("instant", {}),
    "realistic": _profile("realistic", {"upload": 0.1, "activate": 0.0, "import": 0.05,
                                        "index": 0.3, "call": 0.025}, jitter=0.2),
    "field": _profile("field", {"upload": 1.0, "activate": 0.0, "import": 0.5, "index": 3.0,
                                "call": 0.25}, jitter=0.2),
})


def parse_knobs(items, allowed: tuple[str, ...], what: str) -> dict[str, float]:
    """``["rate_limit=0.1", ...]`` -> ``{"rate_limit": 0.1}``; ValueError names what is wrong."""
    out = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in allowed:
            raise ValueError(f"{what} {item!r}: expected NAME=NUMBER with NAME one of "
                             f"{', '.join(allowed)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"{what} {item!r}: {value!r} is not a number") from None
    return out


def _checked(knobs: dict | None, allowed: tuple[str, ...], what: str, upper: float) -> dict:
    knobs = dict(knobs or {})
    for name, value in knobs.items():
        if name not in allowed:
            raise ValueError(f"unknown {what} {name!r}; choose from {', '.join(allowed)}")
        if not isinstance(value, (int, float)) or not 0 <= value <= upper or math.isnan(value):
            raise ValueError(f"{what} {name}={value!r} must be a number from 0 to {upper:g}")
    return knobs


class SlidingWindow:
    """Event times in the half-open window (now - 60 s, now], and the highest count seen."""

    def __init__(self, width_s: float = WINDOW_S):
        self.width_s = width_s
        self.times: collections.deque[float] = collections.deque()
        self.max = 0

    def count(self, now: float) -> int:
        while self.times and self.times[0] <= now - self.width_s:
            self.times.popleft()
        return len(self.times)

    def add(self, now: float) -> int:
        self.count(now)
        self.times.append(now)
        self.max = max(self.max, len(self.times))
        return len(self.times)


@dataclass
class _Stats:
    requests: collections.Counter = field(default_factory=collections.Counter)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    faults: collections.Counter = field(default_factory=collections.Counter)
    requests_window: SlidingWindow = field(default_factory=SlidingWindow)
    calls_window: SlidingWindow = field(default_factory=SlidingWindow)
    quota_window: SlidingWindow = field(default_factory=SlidingWindow)


class Behaviour:
    """Knobs plus statistics, behind one lock; ``clock`` is monotonic seconds (tests pass one)."""

    def __init__(self, profile: str = "instant", latency: dict | None = None,
                 faults: dict | None = None, rpm: int | None = None, seed: int | None = None,
                 clock=time.monotonic, api_keys=None):
        self.lock = threading.Lock()
        self.clock = clock
        self.latency_s: dict[str, float] = {}
        self.faults: dict[str, float] = {}
        self.rpm: int | None = None
        self.api_keys: frozenset[str] | None = None
        self._jitter_rng = random.Random(None if seed is None else f"{seed}:jitter")
        self._fault_rng = random.Random(None if seed is None else f"{seed}:faults")
        self.configure(profile=profile, latency=latency, faults=faults, rpm=rpm,
                       api_keys=api_keys)
        self.reset()

    def configure(self, *, profile: str | None = None, latency: dict | None = None,
                  faults: dict | None = None, rpm=_KEEP, api_keys=_KEEP) -> None:
        """Change knobs at run time. ``profile`` resets every latency to the profile's; the
        ``latency`` and ``faults`` given are merged over the current ones; ``rpm`` None or 0
        lifts the quota; ``api_keys`` (the only valid keys) None or empty accepts any key."""
        if profile is not None and profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
        latency = _checked(latency, LATENCY_STEPS, "latency step", 3600.0)
        faults = _checked(faults, FAULT_KINDS, "fault", 1.0)
        if rpm is not _KEEP and rpm is not None and (not isinstance(rpm, int) or rpm < 0):
            raise ValueError(f"rpm must be a whole number >= 0, not {rpm!r}")
        with self.lock:
            if profile is not None:
                self.profile = PROFILES[profile]
                self.latency_s = dict(self.profile.latency_s)
            self.latency_s.update(latency)
            self.faults.update(faults)
            if rpm is None or isinstance(rpm, int):  # not _KEEP (checked above)
                self.rpm = rpm or None
            if api_keys is not _KEEP:
                self.api_keys = frozenset(api_keys) if api_keys else None

    def reset(self) -> None:
        """Forget the statistics (the knobs stay)."""
        with self.lock:
            self._stats = _Stats()

    # -- knobs

    def delay_s(self, step: str) -> float:
        """The configured delay for ``step`` with the profile's seeded jitter."""
        with self.lock:
            base, jitter = self.latency_s[step], self.profile.jitter
            if base <= 0 or jitter <= 0:
                return base
            return base * self._jitter_rng.uniform(1 - jitter, 1 + jitter)

    def roll(self, kind: str) -> bool:
        """Whether fault ``kind`` strikes now (counted in the statistics when it does)."""
        with self.lock:
            return self._roll(kind)

    def _roll(self, kind: str) -> bool:
        rate = self.faults.get(kind, 0.0)
        hit = rate >= 1.0 or (rate > 0.0 and self._fault_rng.random() < rate)
        if hit:
            self._stats.faults[kind] += 1
        return hit

    def index_outcome(self) -> str:
        """How an indexing operation will end: "failed", "never_done" or "active"."""
        with self.lock:
            if self._roll("index_failed"):
                return "failed"
            return "never_done" if self._roll("never_done") else "active"

    # -- admission and statistics

    def key_valid(self, key: str) -> bool:
        with self.lock:
            return self.api_keys is None or key in self.api_keys

    def arrive(self, *, call: bool) -> None:
        """Count a request as it arrives (``call``: an API call rather than an upload chunk)."""
        now = self.clock()
        with self.lock:
            self._stats.requests_window.add(now)
            if call:
                self._stats.calls_window.add(now)

    def admit(self) -> None:
        """Raise the ApiError a call meets from the quota or the faults; else count it."""
        now = self.clock()
        with self.lock:
            quota = self._stats.quota_window
            if self.rpm and quota.count(now) >= self.rpm:
                self._stats.faults["rpm_quota"] += 1
                raise _resource_exhausted("Quota exceeded: too many requests per minute.",
                                          max(1, math.ceil(quota.times[0] + WINDOW_S - now)))
            if self._roll("rate_limit"):
                raise _resource_exhausted("Resource has been exhausted (e.g. check quota).")
            if self._roll("unavailable"):
                raise ApiError(503, "UNAVAILABLE", "The service is currently unavailable.")
            quota.add(now)

    def record(self, endpoint: str, status: int) -> None:
        with self.lock:
            self._stats.requests[endpoint] += 1
            self._stats.statuses[str(status)] += 1

    def stats(self) -> dict:
        now = self.clock()
        with self.lock:
            s = self._stats
            return {"total_requests": sum(s.requests.values()),
                    "requests": dict(sorted(s.requests.items())),
                    "statuses": dict(sorted(s.statuses.items())),
                    "faults": dict(sorted(s.faults.items())),
                    "max_requests_in_60s": s.requests_window.max,
                    "max_calls_in_60s": s.calls_window.max,
                    "requests_in_last_60s": s.requests_window.count(now),
                    "config": {"profile": self.profile.name, "latency_s": dict(self.latency_s),
                               "faults": dict(self.faults), "rpm": self.rpm,
                               "api_keys": len(self.api_keys or ())}}  # never the keys


def _resource_exhausted(message: str, retry_s: int | None = None) -> ApiError:
    """A 429; with ``retry_s``, the RetryInfo a quota's 429 carries (no Retry-After header:
    see the module docstring)."""
    details = None if retry_s is None else [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_s}s"}]
    return ApiError(429, "RESOURCE_EXHAUSTED", message, details=details)
