"""The shared throttle: a rate limiter that never lets a 60-second window exceed the limit,
a pace adapted to 429s from a quota nobody announced (driven against a simulated quota), and
a circuit breaker for outages that opens, defers and recovers by itself. Time is a
parameter."""

from __future__ import annotations

import bisect
import collections
import heapq
import random

import pytest

from objlib.settings import Settings
from objlib.throttle import Adaptive, Deferred, Throttle, Window, adapt, judged_since


def make(home, **overrides) -> Throttle:
    return Throttle(home / "throttle.db", Settings.load(home, **overrides), random.Random(1))


def test_unlimited_lets_everything_through(home):
    t = make(home)
    for _ in range(100):
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


def test_a_step_of_several_requests_waits_for_room_in_the_window(home):
    # Given a limit of 10/min and one request sent (issue 18's property probe: a step's
    # requests all go at its first slot, so at a small limit a window held 11)
    t = make(home, rate_limit_per_minute=10)
    t.acquire("first", now=1000.0)
    # When a step of ten requests finds its slot free 7 s later
    with pytest.raises(Deferred) as full:
        t.acquire("step", cost=10, now=1007.0)
    # Then it waits until the first request has left the window, and goes then
    assert "window full" in full.value.reason
    assert full.value.delay_s == pytest.approx(53.0, abs=0.01)
    t.acquire("step", cost=10, now=1007.0 + full.value.delay_s)


def test_a_step_needing_more_than_the_limit_goes_alone(home):
    # Given a limit of 2/min, one request sent, and a step that needs three
    t = make(home, rate_limit_per_minute=2)
    t.acquire("first", now=1000.0)
    with pytest.raises(Deferred) as full:
        t.acquire("big", cost=3, now=1032.0)
    # Then it goes only into an empty window (never, it cannot fit the limit) ...
    assert full.value.delay_s == pytest.approx(28.0, abs=0.01)
    t.acquire("big", cost=3, now=1060.0)
    # ... and nothing shares the window with it
    with pytest.raises(Deferred) as after:
        t.acquire("next", now=1061.0)
    assert after.value.delay_s >= 59.0


# ---------------------------------------------------------------------------- under a quota


