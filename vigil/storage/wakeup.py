"""Queue notices: waking the queue loop when a run is submitted or ends.

PostgreSQL: the store sends `pg_notify(CHANNEL, run_id)` in the transaction that submits or
ends a run, so every process on the store hears it at commit. `listen` holds a connection
of its own on `LISTEN CHANNEL` and reconnects, with capped backoff, whenever it drops (seen
at once when the server closes it, and by a ping when the connection idles silently). While
it is down `wait` only times out: the queue loop's poll covers the gap. A reconnect counts
as a notice, because notices sent meanwhile are lost.

SQLite has no NOTIFY: `LocalHub` wakes the subscribers of one store object when that object
commits a submission or an end; other processes' changes are found by the poll.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import asyncpg

from vigil.storage import store

logger = logging.getLogger(__name__)

CHANNEL = "vigil_queue"
FIRST_RETRY_DELAY = 0.1  # seconds before reconnecting; doubled after each failed attempt
MAX_RETRY_DELAY = 10.0
KEEPALIVE_INTERVAL = 30.0  # ping an idle listener this often to find a silently dead link
PING_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0

# What a lost or refused listener connection raises: retried, never raised to the waiter.
_DROPPED: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)

Connect = Callable[[], Awaitable[Any]]  # a new asyncpg connection


class Signal(store.Wakeups):
    """A latch: `wake` sets it, and the next `wait` consumes it."""

    def __init__(self) -> None:
        self._woken = anyio.Event()

    def wake(self) -> None:
        self._woken.set()

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - the timeout is an answer
        with anyio.move_on_after(timeout):
            await self._woken.wait()
        if not self._woken.is_set():
            return False
        self._woken = anyio.Event()
        return True


class LocalHub:
    """In-process queue notices: `wake` wakes every open subscription of this hub."""

    def __init__(self) -> None:
        self._subscribers: set[Signal] = set()

    def wake(self) -> None:
        for signal in self._subscribers:
            signal.wake()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[store.Wakeups]:
        signal = Signal()
        self._subscribers.add(signal)
        try:
            yield signal
        finally:
            self._subscribers.discard(signal)


@contextlib.asynccontextmanager
async def listen(
    connect: Connect, keepalive: float = KEEPALIVE_INTERVAL
) -> AsyncIterator[store.Wakeups]:
    """LISTEN for queue notices on a connection of its own while the context is open.

    Entering returns once the first connection attempt is over: when it succeeded, every
    notice committed from then on wakes `wait`. When it failed, the listener keeps trying.
    """
    listener = _Listener(connect, keepalive)
    async with anyio.create_task_group() as tg:
        await tg.start(listener.run)
        try:
            yield listener.signal
        finally:
            tg.cancel_scope.cancel()


class _Listener:
    def __init__(self, connect: Connect, keepalive: float) -> None:
        self.signal = Signal()
        self._connect = connect
        self._keepalive = keepalive
        self._attempts = 0
        self._listening = False
        self._ready: anyio.abc.TaskStatus[None] | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Forever: listen until the connection drops, then reconnect after a backoff."""
        self._ready = task_status
        delay = FIRST_RETRY_DELAY
        while True:
            reason = await self._listen_until_dropped()
            self._report_ready()
            if self._listening:
                delay = FIRST_RETRY_DELAY
            _log_drop(reason, delay, self._listening)
            await anyio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)

    async def _listen_until_dropped(self) -> str:
        """Connect and listen until the connection drops; returns why it did."""
        self._attempts += 1
        self._listening = False
        try:
            conn = await self._connect()
            try:
                await self._listen(conn)
            finally:
                await _close(conn)
        except _DROPPED as exc:
            return f"{type(exc).__name__}: {exc}".splitlines()[0]
        return "the server closed it"

    async def _listen(self, conn: Any) -> None:
        lost = anyio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._on_notice)
        self._listening = True
        if self._attempts > 1:
            self.signal.wake()  # notices sent while no connection listened are lost
        self._report_ready()
        await self._watch(conn, lost)

    async def _watch(self, conn: Any, lost: anyio.Event) -> None:
        """Return when the connection is lost; raise when a keepalive ping fails."""
        while True:
            with anyio.move_on_after(self._keepalive):
                await lost.wait()
                return
            await conn.execute("SELECT 1", timeout=PING_TIMEOUT)

    def _on_notice(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self.signal.wake()

    def _report_ready(self) -> None:
        if self._ready is not None:
            self._ready.started()
            self._ready = None


def _log_drop(reason: str, delay: float, was_listening: bool) -> None:
    what = "lost its connection" if was_listening else "cannot connect"
    logger.warning(
        "the queue listener %s (%s); retrying in %.1f s, polling meanwhile",
        what,
        reason,
        delay,
        extra={"event": "store.listener_down", "retry_in": delay},
    )


async def _close(conn: Any) -> None:
    """Close the connection, even while cancelled; asyncpg aborts it when that fails."""
    if conn.is_closed():
        return
    with anyio.CancelScope(shield=True), contextlib.suppress(*_DROPPED):
        await conn.close(timeout=CLOSE_TIMEOUT)
