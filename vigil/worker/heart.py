"""The run worker's heartbeat: proof, in the store, that the worker is alive and reaches it.

Every `interval` seconds (`run_monitoring.worker_heartbeat_interval`) the worker sets its
run's `worker_heartbeat` with `record_worker_heartbeat`, one guarded UPDATE. A beat that is
due when the sink writes a batch of events goes in that batch's transaction (the heart is
the sink's writer), so a worker busy logging adds no transaction of its own; a quiet one (a
long step without output) beats alone, from a task of its own that never blocks the steps.
The start of the run (`start_run`) is the first beat.

A beat the store cannot take (an outage) is retried by the patient store, then skipped once
that gives up: the run goes on, and the monitor judges the silence. A beat refused means the
run is no longer this worker's (it ended, or the monitor gave it to another worker under a
new launch token): `on_lost` is called once, and the worker stops its steps.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

import anyio

from vigil import errors, events
from vigil.storage import store as store_mod


class BeatStore(store_mod.WorkerBeats, store_mod.EventWriter, Protocol):
    """The store verbs the heart uses: the heartbeat (with events), and events alone."""


class Heart:
    """One run's heartbeat; an `EventWriter` for the sink that carries the beats due."""

    def __init__(
        self,
        store: BeatStore,
        run_id: str,
        token: str | None,
        clock: Callable[[], float],
        interval: float,
        on_lost: Callable[[], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._token = token
        self._clock = clock
        self._interval = interval
        self._on_lost = on_lost
        self._monotonic = monotonic
        self._last = monotonic()  # the run's start was the first beat
        self._stopped = False
        self._lost = False

    def due(self) -> bool:
        return not self._stopped and self._monotonic() - self._last >= self._interval

    async def append_events(self, batch: Sequence[events.NewEvent]) -> None:
        """Write the sink's batch, with a heartbeat in its transaction when one is due."""
        if self.due():
            await self.beat(batch)
        else:
            await self._store.append_events(batch)

    async def beat(self, batch: Sequence[events.NewEvent] = ()) -> None:
        self._last = self._monotonic()  # before the write: a concurrent flush does not beat too
        now = self._clock()
        written = await self._store.record_worker_heartbeat(self._run_id, self._token, now, batch)
        if not written and not self._lost and not self._stopped:
            self._lost = True
            self._on_lost()

    def stop(self) -> None:
        """No more beats: the worker is ending its run."""
        self._stopped = True

    async def run(self) -> None:
        """Forever: beat whenever no batch of events carried a beat for an interval."""
        while not self._stopped:
            await anyio.sleep(max(0.0, self._last + self._interval - self._monotonic()))
            if self.due():
                with anyio.CancelScope(shield=True):  # a beat is never cut mid-transaction
                    await self._beat_alone()

    async def _beat_alone(self) -> None:
        try:
            await self.beat()
        except errors.StoreUnavailable as exc:
            print(f"vigil worker: a heartbeat was not written: {exc}", file=sys.stderr)


@asynccontextmanager
async def beating(heart: Heart) -> AsyncIterator[Heart]:
    """The heart beats from its own task for the block; it stops at the block's end."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(heart.run)
        try:
            yield heart
        finally:
            heart.stop()
            tg.cancel_scope.cancel()
