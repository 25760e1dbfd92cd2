"""Time as an input: the daemon reads one injected clock and waits on it.

`now()` is wall-clock seconds since the epoch (heartbeats are compared across processes);
`sleep_until(deadline)` waits until `now()` reaches the deadline. Tests pass a manual clock
that they move by hand, so nothing in the daemon waits on real time in a unit test.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...


class Waitable(Protocol):
    """An event: `anyio.Event` or `loop.Wakeup`."""

    def is_set(self) -> bool: ...

    async def wait(self) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep(max(0.0, deadline - time.time()))


async def wait_any(clock: Clock, deadline: float, *events: Waitable) -> bool:
    """Wait until one of the events is set or the clock reaches `deadline`, whichever is first.

    Returns whether an event was set (False: the deadline came first).
    """
    if any(event.is_set() for event in events):
        return True
    async with anyio.create_task_group() as tg:
        for event in events:
            tg.start_soon(_cancel_when_set, event, tg.cancel_scope)
        await clock.sleep_until(deadline)
        tg.cancel_scope.cancel()
    return any(event.is_set() for event in events)


async def _cancel_when_set(event: Waitable, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
