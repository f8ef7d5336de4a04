"""When imports are looked at: the expectation every worker shares (a quantile tracker in the
catalogue) and the one-per-interval claim of the overdue sweep. Real SQLite, no clock."""

from __future__ import annotations

import random
import statistics

import pytest

from objlib import pace
from objlib.catalog import open_catalog


@pytest.fixture
def catalog(settings):
    cat = open_catalog(settings)
    yield cat
    cat.close()


def test_the_expectation_starts_from_the_setting(catalog, settings):
    assert pace.expected_s(catalog, settings) == settings.poll_first_delay_s


def test_a_first_look_that_found_it_not_done_raises_it_more_than_a_done_one_lowers_it(
        catalog, settings):
    start = pace.expected_s(catalog, settings)
    up = pace.learn(catalog, settings, done=False, waited_s=start)
    assert up == pytest.approx(start * 1.25, rel=0.01)
    down = pace.learn(catalog, settings, done=True, waited_s=up)
    assert start < down < up
    assert pace.expected_s(catalog, settings) == down  # shared: read back from the catalogue


def test_it_settles_where_nine_first_looks_in_ten_find_the_import_done(catalog, settings):
    # Given imports taking 2-4 s (uniform) and first looks made at the expectation
    rng = random.Random(7)
    looks = []
    for _ in range(700):
        expected = pace.expected_s(catalog, settings)
        done = rng.uniform(2.0, 4.0) <= expected
        pace.learn(catalog, settings, done=done, waited_s=expected)
        looks.append((expected, done))
    # Then, once it has learned, it looks around the 90th percentile (3.8 s) and about nine
    # looks in ten find the import done
    settled = looks[300:]
    assert 3.4 < statistics.median(e for e, _ in settled) < 4.3
    assert 0.84 < sum(done for _, done in settled) / len(settled) < 0.96


def test_it_stays_within_its_bounds(catalog, settings):
    for _ in range(200):
        pace.learn(catalog, settings, done=True, waited_s=0.0)
    assert pace.expected_s(catalog, settings) == pace.MIN_S
    for _ in range(100):
        pace.learn(catalog, settings, done=False, waited_s=1e6)
    assert pace.expected_s(catalog, settings) == settings.poll_max_delay_s


def test_a_late_look_that_found_it_done_teaches_nothing(catalog, settings):
    start = pace.expected_s(catalog, settings)
    assert pace.learn(catalog, settings, done=True, waited_s=start + pace.LATE_S + 1) is None
    assert pace.expected_s(catalog, settings) == start


def test_looks_planned_together_raise_it_once_not_once_each(catalog, settings):
    # Given ten first looks planned at the same expectation, all finding the import not done
    start = pace.expected_s(catalog, settings)
    for _ in range(10):
        pace.learn(catalog, settings, done=False, waited_s=start + 0.1)
    # Then only the first raised it (one step beyond their wait): the others tested a wait
    # it had already moved past
    assert pace.expected_s(catalog, settings) == pytest.approx((start + 0.1) * 1.25, rel=0.01)


def test_a_stale_not_done_look_raises_it_only_when_its_wait_is_within_a_step(catalog, settings):
    start = pace.expected_s(catalog, settings)
    up = pace.learn(catalog, settings, done=False, waited_s=start)  # start * 1.25
    # a look planned with the old expectation, waiting a little past it: one step beyond it
    assert pace.learn(catalog, settings, done=False, waited_s=start * 1.1) == \
        pytest.approx(start * 1.1 * 1.25, rel=0.01)
    # one that waited far less than the current expectation teaches nothing
    assert pace.learn(catalog, settings, done=False, waited_s=up / 2) is None


def test_one_very_late_not_done_look_raises_it_by_two_steps_at_most(catalog, settings):
    start = pace.expected_s(catalog, settings)
    assert pace.learn(catalog, settings, done=False, waited_s=start * 100) == \
        pytest.approx(start * 1.25 * 1.25, rel=0.01)


def test_one_overdue_sweep_per_interval_across_catalogue_users(catalog, settings):
    other = open_catalog(settings)  # another worker process's connection
    try:
        assert pace.claim_sweep(catalog, 1000.0) is True
        assert pace.claim_sweep(other, 1000.5) is False
        assert pace.claim_sweep(catalog, 1000.0 + pace.SWEEP_EVERY_S - 1) is False
        assert pace.claim_sweep(other, 1000.0 + pace.SWEEP_EVERY_S) is True
    finally:
        other.close()


def test_overdue_means_well_past_the_expectation_and_never_before_a_minute():
    assert pace.overdue_after_s(0.3) == pace.OVERDUE_MIN_S
    assert pace.overdue_after_s(20.0) == 200.0
