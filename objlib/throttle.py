"""Limits shared by every worker process: the request rate, the pace adapted to 429s, and the
circuit breaker.

All three live in ``OBJLIB_HOME/throttle.db`` (its own file: one tiny write per API request would
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
every other file's and files finish steadily under a tight limit. A holder that comes back
needing more than it booked goes at once only if nobody booked after it; otherwise it books
the whole step again like a new request (a request is never sent ahead of its slot). The
headroom (0.95) absorbs the lag between a slot and the request actually reaching the server.

Behind the slots, a count: every grant is logged (``sends``) and goes only if the last 60 s
hold room for it, else it is deferred until enough sends leave the window. The slots alone
cannot promise that: a step's requests all go at its first slot and a holder may come back
up to ``LATE_S`` late, so at a small limit (or with a large upload) a window could hold more
than the limit. A step that needs more than the whole limit goes alone, into an empty window.

Adaptive limit — AIMD, as TCP paces itself without knowing the link. The limit in force is
``min(rate_limit_per_minute, adaptive)``; with neither, requests are not limited. When 429s
press (at least ``ADAPT_MIN_429`` of them and ``ADAPT_RATIO`` of the requests of the last
``PRESSURE_S``; for a first pace, of at least ``ADAPT_SAMPLE`` requests), the adaptive
limit is *cut* to ``BETA`` times the one in force or, when none is, ``FIRST_CUT`` times
the lower of the configured limit and what the service accepted in the last ``WINDOW_S``
(the quota measured: it refused the rest). The minute after a cut is not judged: an rpm
quota remembers the requests sent before the cut that long, so the 429s the new pace meets
then say nothing about it. Each whole judged window without pressure
*raises* it by ``RAISE`` (at least one request a minute); once it reaches the configured
limit, or a window's requests stay under ``DROP_BELOW`` of it (it no longer holds anyone
back), it is dropped. It never goes below ``MIN_PER_MINUTE``. Scattered 429s (under the
ratio) neither cut it nor stop it rising.

Circuit breaker — every response is counted in one-second buckets. When, within the rolling
window, at least ``breaker_min_429`` requests met an outage (502/503/504, or no answer at all:
the service is away, and retrying at full speed only hammers it) or a 429 while no adaptive
limit is in force, and they were at least ``breaker_ratio`` of all requests, the breaker opens
for a cooldown that doubles each time it re-opens soon after closing with the service still
mostly failing (up to a maximum; a flaky service that answered most requests in between
starts again from the base cooldown). Once the adaptive limit is in force, 429s set the pace
instead: they are the signal the pace answers, and at its floor of one request a minute it is
already as gentle as the breaker at its longest cooldown. While open, every request is
deferred. When the cooldown ends the breaker is half-open: traffic flows, the first answer
that is not an outage closes it, and only the counts after it opened are judged, so it
recovers by itself.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from objlib.catalog.db import BUSY_TIMEOUT_S, transaction
from objlib.settings import Settings

if TYPE_CHECKING:
    import random

HEADROOM = 0.95
_GRANT_EARLY_S = 0.05  # a slot this close is taken now rather than re-scheduled
_RESERVATION_TTL_S = 600.0
RESERVE_AHEAD_S = 10.0  # new work reserves slots at most this far in the future
CONTINUE_AHEAD_S = 60.0  # work that finishes a file already started, this far
THROTTLED_STATUSES = frozenset({429, 502, 503, 504})  # "slow down" or "the service is away"
LATE_S = 2.0  # a holder back later than this after its slot lost it (requests count by when
              # they are sent: late ones bunched with punctual ones would overfill a window)

# the adaptive limit (see the module docstring and docs/architecture.md for the figures)
WINDOW_S = 60.0  # quotas are per minute: the window the pace is judged and changed over
BETA = 0.7  # a cut: this times the pace in force ...
FIRST_CUT = 0.9  # ... or, with none, this times what the service accepted in the last window
RAISE = 0.1  # a raise per window without pressure: this fraction of the limit (>= 1/min)
PRESSURE_S = 30.0  # 429s press when, in the last PRESSURE_S, there were at least ...
ADAPT_MIN_429 = 3  # ... this many of them ...
ADAPT_RATIO = 0.15  # ... and this fraction of the requests (as in the last WINDOW_S, to raise)
ADAPT_SAMPLE = 60  # ... judged, to set a first pace, over at least this many requests
DROP_BELOW = 0.5  # dropped when a window's requests stay under this fraction of it
MIN_PER_MINUTE = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS limiter (id INTEGER PRIMARY KEY CHECK (id = 1), tat REAL NOT NULL);
CREATE TABLE IF NOT EXISTS reservations (holder TEXT PRIMARY KEY, at REAL NOT NULL,
                                         cost INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sends (id INTEGER PRIMARY KEY, at REAL NOT NULL, cost INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sends_at ON sends(at);
CREATE TABLE IF NOT EXISTS buckets (second INTEGER PRIMARY KEY, requests INTEGER NOT NULL,
    throttled INTEGER NOT NULL, limited INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS breaker (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL,
    opened_at REAL, open_until REAL, trips INTEGER NOT NULL DEFAULT 0, last_change REAL);
CREATE TABLE IF NOT EXISTS adaptive (id INTEGER PRIMARY KEY CHECK (id = 1), per_minute REAL,
    changed_at REAL, cut_at REAL);
INSERT OR IGNORE INTO limiter(id, tat) VALUES (1, 0);
INSERT OR IGNORE INTO breaker(id, state, trips) VALUES (1, 'closed', 0);
INSERT OR IGNORE INTO adaptive(id) VALUES (1)
"""


