"""Property-based probe of the rate limiter's promise: no 60-second window holds more
requests than the limit, under any interleaving of callers that ask, come back when told
(on time, early, late, or never), ask for more or fewer requests than they booked, and
share one ``throttle.db`` through several ``Throttle`` instances (as worker processes do).

Time is a parameter: hypothesis drives the clock. The profiles (``ci``, ``deep``) are in
``tests/conftest.py``.
"""

from __future__ import annotations

import bisect
import random
import shutil
import tempfile
from pathlib import Path

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from objlib.settings import Settings
from objlib.throttle import CONTINUE_AHEAD_S, RESERVE_AHEAD_S, Deferred, Throttle

HOLDERS = [f"task-{i}" for i in range(6)]
T0 = 10_000.0


def overfilled_windows(grants: list[tuple[float, int]], limit: int,
                       window_s: float = 60.0) -> list[tuple[float, list[int]]]:
    """Every half-open window [t, t + window_s) holding more than ``limit`` requests, as
    (start, the costs of the grants in it); a fullest window always starts at a grant."""
    grants = sorted(grants)
    times = [t for t, _ in grants]
    found = []
    for i, (t, _) in enumerate(grants):
        inside = [cost for _, cost in grants[i:bisect.bisect_left(times, t + window_s)]]
        if sum(inside) > limit:
            found.append((t, inside))
    return found


class RateLimiterMachine(RuleBasedStateMachine):
    """Callers of one shared limiter; every request a grant lets through is sent at once."""

    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="throttle-prop-"))
        self.now = T0
        self.grants: list[tuple[float, int]] = []  # (when, how many requests) per grant
        self.due: dict[str, tuple[float, int]] = {}  # holder -> (when told to return, cost)
        self.throttles: list[Throttle] = []

    @initialize(limit=st.sampled_from([1, 2, 3, 5, 10, 30, 60, 120]),
                processes=st.integers(1, 3))
    def start(self, limit: int, processes: int):
        self.limit = limit
        settings = Settings.load(self.dir, rate_limit_per_minute=limit)
        self.throttles = [Throttle(self.dir / "throttle.db", settings, random.Random(i))
                          for i in range(processes)]
        note(f"limit={limit}/min, {processes} Throttle instance(s) on one file")

    def _acquire(self, holder: str, cost: int, continuing: bool) -> None:
        throttle = self.throttles[HOLDERS.index(holder) % len(self.throttles)]
        ahead = CONTINUE_AHEAD_S if continuing else RESERVE_AHEAD_S
        try:
            throttle.acquire(holder, cost, now=self.now, ahead_s=ahead)
        except Deferred as d:
            assert d.delay_s >= 0
            self.due[holder] = (self.now + d.delay_s, cost)
            return
        self.due.pop(holder, None)
        self.grants.append((self.now, cost))

    @rule(holder=st.sampled_from(HOLDERS), cost=st.integers(1, 15), continuing=st.booleans())
    def ask(self, holder: str, cost: int, continuing: bool):
        """A caller asks now (a new task, or one back at a time of its own choosing)."""
        self._acquire(holder, cost, continuing)

    @precondition(lambda self: self.due)
    @rule(data=st.data(), lateness_s=st.sampled_from([-1.0, -0.04, 0.0, 0.0, 0.03, 0.5, 1.9,
                                                     2.0, 2.1, 30.0]),
          extra=st.integers(-2, 3), continuing=st.booleans())
    def come_back(self, data, lateness_s: float, extra: int, continuing: bool):
        """A deferred caller returns near the time it was told, needing the requests it
        booked, or a few more or fewer (the step learned more on the way)."""
        holder = data.draw(st.sampled_from(sorted(self.due)))
        at, cost = self.due[holder]
        self.now = max(self.now, at + lateness_s)
        self._acquire(holder, max(1, cost + extra), continuing)

    @rule(dt=st.floats(0.0, 90.0, allow_nan=False))
    def wait(self, dt: float):
        self.now += dt

    @invariant()
    def no_window_above_the_limit(self):
        """At most the limit in any 60 s; more only as one step that alone needs more than
        the limit (it goes into an empty window: nothing else may share it)."""
        for at, inside in overfilled_windows(self.grants, self.limit):
            assert len(inside) == 1, (f"{sum(inside)} requests {inside} in the 60 s from "
                                      f"t={at - T0:.2f} at a limit of {self.limit}")

    def teardown(self):
        for t in self.throttles:
            t.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestRateLimiter = RateLimiterMachine.TestCase
