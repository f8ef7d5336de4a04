"""Limits shared by every worker process: the request rate and the 429 circuit breaker.

Both live in ``OBJLIB_HOME/throttle.db`` (its own file: one tiny write per API request would
otherwise contend with the catalogue and the queue).

Rate limit — GCRA with reservations. The limiter keeps one number, the theoretical arrival
time (TAT) of the next free slot; slots are ``60 / (limit * headroom)`` seconds apart. A caller
that finds the next slot in the future does not sleep and does not spin: it *reserves* that
slot (the TAT moves on, so nobody else takes it) and is told how long to wait; the task
re-schedules itself with that delay and, when it comes back, its reservation lets it through.
Requests are therefore spread evenly: no 60-second window can hold more than the limit, and
with plenty of work the sustained rate is close to it. Reservations reach at most
``RESERVE_AHEAD_S`` ahead; a caller beyond that comes back later without one. A step reserves
all the requests it expects at once (``cost``), so a file's requests are not interleaved with
every other file's and files finish steadily under a tight limit. The headroom (0.95) absorbs the lag
between a slot and the request actually reaching the server.

Circuit breaker — every response is counted in one-second buckets. When, within the rolling
window, at least ``breaker_min_429`` requests were answered 429 (or 502/503/504, or got no
answer at all: the service is away, and retrying at full speed only hammers it) and they were
at least ``breaker_ratio`` of all requests, the breaker opens for a cooldown that doubles each
time it re-opens soon after closing (up to a maximum). While open, every request is deferred.
When the cooldown ends the breaker is half-open: traffic flows, the first success closes it,
and only the counts after it opened are judged, so it recovers by itself.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from objlib.catalog.db import BUSY_TIMEOUT_S, transaction
from objlib.settings import Settings

HEADROOM = 0.95
_GRANT_EARLY_S = 0.05  # a slot this close is taken now rather than re-scheduled
_RESERVATION_TTL_S = 600.0
RESERVE_AHEAD_S = 10.0  # new work reserves slots at most this far in the future
CONTINUE_AHEAD_S = 60.0  # work that finishes a file already started, this far
THROTTLED_STATUSES = frozenset({429, 502, 503, 504})  # "slow down" or "the service is away"
LATE_S = 2.0  # a holder back later than this after its slot lost it (requests count by when
              # they are sent: late ones bunched with punctual ones would overfill a window)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS limiter (id INTEGER PRIMARY KEY CHECK (id = 1), tat REAL NOT NULL);
CREATE TABLE IF NOT EXISTS reservations (holder TEXT PRIMARY KEY, at REAL NOT NULL, cost INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS buckets (second INTEGER PRIMARY KEY, requests INTEGER NOT NULL, throttled INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS breaker (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL,
    opened_at REAL, open_until REAL, trips INTEGER NOT NULL DEFAULT 0, last_change REAL);
INSERT OR IGNORE INTO limiter(id, tat) VALUES (1, 0);
INSERT OR IGNORE INTO breaker(id, state, trips) VALUES (1, 'closed', 0)
"""


class Deferred(Exception):
    """Not now: come back in ``delay_s`` seconds. Tasks turn this into RetryTask(delay=...)."""

    def __init__(self, delay_s: float, reason: str):
        super().__init__(f"{reason}; retry in {delay_s:.2f} s")
        self.delay_s = delay_s
        self.reason = reason


@dataclass(frozen=True)
class ThrottleState:
    breaker: str  # closed | open | half-open
    breaker_open_for_s: float
    breaker_trips: int
    requests_last_60s: int
    throttled_last_60s: int
    limit_per_minute: int


