"""Events from steps to the store in batches, without blocking the steps.

`emit` may be called from any thread (steps run in worker threads, or forward events
from step processes); a single flusher task writes whatever has gathered in one
transaction, so the batch size grows with the event rate on its own.

`take` stops the writing and hands back what is not written yet, so that the caller
writes it in a transaction of its own making (the worker: with the run's end).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from vigil import events
from vigil.storage import store as store_mod

MAX_BATCH = 2000
# Seconds an event waits for others before it is written: a short step's events then go
# in one transaction (in the worker, with the run's end), and the worker stays idle
# while a forked step process runs (no copy-on-write of its pages meanwhile).
LINGER = 0.05
# Events kept in memory while the store cannot take them (the store wrapper retries a
# write through an outage). Past this, log lines of user code are dropped and counted;
# the events that tell what happened to the steps and the run are always kept.
MAX_BUFFERED = 100_000
DROPPABLE = frozenset({events.EventType.LOG})


class BatchingSink:
    def __init__(
        self, store: store_mod.EventWriter, loop: asyncio.AbstractEventLoop, linger: float = LINGER
    ) -> None:
        self._store = store
        self._loop = loop
        self._linger = linger
        self._closing = asyncio.Event()
        self._lock = threading.Lock()
        self._buffer: list[events.NewEvent] = []
        self._wake = asyncio.Event()
        self._writing = anyio.Lock()
        self._held = False
        self._closed = False
        self._dropped = 0

    def emit(self, event: events.NewEvent) -> None:
        with self._lock:
            if len(self._buffer) >= MAX_BUFFERED and event.event_type in DROPPABLE:
                self._dropped += 1
                return
            self._buffer.append(event)
            first = len(self._buffer) == 1
        if first:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def flush(self) -> None:
        """Write everything emitted so far (nothing once taken, until the sink closes)."""
        async with self._writing:
            while not self._held or self._closed:
                with self._lock:
                    batch, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
                    batch += self._drop_note(batch)
                if not batch:
                    return
                await self._store.append_events(batch)

    async def take(self) -> list[events.NewEvent]:
        """Stop writing and return the events not written yet, in order.

        A write under way is waited for. Events emitted later still reach the store when
        the sink's block ends.
        """
        self._held = True
        async with self._writing:
            with self._lock:
                taken, self._buffer = self._buffer, []
                taken += self._drop_note(taken)
        return taken

    def _drop_note(self, batch: list[events.NewEvent]) -> list[events.NewEvent]:
        """An event telling of the log lines dropped since the last note (under the lock)."""
        if not self._dropped or not batch:
            return []
        note = events.NewEvent(
            run_id=batch[-1].run_id,
            event_type=events.EventType.ENGINE,
            timestamp=batch[-1].timestamp,
            level="WARNING",
            message=(
                f"{self._dropped} log lines were dropped while the store was unreachable "
                f"({MAX_BUFFERED} events waiting)"
            ),
        )
        self._dropped = 0
        return [note]

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            with anyio.move_on_after(self._linger):
                await self._closing.wait()
            self._wake.clear()
            await self.flush()
            if self._closed:
                return

    def _close(self) -> None:
        self._closed = True
        self._closing.set()
        self._wake.set()


@asynccontextmanager
async def batching_sink(
    store: store_mod.EventWriter, linger: float = LINGER
) -> AsyncIterator[BatchingSink]:
    """A sink whose flusher runs for the block; the last events are written on exit.

    Cancel the work that emits, not this block: leaving it drains what is left.
    """
    sink = BatchingSink(store, asyncio.get_running_loop(), linger)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sink._run)
        try:
            yield sink
        finally:
            sink._close()
