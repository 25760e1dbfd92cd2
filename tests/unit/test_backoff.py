"""Backoff delays: exponential growth, a cap, and jitter from an injected random source."""

from __future__ import annotations

import math

import pytest

from vigil.definitions.step import RetryPolicy
from vigil.scheduling import backoff


def middle() -> float:
    return 0.5


def test_delay_grows_by_the_backoff_factor() -> None:
    policy = RetryPolicy(max_retries=5, delay=2.0, backoff=3.0)
    delays = [backoff.retry_delay(policy, attempt, middle) for attempt in (1, 2, 3)]
    assert delays == [2.0, 6.0, 18.0]


def test_default_policy_retries_at_once() -> None:
    assert backoff.retry_delay(RetryPolicy(), 1, middle) == 0.0


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 7.5), (0.5, 10.0), (0.75, 11.25)])
def test_jitter_moves_the_delay_by_up_to_its_fraction(rand: float, expected: float) -> None:
    policy = RetryPolicy(delay=10.0, jitter=0.25)
    assert backoff.retry_delay(policy, 1, lambda: rand) == pytest.approx(expected)


def test_jitter_never_makes_a_delay_negative() -> None:
    policy = RetryPolicy(delay=1.0, jitter=3.0)
    assert backoff.retry_delay(policy, 1, lambda: 0.0) == 0.0


def test_cap_limits_growth_before_jitter() -> None:
    delays = [
        backoff.exponential_backoff(n, base=1.0, factor=2.0, cap=5.0, rand=middle)
        for n in range(1, 6)
    ]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittered = backoff.exponential_backoff(
        10, base=1.0, factor=2.0, cap=5.0, jitter=0.1, rand=lambda: 1.0
    )
    assert jittered == pytest.approx(5.5)


def test_huge_attempts_do_not_overflow() -> None:
    capped = backoff.exponential_backoff(100_000, base=1.0, factor=2.0, cap=60.0, rand=middle)
    assert capped == 60.0
    uncapped = backoff.exponential_backoff(100_000, base=1.0, factor=2.0, rand=middle)
    assert math.isinf(uncapped)


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="attempt counts from 1"):
        backoff.exponential_backoff(0, base=1.0, factor=2.0, rand=middle)
