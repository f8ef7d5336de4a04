"""The one in-process retry policy (``objlib.retry``, on stamina): what is asked again, how
long it waits (the service's Retry-After, else backoff, with jitter), and that a command's
store calls go through the shared throttle."""

from __future__ import annotations

import random
import time

import pytest
import stamina

from objlib import retry
from objlib.catalog import open_catalog
from objlib.enqueue import ensure_store
from objlib.scan import scan_library
from objlib.throttle import Throttle
from tests.support.disk import write_library


class Busy(Exception):
    def __init__(self, retry_after_s: float | None = None):
        super().__init__("busy")
        self.retry_after_s = retry_after_s


def retryable(exc: Exception) -> bool:
    return isinstance(exc, Busy)


class Flaky:
    """Fails ``failures`` times with ``error``, then answers; counts the calls."""

    def __init__(self, failures: int, error: Exception):
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "answer"


# ---------------------------------------------------------------------------- the decision


def test_the_hook_declines_what_the_caller_does_not_retry():
    assert retry.wait_hook(retryable)(ValueError("bad request")) is False


def test_the_hook_takes_the_backoff_when_the_service_names_no_delay():
    assert retry.wait_hook(retryable)(Busy()) is True


def test_the_hook_waits_the_services_delay_plus_jitter():
    rng = random.Random(7)
    waits = [retry.wait_hook(retryable, rng)(Busy(retry_after_s=3.0)) for _ in range(50)]
    assert all(3.0 <= w <= 3.0 + retry.JITTER_S for w in waits)
    assert len(set(waits)) == 50  # callers told the same delay do not return together


def test_the_durable_backoff_grows_is_capped_and_jittered():
    rng = random.Random(1)
    assert 0.5 <= retry.backoff_s(1, 1.0, 120.0, rng) <= 1.5
    assert 4.0 <= retry.backoff_s(4, 1.0, 120.0, rng) <= 12.0
    assert 60.0 <= retry.backoff_s(30, 1.0, 120.0, rng) <= 180.0


# ---------------------------------------------------------------------------- the calls


def test_a_retryable_error_is_asked_again_until_it_answers():
    flaky = Flaky(2, Busy())
    assert retry.call(flaky, retry_on=retryable, attempts=5) == "answer"
    assert flaky.calls == 3


def test_an_error_not_retried_is_raised_at_once():
    flaky = Flaky(1, ValueError("bad request"))
    with pytest.raises(ValueError):
        retry.call(flaky, retry_on=retryable, attempts=5)
    assert flaky.calls == 1


def test_the_last_error_is_raised_once_the_attempts_are_spent():
    flaky = Flaky(10, Busy())
    with pytest.raises(Busy):
        retry.call(flaky, retry_on=retryable, attempts=4)
    assert flaky.calls == 4


def test_the_waits_are_real_outside_the_tests_mode():
    # (the suite turns stamina's waits off; here they are on, with small values)
    with stamina.set_testing(False):
        started = time.monotonic()
        retry.call(Flaky(1, Busy(retry_after_s=0.2)), retry_on=retryable, attempts=2)
        after_s = time.monotonic() - started
        started = time.monotonic()
        retry.call(Flaky(2, Busy()), retry_on=retryable, attempts=3, wait_initial_s=0.05)
        backoff_s = time.monotonic() - started
    assert 0.2 <= after_s < 0.2 + retry.JITTER_S + 1.0    # Retry-After honoured, jittered
    assert 0.05 + 0.1 <= backoff_s < 0.15 + 2 * retry.JITTER_S + 1.0  # 0.05 then 0.1, jittered


# ---------------------------------------------------------------------------- the store


def test_ensure_store_asks_through_the_shared_throttle(settings, library, emulator):
    write_library(library, 1)
    scan_library(settings, library)
    catalog = open_catalog(settings)
    store = ensure_store(settings, catalog)
    catalog.close()
    throttle = Throttle.from_settings(settings)
    try:
        sent = sum(emulator.stats()["requests"].values())
        assert store and sent >= 2  # a listing of stores, a create, a first page of documents
        assert throttle.state().requests_last_60s == sent  # every one passed the throttle
    finally:
        throttle.close()
