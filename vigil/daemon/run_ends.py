"""Runs ending, followed for the log and the metrics: each end reported once per daemon.

A run ends in its worker, in the monitor, in a cancel from the CLI: not in one place the
daemon sees. Every end writes one end event (RUN_SUCCESS, RUN_FAILURE, RUN_CANCELED), so
the daemon follows the event log with a cursor of its own, kept in memory: it starts at
the newest event when the daemon starts (ends before that are not this daemon's to count;
a counter restarting at 0 with its process is the Prometheus way) and moves past each end
once it is reported, so a scrape, or a store outage between two reads, never counts one
end twice. A run purged before it is read is skipped. Each end is one `run.ended` log line
(its status, reason, duration and, unless it succeeded, the end's message) and one count
in `vigil_runs_ended_total` and `vigil_run_duration_seconds`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, Protocol

import anyio

from vigil import errors, events, runs

logger = logging.getLogger(__name__)

BATCH = 500
ENDS: dict[events.EventType, runs.RunStatus] = {
    events.EventType.RUN_SUCCESS: runs.RunStatus.SUCCESS,
    events.EventType.RUN_FAILURE: runs.RunStatus.FAILURE,
    events.EventType.RUN_CANCELED: runs.RunStatus.CANCELED,
}


class RunEndStore(Protocol):
    """The store verbs the follower reads with."""

    async def last_event_id(self) -> int: ...

    async def events_after(
        self, after_id: int, limit: int, event_types: Collection[events.EventType] = ()
    ) -> list[events.Event]: ...

    async def get_run(self, run_id: str) -> runs.Run: ...


class RunEndObserver(Protocol):
    """Where ends go: the metrics."""

    def observe_run_end(self, job: str, status: str, seconds: float | None) -> None: ...

    def store_error(self) -> None: ...


class RunEndFollower:
    """Reports each run end after `cursor` once; `cursor` is None until the first read."""

    def __init__(self, store: RunEndStore, observer: RunEndObserver) -> None:
        self._store = store
        self._observer = observer
        self.cursor: int | None = None

    async def follow(self, interval: float) -> None:
        """A daemon task: catch up now, then every `interval` seconds, forever."""
        while True:
            await self.catch_up()
            await anyio.sleep(interval)

    async def catch_up(self) -> None:
        """Report the ends since the cursor; a store error keeps the cursor for next time."""
        try:
            await self._advance()
        except errors.StoreError as exc:
            self._observer.store_error()
            logger.warning(
                "cannot read run ends: %s",
                exc,
                extra={"event": "metrics.run_ends_failed", "error": str(exc)},
            )

    async def _advance(self) -> None:
        if self.cursor is None:
            self.cursor = await self._store.last_event_id()
            return
        while True:
            batch = await self._store.events_after(self.cursor, BATCH, tuple(ENDS))
            for end in batch:
                await self._report(end)
                self.cursor = end.event_id
            if len(batch) < BATCH:
                return

    async def _report(self, end: events.Event) -> None:
        try:
            run = await self._store.get_run(end.run_id)
        except errors.UnknownRun:
            return
        log_end(run, end)
        self._observer.observe_run_end(run.job_name, ENDS[end.event_type].value, duration(run, end))


def duration(run: runs.Run, end: events.Event) -> float | None:
    """Seconds from the run's start to its end; None for a run that never started."""
    if run.start_time is None:
        return None
    ended = run.end_time if run.end_time is not None else end.timestamp
    return max(0.0, ended - run.start_time)


def log_end(run: runs.Run, end: events.Event) -> None:
    """The `run.ended` line of one run-end event."""
    message = "" if run.status is runs.RunStatus.SUCCESS else f": {end.message}"
    level = logging.INFO if run.status is runs.RunStatus.SUCCESS else logging.WARNING
    logger.log(
        level,
        "run %s of job %s ended %s%s",
        run.run_id,
        run.job_name,
        run.status,
        message,
        extra=end_fields(run, end),
    )


def end_fields(run: runs.Run, end: events.Event) -> dict[str, Any]:
    """The line's stable fields: run, job, status, reason, duration (s, from its start)."""
    seconds = duration(run, end)
    return {
        "event": "run.ended",
        "run_id": run.run_id,
        "job": run.job_name,
        "status": run.status.value,
        "reason": end.data.get("reason"),
        "duration": None if seconds is None else round(seconds, 3),
    }
