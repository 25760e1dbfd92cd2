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
import dataclasses
import enum
from collections.abc import Sequence

import anyio

from vigil.config import settings


@dataclasses.dataclass(frozen=True, slots=True)
class LoopError:
    """One error a loop's iteration raised, kept in its heartbeat."""

    at: float
    error_type: str
    message: str

    @property
    def headline(self) -> str:
        text = f"{self.error_type}: {self.message}" if self.message else self.error_type
        return (text.splitlines() or [""])[0][:200]


class LoopState(enum.StrEnum):
    """What the supervisor knows of a loop in this process."""

    STARTING = "starting"
    IDLE = "idle"  # waiting for the next iteration
    RUNNING = "running"  # an iteration is in progress
    BACKOFF = "backoff"  # crashed; waiting to be restarted
    STOPPED = "stopped"


@dataclasses.dataclass(frozen=True, slots=True)
class LoopStatistics:
    """A cheap snapshot of one loop's progress (read by heartbeats and metrics).

    Times are the injected clock's (epoch seconds). `iterations` counts the iterations that
    ended, failed or not; `total_duration` is their summed duration (a metrics `_sum`);
    `started_at` is when the supervisor first started the loop.
    """

    name: str
    interval: float
    timeout: float
    state: LoopState
    iterations: int
    failures: int
    restarts: int
    last_iteration_start: float | None
    last_iteration_end: float | None
    last_success: float | None
    last_duration: float | None
    errors: Sequence[LoopError]
    consecutive_failures: int
    started_at: float | None = None
    total_duration: float = 0.0

    @property
    def last_error(self) -> LoopError | None:
        return self.errors[-1] if self.errors else None

    @property
    def iteration_running(self) -> bool:
        return self.state is LoopState.RUNNING and self.last_iteration_start is not None


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