class Deferred(Exception):
    """Not now: come back in ``delay_s`` seconds. Tasks turn this into RetryTask(delay=...).

    ``resend``: what is waited for is a moment to send a request again (a rate-limit slot,
    the backoff after an error answer), not the service's own progress (an import running):
    a thread that can spare ``delay_s`` may wait it out and run the step again at once
    (``objlib.lane``), instead of handing the step back to the queue's schedule."""

    def __init__(self, delay_s: float, reason: str, *, resend: bool = False):
        super().__init__(f"{reason}; retry in {delay_s:.2f} s")
        self.delay_s = delay_s
        self.reason = reason
        self.resend = resend


@dataclass(frozen=True)
class ThrottleState:
    breaker: str  # closed | open | half-open
    breaker_open_for_s: float
    breaker_trips: int
    requests_last_60s: int
    throttled_last_60s: int
    limit_per_minute: int
    adaptive_per_minute: float | None = None  # the pace adapted to 429s, when one is in force
    rate_limited_last_60s: int = 0  # the 429s among throttled_last_60s


@dataclass(frozen=True)
class Window:
    """The answers the adaptive limit judges (see ``judged_since``): how many, how many the
    service accepted (not throttled in any way), the 429s among them; and the requests and
    429s of the last ``PRESSURE_S`` of it."""
    requests: int
    accepted: int
    limited: int
    recent_requests: int
    recent_limited: int


@dataclass(frozen=True)
class Adaptive:
    """The adaptive limit: ``per_minute`` (None: none in force), when it last changed and
    when it was last cut."""
    per_minute: float | None = None
    changed_at: float | None = None
    cut_at: float | None = None


def judged_since(a: Adaptive, now: float) -> float:
    """The start of the window the pace is judged on: the last ``WINDOW_S``, but nothing
    from the window after a cut. The service still remembers the requests before the cut
    for that long (an rpm quota is a sliding minute), so the 429s its new pace meets then
    say nothing about that pace."""
    return max(now - WINDOW_S, -1.0 if a.cut_at is None else a.cut_at + WINDOW_S)


def _pressing(limited: int, requests: int, sample: int = 0) -> bool:
    """429s press when they are at least ``ADAPT_MIN_429`` and ``ADAPT_RATIO`` of the
    requests, judged over at least ``sample`` of them (fewer count as that many). A first
    pace is judged over ``ADAPT_SAMPLE``: without that floor a few scattered 429s among the
    first requests of a run (a service that refuses one request in 20 at random: 3 of the
    first 20) set a pace from what little had been accepted, some 15 requests a minute,
    which then took the better part of an hour to climb back: in 9 % of simulated run starts
    at 5 % random 429s, 0.3 % with the floor. A quota's first burst meets 429s on every
    worker at once, well above it. A pace in force is judged as before (its windows are
    small at a small quota, and it must answer their 429s)."""
    return limited >= ADAPT_MIN_429 and limited >= ADAPT_RATIO * max(requests, sample)


