"""The shared throttle: a rate limiter that never lets a 60-second window exceed the limit,
and a 429 circuit breaker that opens, defers and recovers by itself. Time is a parameter."""

from __future__ import annotations

import random

import pytest

from objlib.settings import Settings
from objlib.throttle import Deferred, Throttle


def make(home, **overrides) -> Throttle:
    return Throttle(home / "throttle.db", Settings.load(home, **overrides), random.Random(1))


def test_unlimited_lets_everything_through(home):
    t = make(home)
    for i in range(100):
        t.acquire("task", now=1000.0)


def test_requests_are_spaced_and_no_60s_window_exceeds_the_limit(home):
    # Given a limit of 60/min and many callers that come back exactly when told
    t = make(home, rate_limit_per_minute=60)
    granted: list[float] = []
    due = {f"task-{i}": 1000.0 for i in range(50)}
    now = 1000.0
    while now < 1000.0 + 300:
        for holder, at in sorted(due.items(), key=lambda kv: kv[1]):
            if at > now:
                continue
            try:
                t.acquire(holder, now=now)
                granted.append(now)
                due[holder] = now  # asks again at once for its next request
            except Deferred as d:
                due[holder] = now + d.delay_s
        now += 0.05
    # Then the busiest 60-second window holds at most the limit, and the rate is sustained
    busiest = max(sum(1 for g in granted if s <= g < s + 60) for s in granted)
    assert busiest <= 60
    assert len(granted) / 5 >= 0.9 * 60


def test_a_reserved_slot_is_honoured_when_the_holder_returns(home):
    t = make(home, rate_limit_per_minute=60)
    t.acquire("a", now=1000.0)
    with pytest.raises(Deferred) as first:
        t.acquire("b", now=1000.0)
    delay = first.value.delay_s
    assert 0.9 < delay < 1.2
    # another caller cannot take b's slot
    with pytest.raises(Deferred) as other:
        t.acquire("c", now=1000.0 + delay)
    assert other.value.delay_s > 0.9
    # b comes back on time and goes through without waiting again
    t.acquire("b", now=1000.0 + delay)


def test_a_cost_of_several_requests_takes_several_slots(home):
    t = make(home, rate_limit_per_minute=60)
    t.acquire("upload", cost=3, now=1000.0)
    with pytest.raises(Deferred) as d:
        t.acquire("next", now=1000.0)
    assert d.value.delay_s == pytest.approx(3 * 60 / (60 * 0.95), rel=0.01)


def test_breaker_opens_on_a_high_outage_rate_defers_work_and_recovers(home):
    t = make(home, breaker_min_429=5, breaker_ratio=0.25, breaker_cooldown_s=10.0)
    now = 1000.0
    for _ in range(10):
        t.record(200, now=now)
    for status in (503, 502, None, 504, 503):
        t.record(status, now=now)
    assert t.state(now=now).breaker == "open"
    with pytest.raises(Deferred) as d:
        t.acquire("any", now=now + 1)
    assert d.value.delay_s >= 9.0
    assert "breaker" in d.value.reason
    # after the cooldown: half-open, traffic flows, and the first success closes it
    assert t.state(now=now + 11).breaker == "half-open"
    t.acquire("any", now=now + 11)
    t.record(200, now=now + 11)
    assert t.state(now=now + 11).breaker == "closed"


def test_a_few_429s_among_many_successes_do_not_open_the_breaker(home):
    t = make(home, breaker_min_429=5, breaker_ratio=0.25)
    for i in range(100):
        t.record(429 if i % 10 == 0 else 200, now=1000.0 + i * 0.1)
    assert t.state(now=1010.0).breaker == "closed"


def test_reopening_soon_after_closing_doubles_the_cooldown(home):
    t = make(home, breaker_min_429=2, breaker_ratio=0.5, breaker_cooldown_s=10.0)
    t.record(503, now=1000.0)
    t.record(503, now=1000.0)
    assert t.state(now=1000.0).breaker_open_for_s == pytest.approx(10.0)
    t.record(200, now=1011.0)  # closes
    t.record(503, now=1012.0)
    t.record(503, now=1012.0)
    assert t.state(now=1012.0).breaker_open_for_s == pytest.approx(20.0)


def test_two_throttles_on_one_file_share_the_limit(home):
    # Given two worker processes' throttles on the same file
    a, b = make(home, rate_limit_per_minute=60), make(home, rate_limit_per_minute=60)
    a.acquire("x", now=1000.0)
    # Then the second sees the first's slot as taken
    with pytest.raises(Deferred):
        b.acquire("y", now=1000.0)


