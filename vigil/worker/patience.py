"""A run worker rides out a store outage: its store calls are retried while it is down.

A step that has finished must never run again because a write failed: its events and the
run's end wait in memory (the sink's buffer, the pending end) while `PatientStore` retries
each call with capped, jittered backoff, for up to `outage_timeout` seconds of one outage
(`run_worker.store_outage_timeout`, 10 minutes by default). Only then does the call give
up, with `StoreUnavailable` saying how long it tried: the worker exits with that one line,
and the monitor deals with the run as with any dead worker.

Only `StoreUnavailable` (the store cannot be reached) is retried; any other store error is
not transient and goes up at once. The worker sees the store through `WorkerStore`: the
six verbs it uses.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Protocol, TextIO, TypeVar

import anyio

from vigil import errors, events, runs
from vigil.scheduling import backoff
from vigil.storage import store as store_mod

T = TypeVar("T")
_NO_UPDATE = store_mod.RunUpdate()
DEFAULT_OUTAGE_TIMEOUT = 600.0


class WorkerStore(store_mod.LineageReader, store_mod.EventWriter, store_mod.WorkerBeats, Protocol):
    """The store verbs a run worker uses: its run's start, heartbeat and end, its events,
    and its lineage (read when planning)."""

    async def start_run(
        self,
        run_id: str,
        now: float,
        update: store_mod.RunUpdate = ...,
        event: events.NewEvent | None = None,
        token: str | None = None,
        resume: bool = False,
    ) -> runs.Run | None: ...

    async def end_run(
        self,
        run_id: str,
        expected: runs.RunStatus | Collection[runs.RunStatus],
        end: runs.RunEnd,
        now: float,
        pending: Sequence[events.NewEvent] = (),
        token: str | None = None,
    ) -> bool: ...


class PatientStore:
    """A `WorkerStore` whose calls outlast a store outage of up to `outage_timeout` s."""

    def __init__(
        self,
        store: WorkerStore,
        outage_timeout: float = DEFAULT_OUTAGE_TIMEOUT,
        log: TextIO | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._timeout = outage_timeout
        self._log = log
        self._monotonic = monotonic
        self._rand = random.Random()

    async def start_run(
        self,
        run_id: str,
        now: float,
        update: store_mod.RunUpdate = _NO_UPDATE,
        event: events.NewEvent | None = None,
        token: str | None = None,
        resume: bool = False,
    ) -> runs.Run | None:
        return await self._call(
            "starting the run",
            lambda: self._store.start_run(run_id, now, update, event, token, resume),
        )

    async def end_run(
        self,
        run_id: str,
        expected: runs.RunStatus | Collection[runs.RunStatus],
        end: runs.RunEnd,
        now: float,
        pending: Sequence[events.NewEvent] = (),
        token: str | None = None,
    ) -> bool:
        return await self._call(
            "ending the run",
            lambda: self._store.end_run(run_id, expected, end, now, pending, token),
        )

    async def record_worker_heartbeat(
        self,
        run_id: str,
        token: str | None,
        now: float,
        batch: Sequence[events.NewEvent] = (),
    ) -> bool:
        what = "writing the heartbeat" + (f" and {len(batch)} events" if batch else "")
        return await self._call(
            what, lambda: self._store.record_worker_heartbeat(run_id, token, now, batch)
        )

    async def append_events(self, batch: Sequence[events.NewEvent]) -> None:
        await self._call(f"writing {len(batch)} events", lambda: self._store.append_events(batch))

    async def get_run(self, run_id: str) -> runs.Run:
        return await self._call("reading the run", lambda: self._store.get_run(run_id))

    async def get_events(
        self,
        run_id: str,
        after_id: int = 0,
        limit: int | None = None,
        event_types: Collection[events.EventType] = (),
    ) -> list[events.Event]:
        return await self._call(
            "reading events",
            lambda: self._store.get_events(run_id, after_id, limit, event_types),
        )

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        began: float | None = None
        attempt = 0
        while True:
            try:
                result = await call()
            except errors.StoreUnavailable as exc:
                began = self._monotonic() if began is None else began
                waited = self._monotonic() - began
                if waited >= self._timeout:
                    raise errors.StoreUnavailable(
                        f"gave up {what} after {waited:.0f} s without the store "
                        f"(run_worker.store_outage_timeout is {self._timeout:g} s): {exc}"
                    ) from exc
                if attempt == 0:
                    self._say(
                        f"vigil worker: {what} failed, retrying until the store is back: {exc}"
                    )
                attempt += 1
                await anyio.sleep(min(self._delay(attempt), self._timeout - waited))
            else:
                if attempt:
                    self._say(f"vigil worker: the store is back after {attempt} retries ({what})")
                return result

    def _delay(self, attempt: int) -> float:
        return backoff.exponential_backoff(
            attempt, base=0.2, factor=2.0, cap=5.0, jitter=0.2, rand=self._rand.random
        )

    def _say(self, line: str) -> None:
        out = self._log or sys.stderr
        out.write(line + "\n")
        out.flush()
