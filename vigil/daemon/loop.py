"""A loop: one duty of the daemon, as a small component the supervisor runs.

A loop has a name, an interval (the most time between the starts of two iterations), an
iteration timeout (past it the loop is *hung*), and one `iterate` coroutine. Its `wake`
starts the next iteration at once instead of at the deadline (a store notice, a new run).
Loops get only what they use (store, clock, launcher, their own options) through their
constructor; nothing holds a reference back to the supervisor.

An iteration that raises is a crash: the runner records the error and restarts the loop
after a backoff. An iteration that runs past its timeout is not cancelled: it is reported
hung (status, liveness check), so a hang is seen rather than hidden.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import anyio

from vigil.config import settings
from vigil.daemon import vitals

# The statistics types live in `vitals` (read without anyio); these are the same types.
LoopError = vitals.LoopError
LoopState = vitals.LoopState
LoopStatistics = vitals.LoopStatistics


class Wakeup:
    """A wake-up that can be set any number of times; the runner clears it as it iterates."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()


class Loop(abc.ABC):
    """Subclass with a `name`, an `interval`, a `timeout` and an `iterate`."""

    name: str
    interval: float
    timeout: float

    def __init__(self) -> None:
        self.wake = Wakeup()

    @abc.abstractmethod
    async def iterate(self) -> None:
        """One iteration. Raise to report an error (the supervisor restarts the loop)."""

    async def reload(self, workspace: Sequence[settings.CodeLocationSettings]) -> None:  # noqa: B027
        """Take a reloaded workspace (SIGHUP); called between iterations. Default: nothing."""

    async def drain(self) -> None:  # noqa: B027
        """Finish work this loop started and left running (the daemon is stopping, after
        its last iteration; bounded by the shutdown grace). Default: nothing."""

    def due_sooner(self) -> float | None:
        """A time sooner than `interval` after the last start at which the loop wants its next
        iteration (read after each iteration), or None. Default: None."""
        return None