def test_work_that_finishes_a_file_may_book_further_ahead_than_new_work(home):
    t = make(home, rate_limit_per_minute=60)
    for i in range(11):  # slots taken for the next ~11.6 s
        try:
            t.acquire(f"new-{i}", now=1000.0)
        except Deferred:
            pass
    with pytest.raises(Deferred) as new:
        t.acquire("another-new-upload", now=1000.0)
    assert "slots taken" in new.value.reason  # beyond the 10 s horizon: no slot held
    with pytest.raises(Deferred) as poll:
        t.acquire("a-poll", now=1000.0, ahead_s=60.0)
    assert "reserved" in poll.value.reason  # a continuation books its slot


def test_a_holder_back_for_more_than_it_booked_goes_at_once_if_nobody_booked_after_it(home):
    t = make(home, rate_limit_per_minute=60)
    t.acquire("first", now=1000.0)
    with pytest.raises(Deferred) as booked:
        t.acquire("holder", cost=1, now=1000.0)
    back = 1000.0 + booked.value.delay_s
    t.acquire("holder", cost=3, now=back)  # as if it had booked three: the extra 2 are charged
    with pytest.raises(Deferred) as next_one:
        t.acquire("someone-else", now=back)
    assert next_one.value.delay_s == pytest.approx(3 * 60 / (60 * 0.95), rel=0.01)


def test_a_holder_back_for_more_than_it_booked_waits_for_slots_others_hold(home):
    # Given a holder with one slot booked, and another caller booked right behind it
    t = make(home, rate_limit_per_minute=60)
    t.acquire("first", now=1000.0)
    with pytest.raises(Deferred) as booked:
        t.acquire("holder", cost=1, now=1000.0)
    with pytest.raises(Deferred):
        t.acquire("behind", cost=1, now=1000.0)
    back = 1000.0 + booked.value.delay_s
    # When it comes back needing three requests
    with pytest.raises(Deferred) as again:
        t.acquire("holder", cost=3, now=back)
    # Then it does not send the extra two before their slots: it books all three like a new
    # request, after the one behind it, and goes through when that slot comes
    assert again.value.delay_s == pytest.approx(2 * 60 / (60 * 0.95), rel=0.01)
    t.acquire("holder", cost=3, now=back + again.value.delay_s)


def test_a_holder_back_long_after_its_slot_has_lost_it(home):
    # requests count by when they are sent: a late holder's request is charged a new slot,
    # it does not spend the old one (which would bunch it up with punctual requests)
    t = make(home, rate_limit_per_minute=60)
    t.acquire("first", now=1000.0)
    with pytest.raises(Deferred) as booked:
        t.acquire("late", now=1000.0)
    now = 1000.0 + booked.value.delay_s + 5.0
    t.acquire("late", now=now)
    with pytest.raises(Deferred) as after:
        t.acquire("next", now=now)
    assert after.value.delay_s == pytest.approx(60 / (60 * 0.95), rel=0.01)


def test_holders_back_for_more_than_they_booked_never_overfill_a_window(home):
    # Given a limit of 60/min, continuations booking up to 60 s ahead, and holders that
    # come back needing one request more than they booked (issue 18's probe: 61 in a window)
    t = make(home, rate_limit_per_minute=60)
    rng = random.Random(7)
    sent: list[float] = []
    due = {f"task-{i}": (1000.0, 1) for i in range(20)}
    now = 1000.0
    while now < 1000.0 + 400:
        for holder, (at, cost) in sorted(due.items(), key=lambda kv: kv[1][0]):
            if at > now:
                continue
            try:
                t.acquire(holder, cost=cost, now=now, ahead_s=60.0)
                sent.extend([now] * cost)
                due[holder] = (now + rng.uniform(0, 3), rng.randint(1, 3))
            except Deferred as d:
                grows = "reserved" in d.reason and rng.random() < 0.2
                due[holder] = (now + d.delay_s, cost + 1 if grows else cost)
        now += 0.05
    # Then no 60-second window holds more than the limit
    busiest = max(sum(1 for g in sent if s <= g < s + 60) for s in sent)
    assert busiest <= 60
    assert len(sent) / 400 * 60 >= 0.75 * 60  # and the rate is not bought by starving it