def adapt(a: Adaptive, w: Window, configured: int, now: float) -> Adaptive:
    """One AIMD step (pure). Cut when 429s press: to ``BETA`` times the adaptive limit in
    force or, when none is, ``FIRST_CUT`` times the lower of the configured one and what the
    service accepted in the window (a measure of the quota, so less is taken off). Raise
    after a whole judged window without pressure; drop once at the configured limit or
    above what the workers ask for. ``configured`` 0: none."""
    if _pressing(w.recent_limited, w.recent_requests,
                 0 if a.per_minute is not None else ADAPT_SAMPLE):
        if a.per_minute is not None:
            cut = BETA * a.per_minute
        else:
            cut = FIRST_CUT * (min(configured, w.accepted) if configured else w.accepted)
        return Adaptive(max(MIN_PER_MINUTE, cut), now, now)
    if (a.per_minute is None or _pressing(w.limited, w.requests)
            or now - max(a.changed_at or 0.0, judged_since(a, now)) < WINDOW_S):
        return a
    raised = a.per_minute + max(1.0, RAISE * a.per_minute)
    if (configured and raised >= configured) or w.requests < DROP_BELOW * a.per_minute:
        return Adaptive(None, now, a.cut_at)
    return Adaptive(raised, now, a.cut_at)


def _new_rng() -> random.Random:
    import random  # here, not at import: `objlib status` reads a throttle and draws nothing

    return random.Random()


