"""The one retry policy for calls made in-process (a command, a listing's page): when a call
may be asked again, and how long to wait first. Built on ``stamina`` (which wraps
``tenacity``): exponential backoff with jitter, capped, a bounded number of attempts.

What is retried is the caller's to say (``retry_on``); how long to wait is this module's:

- an error that carries the service's own delay (``retry_after_s``: RetryInfo or
  Retry-After) is asked again after that delay, plus up to ``JITTER_S`` more, so callers
  told the same delay do not all come back in the same instant;
- any other retryable error waits ``wait_initial_s * 2**(attempt-1)`` plus up to
  ``JITTER_S``, capped at ``wait_max_s``.

The durable path (a task's step) does not block a worker: its retries are re-schedules
counted in the catalogue (``attempts``, ``rate_limited``, pauses; see ``pipeline``), with
``backoff_s`` below as their delay.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

import stamina

T = TypeVar("T")
JITTER_S = 1.0  # added to every wait, uniformly drawn


def wait_hook(retry_on: Callable[[Exception], bool], rng: random.Random | None = None
              ) -> Callable[[Exception], bool | float]:
    """stamina's backoff hook: False (do not retry), True (the exponential backoff), or the
    service's own delay plus jitter."""
    draw = (rng or random).uniform

    def hook(exc: Exception) -> bool | float:
        if not retry_on(exc):
            return False
        after = getattr(exc, "retry_after_s", None)
        return after + draw(0, JITTER_S) if after else True

    return hook


def call(fn: Callable[[], T], *, retry_on: Callable[[Exception], bool], attempts: int,
         wait_initial_s: float = 1.0, wait_max_s: float = 120.0) -> T:
    """``fn()``, asked again up to ``attempts`` times in all while it raises an exception
    ``retry_on`` accepts; the last one is raised."""
    for attempt in stamina.retry_context(on=wait_hook(retry_on), attempts=attempts,
                                         timeout=None, wait_initial=wait_initial_s,
                                         wait_max=wait_max_s, wait_jitter=JITTER_S,
                                         wait_exp_base=2):
        with attempt:
            return fn()
    raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """A re-scheduled step's delay: ``base * 2**(attempt-1)``, capped, times 0.5..1.5."""
    return min(max_s, base_s * 2 ** max(0, attempt - 1)) * (0.5 + rng.random())
