"""The one retry policy: exponential backoff with jitter, and a server's Retry-After."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aftersale.core.backoff import RETRY_AFTER_CAP, Backoff, capped_wait, retry_after_seconds

MINUTE = timedelta(minutes=1)


class Fixed:
    """Jitter pinned to one end of its range: ``low`` gives 1, otherwise 1.5."""

    def __init__(self, low: bool):
        self.low = low

    def uniform(self, a: float, b: float, /) -> float:
        return a if self.low else b


@pytest.mark.parametrize(("attempts", "shortest", "longest"), [
    (0, MINUTE, 1.5 * MINUTE),  # no attempt counted yet: as after the first
    (1, MINUTE, 1.5 * MINUTE),
    (2, 2 * MINUTE, 3 * MINUTE),
    (4, 8 * MINUTE, 12 * MINUTE),
    (7, 64 * MINUTE, 96 * MINUTE),
])
def test_the_wait_doubles_with_each_attempt_and_jitter_adds_up_to_half(
        attempts: int, shortest: timedelta, longest: timedelta) -> None:
    policy = Backoff(MINUTE)
    assert policy.delay(attempts, rng=Fixed(low=True)) == shortest
    assert policy.delay(attempts, rng=Fixed(low=False)) == longest


def test_the_wait_stops_doubling_so_it_stays_a_valid_timedelta() -> None:
    policy = Backoff(MINUTE)
    assert policy.delay(10_000, rng=Fixed(low=True)) == 4096 * MINUTE


def test_the_cap_bounds_the_wait_and_a_longer_retry_after() -> None:
    policy = Backoff(MINUTE, cap=timedelta(hours=1))
    assert policy.delay(6, rng=Fixed(low=False)) == timedelta(minutes=48)
    assert policy.delay(7, rng=Fixed(low=True)) == timedelta(hours=1)
    assert policy.delay(1, retry_after=7200, rng=Fixed(low=True)) == timedelta(hours=1)


def test_a_retry_after_longer_than_the_backoff_wins_and_a_shorter_one_does_not() -> None:
    policy = Backoff(MINUTE)
    assert policy.delay(1, retry_after=600, rng=Fixed(low=False)) == timedelta(seconds=600)
    assert policy.delay(1, retry_after=30, rng=Fixed(low=True)) == MINUTE
    assert policy.delay(1, retry_after=None, rng=Fixed(low=True)) == MINUTE


@given(st.integers(min_value=1, max_value=40), st.integers(min_value=0, max_value=2**32))
def test_random_jitter_stays_within_its_range(attempts: int, seed: int) -> None:
    low = Backoff(MINUTE).delay(attempts, rng=Fixed(low=True))
    assert low <= Backoff(MINUTE).delay(attempts, rng=random.Random(seed)) <= low * 1.5


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), ("   ", None),
    ("2", 2.0), (" 120 ", 120.0), ("1.5", 1.5),
    ("-3", 0.0), ("-inf", 0.0),  # already due
    ("soon", None), ("1e", None), ("nan", None), ("Thu, 32 Jan 1970 00:00:00 GMT", None),
    ("86401", RETRY_AFTER_CAP), ("1e400", RETRY_AFTER_CAP), ("inf", RETRY_AFTER_CAP),
    ("Thu, 01 Jan 1970 00:01:40 GMT", 40.0),  # an HTTP date 100 s after the epoch, "now" at 60
    ("Thu, 01 Jan 1970 00:00:10 GMT", 0.0),  # a date already past
    ("Thu, 01 Jan 1970 00:01:40 -0000", 40.0),  # "-0000" is UTC too
    ("Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_CAP),
])
def test_retry_after_is_delay_seconds_or_an_http_date_within_bounds(
        value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, now=60.0) == expected


def test_retry_after_dates_count_from_the_current_time_by_default() -> None:
    assert retry_after_seconds("Thu, 01 Jan 1970 00:01:40 GMT") == 0.0
    assert retry_after_seconds("Fri, 31 Dec 9999 23:59:59 GMT") == RETRY_AFTER_CAP


def test_the_cap_is_a_day_so_real_rate_limits_are_honoured_whole() -> None:
    assert RETRY_AFTER_CAP == 86400.0
    assert capped_wait(3600.0) == 3600.0
    assert capped_wait(float("nan")) is None
