"""When to look at an import: the time imports take here, learned by every worker together,
and the one store listing that settles overdue imports.

**The first look.** An import's operation is asked for the first time at the moment the import
is expected to be done, so that most files cost exactly one ``operations.get``. The
expectation (``expected_s``) is a running estimate of the 90th percentile of "import started
→ a first look finds it done", kept in the catalogue's ``meta`` so every worker process
shares it and it survives restarts. Each first look moves it (``learn``): found done → down by
a small step, not done → up by a step nine times larger. That is a stochastic quantile
tracker (Robbins-Monro): it settles where nine first looks in ten find the import done,
whatever the service's speed, the scheduler's lag or the machine's load, and it follows them
when they change. Steps are multiplicative (in log space), so one rule fits the emulator's
0.3 s and the field's 5 s alike; the estimate stays within [``MIN_S``, ``poll_max_delay_s``]
and starts from ``poll_first_delay_s``.

Why not a percentile of the rows' own ``indexed_at - import_started_at``: those are the times
of the *looks*, never shorter than the expectation that planned them (plus the scheduler's
lag), so a percentile of them only ever grows. Whether the first look found the import done
is the one unbiased signal, and a tracker needs nothing but it.

Looks that say nothing about the current expectation teach nothing: a "done" seen by a first
look that ran late (a busy queue: more than ``LATE_S`` after the expectation). A "not done"
seen after waiting ``w`` raises the expectation to at least one step beyond ``w`` (``w``
counted at most one step beyond the expectation, so one very late look cannot throw it far):
a burst of first looks planned together, at the start of a run, all with the same ``w``,
raise it once, not once each (that multiplied it by 1.25^14, 20 times too long, at field
latencies), and a look planned with an older, shorter expectation raises it only if its
``w`` is within a step of the current one. (It used to teach nothing whenever ``w`` was
below the current expectation; with looks running late by the scheduler's tick while "done"
still taught, that dropped part of the "not done" evidence and the tracker settled where
only eight looks in ten found the import done: 1.2 looks a file at field latencies.)

**Overdue imports.** Some operations never report done although their document is ACTIVE
(field lessons). An import still not done ``overdue_after_s`` after it started is overdue;
rather than each such file waiting out ``poll_timeout_s`` alone, the first poll that meets an
overdue row claims the sweep (``claim_sweep``: at most one per ``SWEEP_EVERY_S`` across all
workers) and one listing of the store settles every overdue row at once
(``objlib.pipeline``).
"""

from __future__ import annotations

import math

from objlib.catalog import Catalog
from objlib.settings import Settings

QUANTILE = 0.9       # the share of first looks meant to find the import done
STEP = 0.25          # log-space step: not done x e^(0.25*0.9) = 1.25, done x e^(-0.025)
MIN_S = 0.05         # never expect an import faster than this
LATE_S = 2.0         # a first look this much after its expectation teaches nothing if done
OVERDUE_FACTOR = 10.0  # an import this many expectations old is overdue ...
OVERDUE_MIN_S = 60.0   # ... and never before this
SWEEP_EVERY_S = 180.0  # at most one store listing for overdue imports per this long

EXPECTED_KEY = "import_expected_s"
SWEEP_KEY = "overdue_swept_at"


def expected_s(catalog: Catalog, settings: Settings) -> float:
    """Seconds from an import's start to the moment it is expected to be done."""
    value = catalog.get_meta(EXPECTED_KEY)
    return _bounded(float(value) if value else settings.poll_first_delay_s, settings)


def learn(catalog: Catalog, settings: Settings, *, done: bool, waited_s: float) -> float | None:
    """A first look found the import ``done`` (or not) ``waited_s`` after it started: move the
    shared expectation one step (one short transaction, so concurrent looks all count).
    Returns the new expectation, None when the look taught nothing (see the module's
    docstring)."""
    if _moved(expected_s(catalog, settings), settings, done, waited_s) is None:
        return None  # read first: a look that moves nothing (a done look at MIN_S, a late
                     # one) takes no write lock
    with catalog.write() as conn:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (EXPECTED_KEY,)).fetchone()
        old = _bounded(float(row[0]) if row else settings.poll_first_delay_s, settings)
        new = _moved(old, settings, done, waited_s)
        if new is None:
            return None
        conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) "
                     "DO UPDATE SET value=excluded.value", (EXPECTED_KEY, repr(new)))
        return new


def _moved(old: float, settings: Settings, done: bool, waited_s: float) -> float | None:
    """The expectation after one first look, None when the look does not move it."""
    if done:
        if waited_s > old + LATE_S:
            return None
        new = _bounded(old * math.exp(-STEP * (1.0 - QUANTILE)), settings)
        return new if new != old else None
    up = math.exp(STEP * QUANTILE)
    new = _bounded(max(old, min(waited_s, old * up) * up), settings)
    return new if new > old else None


def overdue_after_s(expected: float) -> float:
    """An import running this long is overdue."""
    return max(OVERDUE_MIN_S, OVERDUE_FACTOR * expected)


def claim_sweep(catalog: Catalog, now: float, every_s: float = SWEEP_EVERY_S) -> bool:
    """True for the one caller that may list the store for overdue imports now: none did
    within ``every_s`` (a conditional write, so two workers never both win)."""
    with catalog.write() as conn:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (SWEEP_KEY,)).fetchone()
        if row and now - float(row[0]) < every_s:
            return False
        conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) "
                     "DO UPDATE SET value=excluded.value", (SWEEP_KEY, repr(now)))
        return True


def _bounded(value: float, settings: Settings) -> float:
    return min(max(value, MIN_S), max(MIN_S, settings.poll_max_delay_s))
