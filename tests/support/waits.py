"""Waiting on a condition, never on the clock alone."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout_s: float = 60.0, interval_s: float = 0.1,
             what: str = "condition", on_tick: Callable[[], object] | None = None) -> T:
    """Call ``predicate`` every ``interval_s`` until it returns something truthy, and return
    that; ``TimeoutError`` (with the last value) once ``timeout_s`` has passed. ``on_tick``
    runs between two looks (a progress line, say)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what} "
                               f"(last: {value!r})")
        if on_tick is not None:
            on_tick()
        time.sleep(interval_s)


def wait_while_progressing(predicate: Callable[[], T], progress: Callable[[], object],
                           stall_s: float, interval_s: float = 0.2,
                           what: str = "condition") -> T:
    """``wait_for`` on a loaded machine: wait for ``predicate`` as long as ``progress()``
    keeps changing (the work goes on, only slower); ``TimeoutError`` once it has stayed the
    same for ``stall_s``. A bound on a stall, not on the whole wait."""
    last, since = progress(), time.monotonic()
    while True:
        value = predicate()
        if value:
            return value
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > stall_s:
            raise TimeoutError(f"no progress for {stall_s:g} s waiting for {what} "
                               f"(last: {value!r}; progress: {now!r})")
        time.sleep(interval_s)
