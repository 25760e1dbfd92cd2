"""One `run.ended` log line for each run that ends, whoever ended it.

A run ends in its worker (SUCCESS, FAILURE, CANCELED), in the coordinator (a failed launch)
or in the monitor (a dead worker, a deadline); each way writes a run-end event to the event
log. `RunEnds` follows that log from a cursor held in memory, taken at the newest event
when it first reads: each end after it is logged once, with its status, reason, duration
and, for a run that did not succeed, the end's message. Ends while no daemon ran are not
logged. The monitor loop reads it on each pass (at once when one of its workers exits).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from vigil import events, runs
from vigil.storage import store as store_mod

logger = logging.getLogger(__name__)
E = events.EventType
ENDS = (E.RUN_SUCCESS, E.RUN_FAILURE, E.RUN_CANCELED)
BATCH = 500


class RunEndsStore(store_mod.EventReader, Protocol):
    async def get_run(self, run_id: str) -> runs.Run: ...


class RunEnds:
    def __init__(self, store: RunEndsStore) -> None:
        self._store = store
        self._cursor: int | None = None
        self.logged = 0

    async def log_new(self) -> None:
        """Log each run end written since the last call (nothing on the first)."""
        if self._cursor is None:
            self._cursor = await self._store.last_event_id()
            return
        while batch := await self._store.events_after(self._cursor, BATCH, ENDS):
            for end in batch:
                log_end(await self._store.get_run(end.run_id), end)
            self._cursor = batch[-1].event_id
            self.logged += len(batch)


def log_end(run: runs.Run, end: events.Event) -> None:
    """The `run.ended` line of one run-end event."""
    fields = end_fields(run, end)
    message = "" if run.status is runs.RunStatus.SUCCESS else f": {end.message}"
    level = logging.INFO if run.status is runs.RunStatus.SUCCESS else logging.WARNING
    logger.log(
        level,
        "run %s of job %s ended %s%s",
        run.run_id,
        run.job_name,
        run.status,
        message,
        extra=fields,
    )


def end_fields(run: runs.Run, end: events.Event) -> dict[str, Any]:
    """The line's stable fields: run, job, status, reason, duration (s, from its start)."""
    ended = run.end_time if run.end_time is not None else end.timestamp
    duration = None if run.start_time is None else round(max(0.0, ended - run.start_time), 3)
    return {
        "event": "run.ended",
        "run_id": run.run_id,
        "job": run.job_name,
        "status": run.status.value,
        "reason": end.data.get("reason"),
        "duration": duration,
    }