class Throttle:
    def __init__(self, path: str | Path, settings: Settings, rng: random.Random | None = None):
        self.path = Path(path)
        self.settings = settings
        self.limit = settings.rate_limit_per_minute  # configured; 0 = none
        self._rng = rng or _new_rng()
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
                columns = {row[1] for row in conn.execute("PRAGMA table_info(buckets)")}
                if "limited" not in columns:  # a throttle.db from before the adaptive limit
                    conn.execute("ALTER TABLE buckets ADD COLUMN limited INTEGER NOT NULL "
                                 "DEFAULT 0")
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
        if self._free_to_go(now):
            return
        with transaction(self.conn) as conn:
            breaker = conn.execute("SELECT state, open_until FROM breaker").fetchone()
            if breaker[0] == "open" and breaker[1] > now:
                wait = breaker[1] - now
                raise Deferred(wait + self._rng.uniform(0, min(wait, 5.0)), "circuit breaker open",
                               resend=True)
            limit = self._limit_in_force(conn)
            if not limit:
                return
            interval_s = 60.0 / (limit * HEADROOM)
            tat = conn.execute("SELECT tat FROM limiter").fetchone()[0]
            if self._spend_reservation(conn, holder, cost, tat, interval_s, now):
                self._send(conn, cost, limit, now)
                return
            start = max(tat, now)
            if start - now > ahead_s:
                # the slots are taken that far ahead: come back later without holding one
                # (a short horizon keeps a step's requests together instead of interleaving
                # every task's requests over minutes)
                wait = start - now - ahead_s
                # (no slot is held for it: nothing to be on time for, so not ``resend``)
                raise Deferred(wait + self._rng.uniform(0, ahead_s / 2),
                               "rate limit: slots taken")
            conn.execute("UPDATE limiter SET tat=?", (start + cost * interval_s,))
            if start <= now + _GRANT_EARLY_S:
                self._send(conn, cost, limit, now)
                return
            conn.execute("DELETE FROM reservations WHERE at < ?", (now - _RESERVATION_TTL_S,))
            conn.execute("INSERT INTO reservations(holder, at, cost) VALUES (?, ?, ?)",
                         (holder, start, cost))
        raise Deferred(start - now, "rate limit: slot reserved", resend=True)

    def _free_to_go(self, now: float) -> bool:
        """No limit in force and the breaker not open: the request goes, and nothing is
        written for it, so a plain read decides (no write lock; WAL readers never wait). The
        common case without a rate limit; anything else takes the transaction below."""
        conn = self.conn
        breaker = conn.execute("SELECT state, open_until FROM breaker").fetchone()
        if breaker[0] == "open" and breaker[1] > now:
            return False
        return not self._limit_in_force(conn)

    def _spend_reservation(self, conn: sqlite3.Connection, holder: str, cost: int, tat: float,
                           interval_s: float, now: float) -> bool:
        """True if the holder's reservation lets ``cost`` requests go now. Raises Deferred
        while its slot is ahead. A holder back late has lost its slot. One back needing more
        than it booked goes only if nobody booked after it: its booking then just grows into
        the step a new request of that cost would have booked. Otherwise it books the whole
        step again like a new request (its own slots stay spent): taking the extra slots
        from the end of the line while sending at once is what let 61 requests into one
        window at a limit of 60."""
        reserved = conn.execute("SELECT at, cost FROM reservations WHERE holder=?",
                                (holder,)).fetchone()
        if reserved is None:
            return False
        at, reserved_cost = reserved
        if at > now + _GRANT_EARLY_S:
            raise Deferred(at - now, "rate limit: waiting for a reserved slot", resend=True)
        conn.execute("DELETE FROM reservations WHERE holder=?", (holder,))
        if now - at > LATE_S:
            return False
        surplus = cost - reserved_cost
        if surplus <= 0:
            return True
        if tat > at + reserved_cost * interval_s + _GRANT_EARLY_S:
            return False
        conn.execute("UPDATE limiter SET tat=?", (max(tat, now) + surplus * interval_s,))
        return True

    @staticmethod
    def _send(conn: sqlite3.Connection, cost: int, limit: float, now: float) -> None:
        """The guard behind the slots: let ``cost`` requests go now only if the last
        ``WINDOW_S`` (sends after ``now - WINDOW_S``) holds room for them; a step needing
        more than the whole limit goes alone, into an empty window. Otherwise raise Deferred
        until enough sends leave the window: the transaction rolls back, so the caller's
        booking stands as it was. The slots keep sends ~5 % under the limit; this count
        makes it exact where they cannot — a step's requests all go at its first slot, and
        a holder may be up to ``LATE_S`` late — both of which the property probe
        (``tests/test_throttle_properties.py``) turned into windows above the limit."""
        conn.execute("DELETE FROM sends WHERE at <= ?", (now - WINDOW_S,))
        sends = conn.execute("SELECT at, cost FROM sends ORDER BY at").fetchall()
        in_window = sum(c for _, c in sends)
        # what may stay in the window beside them
        room_for_others = max(0, max(1, int(limit)) - cost)
        if in_window > room_for_others:
            leaving = in_window - room_for_others
            for at, c in sends:  # the oldest leave first
                leaving -= c
                if leaving <= 0:
                    raise Deferred(at + WINDOW_S - now + 1e-6, "rate limit: window full",
                                   resend=True)
        conn.execute("INSERT INTO sends(at, cost) VALUES (?, ?)", (now, cost))

    def _limit_in_force(self, conn: sqlite3.Connection) -> float | None:
        """min(configured, adaptive); None when neither is set."""
        adaptive = conn.execute("SELECT per_minute FROM adaptive").fetchone()[0]
        limits = [x for x in (self.limit or None, adaptive) if x is not None]
        return min(limits) if limits else None

    # ------------------------------------------------------------------ after a response

    def record(self, status: int | None, now: float | None = None) -> None:
        """Count one response (HTTP status, None for no response), adapt the pace to 429s
        and move the breaker on outages (502/503/504, no answer) and on 429s the pace does
        not answer yet."""
        now = time.time() if now is None else now
        limited = int(status == 429)
        throttled = int(status is None or status in THROTTLED_STATUSES)
        with transaction(self.conn) as conn:
            conn.execute("INSERT INTO buckets(second, requests, throttled, limited) "
                         "VALUES (?, 1, ?, ?) ON CONFLICT(second) DO UPDATE SET "
                         "requests=requests+1, throttled=throttled+excluded.throttled, "
                         "limited=limited+excluded.limited", (int(now), throttled, limited))
            pace = self._adapt(conn, limited, now)
            outage = throttled and not (limited and pace is not None)
            self._move_breaker(conn, outage, counting_429s=pace is None, now=now)

    def _adapt(self, conn: sqlite3.Connection, limited: int, now: float) -> float | None:
        """Apply one AIMD step when there may be one to take (a 429 arrived, or a window
        passed since the last change); return the adaptive limit now in force."""
        a = Adaptive(*conn.execute("SELECT per_minute, changed_at, cut_at FROM adaptive")
                     .fetchone())
        if not limited and (a.per_minute is None or now - (a.changed_at or 0.0) < WINDOW_S):
            return a.per_minute
        since = judged_since(a, now)
        requests, throttled, n429, recent, recent_429 = conn.execute(
            "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(throttled), 0), "
            "COALESCE(SUM(limited), 0), COALESCE(SUM(requests * (second > ?)), 0), "
            "COALESCE(SUM(limited * (second > ?)), 0) FROM buckets WHERE second > ?",
            (int(now - PRESSURE_S),) * 2 + (int(since),)).fetchone()
        w = Window(requests, requests - throttled, n429, recent, recent_429)
        new = adapt(a, w, self.limit, now)
        if new != a:
            conn.execute("UPDATE adaptive SET per_minute=?, changed_at=?, cut_at=?",
                         (new.per_minute, new.changed_at, new.cut_at))
        return new.per_minute

    def _move_breaker(self, conn: sqlite3.Connection, outage: int, *, counting_429s: bool,
                      now: float) -> None:
        s = self.settings
        state, opened_at, open_until, trips, last_change = conn.execute(
            "SELECT state, opened_at, open_until, trips, last_change FROM breaker").fetchone()
        if state == "open" and open_until <= now and not outage:
            conn.execute("UPDATE breaker SET state='closed', last_change=?", (now,))
            return
        if not outage or (state == "open" and open_until > now):
            if int(now) % 60 == 0:
                conn.execute("DELETE FROM buckets WHERE second < ?", (int(now) - 3600,))
            return
        since = max(now - s.breaker_window_s, opened_at or 0.0)
        counted = "throttled" if counting_429s else "throttled - limited"
        requests, failed = conn.execute(
            f"SELECT COALESCE(SUM(requests), 0), COALESCE(SUM({counted}), 0) FROM buckets "
            "WHERE second >= ?", (int(since),)).fetchone()
        if failed >= s.breaker_min_429 and failed >= s.breaker_ratio * requests:
            recent = last_change is not None and now - last_change < 2 * s.breaker_window_s
            if recent and state == "closed":
                recent = self._still_away(conn, counted, last_change)
            trips = trips + 1 if recent else 1
            cooldown = min(s.breaker_cooldown_s * 2 ** (trips - 1), s.breaker_max_cooldown_s)
            conn.execute("UPDATE breaker SET state='open', opened_at=?, open_until=?, "
                         "trips=?, last_change=?", (now, now + cooldown, trips, now))

    @staticmethod
    def _still_away(conn: sqlite3.Connection, counted: str, closed_at: float) -> bool:
        """Since the breaker last closed, did failures make up at least half the answers?
        Only then is a quick re-trip the same outage going on (the cooldown doubles); a
        flaky service that answered most requests in between starts again from the base
        cooldown instead of climbing to the maximum."""
        requests, failed = conn.execute(
            f"SELECT COALESCE(SUM(requests), 0), COALESCE(SUM({counted}), 0) FROM buckets "
            "WHERE second >= ?", (int(closed_at),)).fetchone()
        return 2 * failed >= requests

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
            breaker=state,
            breaker_open_for_s=max(0.0, (open_until or 0) - now) if state == "open" else 0.0,
            breaker_trips=trips, requests_last_60s=requests, throttled_last_60s=n429,
            limit_per_minute=self.limit, adaptive_per_minute=self._adaptive_or_none(conn),
            rate_limited_last_60s=self._429s_since(conn, int(now) - 60))

    @staticmethod
    def _429s_since(conn: sqlite3.Connection, second: int) -> int:
        try:
            return conn.execute("SELECT COALESCE(SUM(limited), 0) FROM buckets WHERE second > ?",
                                (second,)).fetchone()[0]
        except sqlite3.OperationalError:  # read-only, from before 429s were counted apart
            return 0

    @staticmethod
    def _adaptive_or_none(conn: sqlite3.Connection) -> float | None:
        try:
            return conn.execute("SELECT per_minute FROM adaptive").fetchone()[0]
        except sqlite3.OperationalError:  # read-only, from before the adaptive limit
            return None

    def last_request_at(self) -> float | None:
        row = self.conn.execute("SELECT MAX(second) FROM buckets").fetchone()
        return float(row[0]) if row and row[0] is not None else None
