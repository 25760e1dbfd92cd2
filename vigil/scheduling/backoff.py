"""Backoff delays: capped exponential growth with jitter, from an injected random source.

Pure functions of their arguments: the caller passes `rand` (uniform in [0, 1)), so tests
pass a constant and the daemon passes `random.random`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from vigil.definitions import step


def exponential_backoff(
    attempt: int,
    *,
    base: float,
    factor: float,
    rand: Callable[[], float],
    cap: float | None = None,
    jitter: float = 0.0,
) -> float:
    """The wait after failed attempt `attempt` (1-based): `base * factor**(attempt-1)`.

    The raw delay is limited to `cap`, then moved by up to `jitter` times itself, up or
    down: `rand() == 0.5` leaves it unchanged, 0 takes the most off, 1 adds the most.
    Never negative.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1 (got {attempt})")
    raw = _grow(base, factor, attempt - 1)
    if cap is not None:
        raw = min(raw, cap)
    if math.isinf(raw):
        return raw
    spread = raw * jitter * (2.0 * rand() - 1.0)
    return max(0.0, raw + spread)


def retry_delay(policy: step.RetryPolicy, attempt: int, rand: Callable[[], float]) -> float:
    """The wait before retrying a step whose attempt number `attempt` just failed."""
    return exponential_backoff(
        attempt, base=policy.delay, factor=policy.backoff, jitter=policy.jitter, rand=rand
    )


def _grow(base: float, factor: float, exponent: int) -> float:
    if base == 0.0:
        return 0.0
    try:
        return base * factor**exponent
    except OverflowError:
        return math.inf
