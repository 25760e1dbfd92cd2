"""Waiting for another process to change the store: a condition checked until a deadline.

Workers are real processes writing to a real database; there is no in-process event to wait
on, so the condition is re-read at a short interval until it holds or the deadline passes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

INTERVAL = 0.02


async def eventually(
    check: Callable[[], Awaitable[bool]], deadline: float = 30.0, interval: float = INTERVAL
) -> None:
    """Return once `check()` is true; raise TimeoutError after `deadline` seconds. A check
    that is costly (many store reads, a large log) is better made at a longer `interval`."""
    with anyio.fail_after(deadline):
        while not await check():  # noqa: ASYNC110 - another process changes the state
            await anyio.sleep(interval)