class Quota:
    """The service's side, a pure model of an rpm quota: a request is answered 429 when
    ``per_minute`` requests were already accepted in the last 60 s (with the seconds until
    one of them leaves the window, as RetryInfo); else accepted."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.accepted: collections.deque[float] = collections.deque()

    def answer(self, now: float) -> tuple[int, float]:
        while self.accepted and self.accepted[0] <= now - 60:
            self.accepted.popleft()
        if len(self.accepted) >= self.per_minute:
            return 429, self.accepted[0] + 60 - now
        self.accepted.append(now)
        return 200, 0.0


def drive(t: Throttle, quota: Quota, start: float, until: float, workers: int = 20,
          answers: list | None = None) -> list[tuple[float, int]]:
    """Workers that always have a request to send, through the limiter, with a fake clock:
    each waits as Deferred says, honours the 429's retry delay (as the pipeline does with
    RetryInfo) and records every answer. Returns (time, status) of every request sent."""
    answers = [] if answers is None else answers
    due = [(start + i * 0.01, f"worker-{i}") for i in range(workers)]
    heapq.heapify(due)
    while due[0][0] < until:
        now, holder = heapq.heappop(due)
        try:
            t.acquire(holder, now=now)
        except Deferred as d:
            heapq.heappush(due, (now + d.delay_s, holder))
            continue
        status, retry_s = quota.answer(now)
        t.record(status, now=now)
        answers.append((now, status))
        heapq.heappush(due, (now + (retry_s if status == 429 else 0.3), holder))
    return answers


def per_minute(answers, since: float, until: float, status: int = 200) -> float:
    return sum(1 for at, s in answers if since <= at < until and s == status) / (until - since) * 60


def busiest_window(answers) -> int:
    times = [at for at, _ in answers]
    return max(bisect.bisect_left(times, at + 60) - i for i, at in enumerate(times))


T0 = 1000.0


def test_under_a_steady_quota_the_pace_converges_and_the_breaker_stays_closed(home):
    # Given a quota of 60/min objlib was not told about, and workers with more to send
    t = make(home)
    answers = drive(t, Quota(60), T0, T0 + 1800)
    # Then, from the second minute on, the service accepts >= 0.8 of its quota, few requests
    # meet a 429, and the breaker never opened (429s set the pace; they are not an outage)
    assert per_minute(answers, T0 + 120, T0 + 360) >= 0.8 * 60
    accepted = per_minute(answers, T0 + 300, T0 + 1800)
    rejected = per_minute(answers, T0 + 300, T0 + 1800, status=429)
    assert accepted >= 0.8 * 60
    assert rejected <= 0.05 * (accepted + rejected)
    assert t.state(now=T0 + 1800).breaker_trips == 0
    assert 0.7 * 60 <= t.state(now=T0 + 1800).adaptive_per_minute <= 1.3 * 60


def test_when_the_quota_rises_the_pace_follows_it(home):
    t = make(home)
    quota = Quota(60)
    answers = drive(t, quota, T0, T0 + 600)
    quota.per_minute = 120
    drive(t, quota, T0 + 600, T0 + 2400, answers=answers)
    assert per_minute(answers, T0 + 1800, T0 + 2400) >= 0.8 * 120


def test_the_adaptive_pace_never_exceeds_a_configured_ceiling(home):
    # Given rate_limit_per_minute = 90 and a quota of 60 that later goes away
    t = make(home, rate_limit_per_minute=90)
    quota = Quota(60)
    answers = drive(t, quota, T0, T0 + 600)
    assert t.state(now=T0 + 600).adaptive_per_minute < 80  # the quota set a lower pace
    quota.per_minute = 10_000
    drive(t, quota, T0 + 600, T0 + 2400, answers=answers)
    # Then the pace rose back to the configured limit, was dropped there, and no 60-s window
    # ever held more than the configured limit
    assert busiest_window(answers) <= 90
    assert t.state(now=T0 + 2400).adaptive_per_minute is None
    assert per_minute(answers, T0 + 1800, T0 + 2400) >= 0.9 * 90


def test_scattered_429s_do_not_set_a_pace(home):
    # Given a service with no quota that answers one request in 20 with a 429
    class Scattered(Quota):
        def answer(self, now):
            status, retry_s = super().answer(now)
            self.n = getattr(self, "n", 0) + 1
            return (429, 2.0) if self.n % 20 == 0 else (status, retry_s)

    t = make(home)
    answers = drive(t, Scattered(10_000), T0, T0 + 600, workers=2)
    assert len(answers) > 1000
    assert t.state(now=T0 + 600).adaptive_per_minute is None


# the AIMD step itself (pure)

def test_a_first_cut_takes_0_9_of_what_the_service_accepted():
    # (with no pace in force, what the service accepted before refusing is the quota measured)
    w = Window(requests=70, accepted=60, limited=10, recent_requests=20, recent_limited=10)
    assert adapt(Adaptive(), w, configured=0, now=T0) == Adaptive(54.0, T0, T0)
    assert adapt(Adaptive(), w, configured=50, now=T0).per_minute == pytest.approx(45.0)


def test_a_cut_takes_0_7_of_the_pace_in_force_and_never_goes_below_one_a_minute():
    w = Window(requests=40, accepted=30, limited=10, recent_requests=20, recent_limited=10)
    assert adapt(Adaptive(40.0, T0 - 200, T0 - 200), w, 0, T0).per_minute == pytest.approx(28.0)
    assert adapt(Adaptive(1.2, T0 - 200, T0 - 200), w, 0, T0).per_minute == 1.0


def test_a_window_without_pressure_raises_the_pace_by_10_percent_once_per_window():
    a = Adaptive(40.0, changed_at=T0 - 61, cut_at=T0 - 200)
    busy = Window(requests=38, accepted=38, limited=1, recent_requests=19, recent_limited=1)
    assert adapt(a, busy, 0, T0) == Adaptive(44.0, T0, T0 - 200)
    assert adapt(a, busy, 0, T0 - 2) == a  # not a whole window yet


def test_after_a_cut_its_first_window_is_not_judged():
    # the service still remembers the requests sent before the cut for a minute
    a = Adaptive(42.0, changed_at=T0, cut_at=T0)
    assert judged_since(a, T0 + 30) == T0 + 60
    assert judged_since(a, T0 + 100) == T0 + 60
    assert judged_since(a, T0 + 200) == T0 + 140
    quiet = Window(requests=40, accepted=40, limited=0, recent_requests=20, recent_limited=0)
    assert adapt(a, quiet, 0, T0 + 90) == a  # only 30 s judged so far: no raise
    assert adapt(a, quiet, 0, T0 + 120).per_minute == pytest.approx(46.2)


def test_the_pace_is_dropped_at_the_configured_limit_or_above_what_workers_ask_for():
    a = Adaptive(40.0, changed_at=T0 - 61, cut_at=T0 - 200)
    busy = Window(requests=38, accepted=38, limited=0, recent_requests=19, recent_limited=0)
    assert adapt(a, busy, configured=44, now=T0).per_minute is None
    idle = Window(requests=19, accepted=19, limited=0, recent_requests=9, recent_limited=0)
    assert adapt(a, idle, configured=0, now=T0).per_minute is None


def test_a_pace_in_force_spaces_requests_and_is_shared_through_the_file(home):
    # Given a burst of 429s recorded by one process
    a, b = make(home), make(home)
    for _ in range(60):
        a.record(200, now=T0)
    for _ in range(15):
        a.record(429, now=T0 + 1)
    assert a.state(now=T0 + 1).adaptive_per_minute == pytest.approx(54.0)
    # Then another process's limiter paces its requests by it
    b.acquire("x", now=T0 + 2)
    with pytest.raises(Deferred) as d:
        b.acquire("y", now=T0 + 2)
    assert d.value.delay_s == pytest.approx(60 / (54 * 0.95), rel=0.01)
    assert a.state(now=T0 + 2).breaker == "closed"


def test_a_flaky_service_does_not_grow_the_breaker_cooldown(home):
    # Given a service that answers one request in four with a 503 (it is there, only flaky)
    t = make(home, breaker_cooldown_s=10.0)
    longest_s, n = 0.0, 0
    now = T0
    while now < T0 + 600:
        try:
            t.acquire("worker", now=now)
            n += 1
            t.record(503 if n % 4 == 0 else 200, now=now)
        except Deferred:
            pass
        longest_s = max(longest_s, t.state(now=now).breaker_open_for_s)
        now += 0.25
    # Then each time it trips it pauses for the base cooldown, not 20, 40 ... 300 s
    assert longest_s <= 10.0


def test_a_few_429s_among_the_first_requests_of_a_run_set_no_pace():
    # 3 of the first 20 answers are 429s (a service refusing one request in 20 at random):
    # too few requests to tell scattered 429s from a quota
    w = Window(requests=20, accepted=17, limited=3, recent_requests=20, recent_limited=3)
    assert adapt(Adaptive(), w, configured=0, now=T0) == Adaptive()
    # a quota's first burst: every worker meets a 429 at once
    burst = Window(requests=40, accepted=30, limited=10, recent_requests=40, recent_limited=10)
    assert adapt(Adaptive(), burst, configured=0, now=T0).per_minute == pytest.approx(27.0)
    # a pace in force still answers 3 429s among 20 requests (its windows are small)
    cut = adapt(Adaptive(40.0, T0 - 200, T0 - 200), w, configured=0, now=T0)
    assert cut.per_minute == pytest.approx(28.0)