class Throttle:
    def __init__(self, path: str | Path, settings: Settings, rng: random.Random | None = None):
        self.path = Path(path)
        self.settings = settings
        self.limit = settings.rate_limit_per_minute
        self.interval_s = 60.0 / (self.limit * HEADROOM) if self.limit else 0.0
        self._rng = rng or random.Random()
        self._local = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings) -> Throttle:
        return cls(settings.ensure_home().throttle_db, settings)

    @property
    def conn(self) -> sqlite3.Connection:
        """One connection per thread (worker threads share the Throttle)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            with transaction(conn):
                for statement in _SCHEMA.split(";"):
                    conn.execute(statement)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------------ before a request

    def acquire(self, holder: str, cost: int = 1, now: float | None = None,
                ahead_s: float | None = None) -> None:
        """Let ``cost`` requests go now, or raise Deferred. ``holder`` identifies the caller
        across re-schedules (the task id), so a reserved slot is honoured when it returns.
        ``ahead_s``: how far ahead this caller may reserve (work that finishes files already
        started may reserve further than new work, so it is not starved by it)."""
        ahead_s = RESERVE_AHEAD_S if ahead_s is None else ahead_s
        now = time.time() if now is None else now
        with transaction(self.conn) as conn:
            breaker = conn.execute("SELECT state, open_until FROM breaker").fetchone()
            if breaker[0] == "open" and breaker[1] > now:
                wait = breaker[1] - now
                raise Deferred(wait + self._rng.uniform(0, min(wait, 5.0)), "circuit breaker open")
            if not self.limit:
                return
            reserved = conn.execute("SELECT at, cost FROM reservations WHERE holder=?",
                                    (holder,)).fetchone()
            tat = conn.execute("SELECT tat FROM limiter").fetchone()[0]
            if reserved is not None:
                at, reserved_cost = reserved
                if at > now + _GRANT_EARLY_S:
                    raise Deferred(at - now, "rate limit: waiting for a reserved slot")
                conn.execute("DELETE FROM reservations WHERE holder=?", (holder,))
                late = now - at > LATE_S
            if reserved is not None and not late:
                if cost > reserved_cost:
                    # the caller came back needing more than it booked: the extra requests
                    # are charged now, pushing everyone after them back by as much
                    conn.execute("UPDATE limiter SET tat=?",
                                 (max(tat, now) + (cost - reserved_cost) * self.interval_s,))
                return
            start = max(tat, now)
            if start - now > ahead_s:
                # the slots are taken that far ahead: come back later without holding one
                # (a short horizon keeps a step's requests together instead of interleaving
                # every task's requests over minutes)
                wait = start - now - ahead_s
                raise Deferred(wait + self._rng.uniform(0, ahead_s / 2),
                               "rate limit: slots taken")
            conn.execute("UPDATE limiter SET tat=?", (start + cost * self.interval_s,))
            if start <= now + _GRANT_EARLY_S:
                return
            conn.execute("DELETE FROM reservations WHERE at < ?", (now - _RESERVATION_TTL_S,))
            conn.execute("INSERT INTO reservations(holder, at, cost) VALUES (?, ?, ?)",
                         (holder, start, cost))
        raise Deferred(start - now, "rate limit: slot reserved")

    # ------------------------------------------------------------------ after a response

    def record(self, status: int | None, now: float | None = None) -> None:
        """Count one response (HTTP status, None for no response) and move the breaker:
        429s, 502/503/504 and no answer at all count against it alike."""
        now = time.time() if now is None else now
        throttled = int(status is None or status in THROTTLED_STATUSES)
        s = self.settings
        with transaction(self.conn) as conn:
            conn.execute("INSERT INTO buckets(second, requests, throttled) VALUES (?, 1, ?) "
                         "ON CONFLICT(second) DO UPDATE SET requests=requests+1, "
                         "throttled=throttled+excluded.throttled", (int(now), throttled))
            state, opened_at, open_until, trips, last_change = conn.execute(
                "SELECT state, opened_at, open_until, trips, last_change FROM breaker").fetchone()
            if state == "open" and open_until <= now and not throttled:
                conn.execute("UPDATE breaker SET state='closed', last_change=?", (now,))
                return
            if not throttled or (state == "open" and open_until > now):
                if int(now) % 60 == 0:
                    conn.execute("DELETE FROM buckets WHERE second < ?", (int(now) - 3600,))
                return
            since = max(now - s.breaker_window_s, opened_at or 0.0)
            requests, n429 = conn.execute(
                "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(throttled), 0) FROM buckets "
                "WHERE second >= ?", (int(since),)).fetchone()
            if n429 >= s.breaker_min_429 and n429 >= s.breaker_ratio * requests:
                recent = last_change is not None and now - last_change < 2 * s.breaker_window_s
                trips = trips + 1 if recent else 1
                cooldown = min(s.breaker_cooldown_s * 2 ** (trips - 1), s.breaker_max_cooldown_s)
                conn.execute("UPDATE breaker SET state='open', opened_at=?, open_until=?, "
                             "trips=?, last_change=?", (now, now + cooldown, trips, now))

    # ------------------------------------------------------------------ for status

    def state(self, now: float | None = None) -> ThrottleState:
        now = time.time() if now is None else now
        conn = self.conn
        state, open_until, trips = conn.execute(
            "SELECT state, open_until, trips FROM breaker").fetchone()
        requests, n429 = conn.execute(
            "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(throttled), 0) FROM buckets "
            "WHERE second > ?", (int(now) - 60,)).fetchone()
        if state == "open" and open_until <= now:
            state = "half-open"
        return ThrottleState(
            breaker=state, breaker_open_for_s=max(0.0, (open_until or 0) - now) if state == "open" else 0.0,
            breaker_trips=trips, requests_last_60s=requests, throttled_last_60s=n429,
            limit_per_minute=self.limit)

    def last_request_at(self) -> float | None:
        row = self.conn.execute("SELECT MAX(second) FROM buckets").fetchone()
        return float(row[0]) if row and row[0] is not None else None
