"""Test doubles for the daemon's unit tests: a manual clock, a scripted loop, stores.

Nothing here sleeps: the clock moves only when a test advances it, and a test learns that
the daemon is waiting (on the clock or on a loop's script) from events, or from
`anyio.wait_all_tasks_blocked()`.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel

from vigil import errors
from vigil.config import settings
from vigil.daemon import loop
from vigil.storage import store as store_mod

T = TypeVar("T")
BLOCK = "block"  # a scripted iteration that waits until cancelled


class Mailbox(Generic[T]):
    """An unbounded queue between tasks that needs no closing."""

    def __init__(self) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._arrived = anyio.Event()

    def put(self, item: T) -> None:
        self._items.append(item)
        self._arrived.set()

    async def get(self) -> T:
        while not self._items:
            if self._arrived.is_set():
                self._arrived = anyio.Event()
            await self._arrived.wait()
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


class ManualClock:
    """A clock that moves only when told; tasks sleeping until a deadline wake as it passes."""

    def __init__(self, now: float = 1000.0) -> None:
        self._now = now
        self._sleepers: list[tuple[float, anyio.Event]] = []
        self._changed = anyio.Event()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        entry = (deadline, anyio.Event())
        self._sleepers.append(entry)
        self._signal()
        try:
            await entry[1].wait()
        finally:
            self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        self._now += seconds
        for deadline, event in self._sleepers:
            if deadline <= self._now:
                event.set()

    def advance_to(self, moment: float) -> None:
        self.advance(moment - self._now)

    @property
    def deadlines(self) -> list[float]:
        return sorted(deadline for deadline, _ in self._sleepers)

    async def sleeping_until(self, deadline: float) -> None:
        """Return once some task sleeps until `deadline` (the daemon chose that wait)."""
        while not any(math.isclose(d, deadline) for d, _ in self._sleepers):
            await self._changed.wait()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


class ScriptedLoop(loop.Loop):
    """A loop whose every iteration reports its start and does what the test replies.

    Reply `None` (succeed), an exception (raise it) or `BLOCK` (wait until cancelled).
    """

    def __init__(self, name: str, *, interval: float = 10.0, timeout: float = 5.0) -> None:
        super().__init__()
        self.name = name
        self.interval = interval
        self.timeout = timeout
        self.started = Mailbox[int]()
        self.replies = Mailbox[BaseException | str | None]()
        self.reloads: list[tuple[settings.CodeLocationSettings, ...]] = []
        self.calls = 0

    async def iterate(self) -> None:
        self.calls += 1
        self.started.put(self.calls)
        reply = await self.replies.get()
        if reply == BLOCK:
            await anyio.sleep_forever()
        if isinstance(reply, BaseException):
            raise reply

    async def reload(self, workspace: tuple[settings.CodeLocationSettings, ...]) -> None:  # type: ignore[override]
        self.reloads.append(tuple(workspace))

    async def step(self, reply: BaseException | str | None = None) -> int:
        """Wait for the next iteration to start, answer it; returns its number."""
        number = await self.started.get()
        self.replies.put(reply)
        return number


class UnusedStore:
    """A store for code that must not use it (loops that are only built): any verb asked
    for fails the test. It stands for any store role (`__getattr__` answers every name)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store's {name} was used")


class HeartbeatStore:
    """The heartbeat verbs of the store, in memory; `fail_next` makes writes fail."""

    def __init__(self, heartbeats: list[store_mod.Heartbeat] | None = None) -> None:
        self.rows: dict[tuple[str, str], store_mod.Heartbeat] = {}
        self.writes = Mailbox[store_mod.Heartbeat]()
        self.fail_next = 0
        for beat in heartbeats or ():
            self.rows[(beat.daemon_id, beat.loop)] = beat

    async def write_heartbeat(self, heartbeat: store_mod.Heartbeat) -> None:
        await anyio.lowlevel.checkpoint()
        if self.fail_next:
            self.fail_next -= 1
            raise errors.StoreUnavailable("cannot reach the store at test://: connection refused")
        self.rows[(heartbeat.daemon_id, heartbeat.loop)] = heartbeat
        self.writes.put(heartbeat)

    async def list_heartbeats(self) -> list[store_mod.Heartbeat]:
        await anyio.lowlevel.checkpoint()
        return sorted(self.rows.values(), key=lambda b: (b.daemon_id, b.loop))

    async def prune_heartbeats(self, before: float) -> int:
        await anyio.lowlevel.checkpoint()
        old = [key for key, beat in self.rows.items() if beat.last_heartbeat < before]
        for key in old:
            del self.rows[key]
        return len(old)
