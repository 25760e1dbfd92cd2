"""The backfill loop: submits each open backfill's runs to the queue, a chunk at a time.

Each chunk is one store transaction (`submit_backfill_runs`): the runs of the next
`chunk_size` partitions, QUEUED, and the backfill's cursor moved past them, conditional on
the cursor read. A daemon killed before the commit left nothing of that chunk; after it, the
whole chunk and the cursor; so each partition is submitted exactly once, and a second
daemon (or a cancel) racing for the same chunk finds the cursor moved and writes nothing.
The queue then launches the runs under its limits (a backfill's own limit is the tag
`vigil/backfill_max_concurrent`). An iteration submits at most `CHUNKS_PER_ITERATION`
chunks and asks for the next one at once; between chunks it gives way to the scheduler and
sensor loops while they iterate (`precedence`, for at most `GIVE_WAY` seconds), so a large
backfill never holds the event loop or the store's write lock from a tick.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

import anyio.lowlevel

from vigil import backfills
from vigil.config import settings as settings_mod
from vigil.daemon import clock as clock_mod
from vigil.daemon import leases, loop
from vigil.daemon import precedence as precedence_mod
from vigil.storage import store as store_mod

logger = logging.getLogger(__name__)
CHUNKS_PER_ITERATION = 20
GIVE_WAY = 1.0  # the longest a chunk waits for the scheduler and sensor loops
MIN_TIMEOUT = 60.0
B = backfills.BackfillStatus


class BackfillLoopStore(store_mod.BackfillStore, Protocol):
    """What the loop uses: the backfills and the submission of their runs."""


@dataclasses.dataclass(frozen=True, slots=True)
class BackfillStatistics:
    """Partitions this daemon submitted; backfills by status; the oldest open one's age."""

    submitted: int
    by_status: dict[str, int]
    lag: float  # seconds since the oldest SUBMITTING backfill was created (0: none)


class BackfillLoop(loop.Loop):
    name = "backfills"

    def __init__(
        self,
        store: BackfillLoopStore,
        clock: clock_mod.Clock,
        settings: settings_mod.BackfillSettings,
        precedence: precedence_mod.Precedence | None = None,
        keeper: leases.Keeper | None = None,
    ) -> None:
        super().__init__()
        self._keeper = keeper
        self._store = store
        self._precedence = precedence if precedence is not None else precedence_mod.Precedence()
        self._clock = clock
        self._chunk = settings.chunk_size
        self.interval = settings.poll_interval
        self.timeout = max(MIN_TIMEOUT, settings.poll_interval * 3)
        self._submitted = 0
        self._more = False
        self._by_status: dict[str, int] = {}
        self._lag = 0.0

    def statistics(self) -> BackfillStatistics:
        return BackfillStatistics(self._submitted, dict(self._by_status), self._lag)

    def due_sooner(self) -> float | None:
        return self._clock.now() if self._more else None

    async def iterate(self) -> None:
        every = await self._store.list_backfills()
        self._observe(every)
        budget = CHUNKS_PER_ITERATION
        self._more = False
        if not await leases.owns(self._keeper, leases.BACKFILLS):
            return  # another daemon submits the backfills' runs (many daemons: one at a time)
        for light in every:
            if light.status is not B.SUBMITTING:
                continue
            budget = await self._submit(light.backfill_id, budget)
            if budget == 0:
                self._more = True
                break
        if budget < CHUNKS_PER_ITERATION:
            self._observe(await self._store.list_backfills())

    async def _submit(self, backfill_id: str, budget: int) -> int:
        """Submit chunks of one backfill while the budget lasts; the budget left."""
        backfill = await self._store.get_backfill(backfill_id)
        while budget > 0 and backfill.status is B.SUBMITTING and backfill.remaining > 0:
            await self._precedence.give_way(GIVE_WAY)
            now = self._clock.now()
            batch, enqueued = backfills.chunk_runs(backfill, self._chunk, now)
            done = await self._store.submit_backfill_runs(
                backfill_id, backfill.cursor, batch, enqueued, now
            )
            budget -= 1
            if not done:  # canceled, or another daemon took this chunk: read it again
                backfill = await self._store.get_backfill(backfill_id)
                continue
            self._submitted += len(batch)
            moved = backfill.cursor + len(batch)
            ended = B.SUBMITTED if moved >= backfill.total else B.SUBMITTING
            backfill = dataclasses.replace(backfill, cursor=moved, status=ended)
            self._log(backfill, len(batch))
            await anyio.lowlevel.checkpoint()  # the other loops run between chunks
        return budget

    def _log(self, backfill: backfills.Backfill, count: int) -> None:
        logger.info(
            "backfill %s of job %s: %d runs submitted (%d of %d)",
            backfill.backfill_id,
            backfill.job_name,
            count,
            backfill.cursor,
            backfill.total,
            extra={
                "event": "backfill.submitted",
                "backfill_id": backfill.backfill_id,
                "job": backfill.job_name,
                "count": count,
                "cursor": backfill.cursor,
                "total": backfill.total,
            },
        )

    def _observe(self, every: list[backfills.Backfill]) -> None:
        by_status = {status.value: 0 for status in B}
        for each in every:
            by_status[each.status.value] += 1
        self._by_status = by_status
        open_since = [b.created_at for b in every if b.status is B.SUBMITTING]
        self._lag = max(0.0, self._clock.now() - min(open_since)) if open_since else 0.0
