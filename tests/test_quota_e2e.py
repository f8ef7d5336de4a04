"""A quota the service enforces and objlib was not told about, with a real consumer and the
emulator's ``rpm``: the first burst of 429s sets a shared pace instead of opening the breaker.
(The pace converging over minutes is shown with a fake clock in test_throttle.py and measured
against the emulator in ``scripts/bench.py``'s rate section: a quota is a sliding minute, so
the steady state cannot be shown in seconds.)"""

from __future__ import annotations

import time

import pytest

from objlib import status
from objlib.enqueue import enqueue
from objlib.scan import scan_library
from tests.support.catalogue import file_states
from tests.support.disk import write_library
from tests.support.waits import wait_for

pytestmark = pytest.mark.slow

QUOTA_PER_MINUTE = 60


def test_a_quota_nobody_announced_sets_a_pace_instead_of_opening_the_breaker(
        settings, library, emulator, consumers):
    # Given a service that accepts 60 calls a minute, and no rate_limit_per_minute set
    emulator.configure(rpm=QUOTA_PER_MINUTE)
    write_library(library, 60)
    scan_library(settings, library)
    enqueue(settings)
    consumer = consumers(workers=7)

    # When the workers' first burst meets the quota
    def throttle():
        return status.throttle_state(settings, time.time())[0]

    pace = wait_for(lambda: throttle().adaptive_per_minute, 20.0, what="a pace set by 429s")
    burst, refused = throttle().requests_last_60s, emulator.stats()["faults"]["rpm_quota"]
    # and the workers go on at that pace for a few more requests (which meet 429s too: for a
    # minute the quota still holds the burst)
    wait_for(lambda: throttle().requests_last_60s >= burst + 3, 30.0,
             what="requests sent at the pace")

    # Then the pace is close to what the service accepted, and neither the burst's 429s nor
    # those met at the pace opened the breaker (they used to: 5 and 25 % in 30 s) or failed
    # a file
    stats = emulator.stats()
    accepted = stats["total_requests"] - stats["faults"].get("rpm_quota", 0)
    assert 0.5 * QUOTA_PER_MINUTE <= pace <= accepted
    t = throttle()
    assert (t.breaker, t.breaker_trips) == ("closed", 0)
    assert "circuit breaker open" not in consumer.log()
    assert file_states(settings).get("failed", 0) == 0
    assert stats["faults"]["rpm_quota"] > refused
