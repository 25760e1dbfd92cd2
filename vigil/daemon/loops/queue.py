"""The run queue loop: launches queued runs as soon as the limits allow.

It wakes on a notice from the store (PostgreSQL LISTEN/NOTIFY on submission and when a run
ends; an in-process event on SQLite) or at `poll_interval`, whichever comes first; the poll
covers what a notice missed. Each iteration claims and launches until a claim comes back
smaller than a full launch batch.
"""

from __future__ import annotations

from vigil.coordinators import base as coordinators
from vigil.daemon import loop
from vigil.storage import store as store_mod

LISTEN_TIMEOUT = 60.0


class QueueLoop(loop.Loop):
    name = "queue"

    def __init__(self, queue: coordinators.RunQueue) -> None:
        super().__init__()
        self._queue = queue
        self.interval = queue.poll_interval
        self.timeout = queue.launch_timeout * 2

    async def iterate(self) -> None:
        batch = self._queue.launch_batch
        while len(await self._queue.dequeue()) >= batch:
            pass


async def relay_notices(store: store_mod.QueueStore, wake: loop.Wakeup) -> None:
    """Forever: turn the store's queue notices into wake-ups of the queue loop."""
    async with store.queue_wakeups() as notices:
        while True:
            if await notices.wait(LISTEN_TIMEOUT):
                wake.set()
