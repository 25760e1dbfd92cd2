"""The run retries loop: a failed run with retries left gets a child run, exactly once.

It follows the event log from a durable cursor (the instance flag `retries.cursor`: every
run end at or before it has been dealt with) and reads the run ends after it
(RUN_FAILURE, RUN_CANCELED). For each, `retrying.decide` says whether a retry is due and
when (the delay counts from the failure, so a daemon restart does not reset it). The retry
is submitted at once through the coordinator as a child run under the instigator
`vigil/retries` with the run key `retry-of:RUN`, carrying its due time as `not_before`: a
stored fact, so the queue claims it only once due (the immediate coordinator leaves it
NOT_STARTED and this loop launches it when due, `launch_due`). The cursor therefore always
moves past every end it read, and a pass costs the same however many retries wait. The
store refuses a second run with one key (`DuplicateRunKey`), so a daemon killed at any
point, and restarted, submits each retry exactly once and forgets none.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import random
from typing import Protocol

from vigil import errors, events, reexecution, retrying, runs
from vigil.config import settings as settings_mod
from vigil.coordinators import base as coordinators
from vigil.daemon import clock as clock_mod
from vigil.daemon import leases, loop
from vigil.storage import store as store_mod

logger = logging.getLogger(__name__)
E = events.EventType
CURSOR_FLAG = "retries.cursor"
BATCH = 500
ENDS = (E.RUN_FAILURE, E.RUN_CANCELED)
MIN_TIMEOUT = 60.0


class RetriesStore(store_mod.RunReader, store_mod.EventStore, store_mod.FlagStore, Protocol):
    """What the loop reads and writes itself (it submits through the coordinator): the
    ended runs, the event log (ends, its notes), its cursor flag."""


@dataclasses.dataclass(frozen=True, slots=True)
class RetriesStatistics:
    """Retries submitted by this daemon; ended runs waiting for their retry's delay now."""

    submitted: int
    backlog: int
    next_due: float | None


class RetriesLoop(loop.Loop):
    name = "retries"

    def __init__(
        self,
        coordinator: coordinators.RunCoordinator,
        store: RetriesStore,
        clock: clock_mod.Clock,
        settings: settings_mod.RunRetriesSettings,
        keeper: leases.Keeper | None = None,
    ) -> None:
        super().__init__()
        self._keeper = keeper
        self._coordinator = coordinator
        self._store = store
        self._clock = clock
        self._settings = settings
        self.interval = settings.poll_interval
        self.timeout = max(MIN_TIMEOUT, settings.poll_interval * 3)
        self._submitted = 0
        self._waiting: tuple[int, float | None] = (0, None)

    def statistics(self) -> RetriesStatistics:
        return RetriesStatistics(self._submitted, *self._waiting)

    async def iterate(self) -> None:
        if not await leases.owns(self._keeper, leases.RETRIES):
            return  # another daemon follows the ends (many daemons: one owns the cursor)
        cursor = int(await self._store.get_flag(CURSOR_FLAG) or 0)
        ends = await self._ends_after(cursor)
        for end in ends:
            await self._deal_with(end)
        if ends:
            await self._move_cursor(ends[-1].event_id)
        await self._coordinator.launch_due(retrying.INSTIGATOR)
        self._waiting = await self._store.waiting_runs(retrying.INSTIGATOR, self._clock.now())

    async def _move_cursor(self, event_id: int) -> None:
        """Fenced: a daemon that lost the cursor to another cannot move it."""
        fence = None if self._keeper is None else self._keeper.fence([leases.RETRIES])
        try:
            await self._store.set_flag(CURSOR_FLAG, event_id, self._clock.now(), fence=fence)
        except errors.LeaseLost as exc:
            assert self._keeper is not None
            self._keeper.lost([leases.RETRIES])
            logger.warning("%s", exc, extra={"event": "retries.fenced"})

    async def _ends_after(self, cursor: int) -> list[events.Event]:
        found: list[events.Event] = []
        while True:
            batch = await self._store.events_after(cursor, BATCH, ENDS)
            found += batch
            if len(batch) < BATCH:
                return found
            cursor = batch[-1].event_id

    async def _deal_with(self, end: events.Event) -> None:
        """Submit the retry this end calls for, due when its delay has passed."""
        try:
            run = await self._store.get_run(end.run_id)
        except errors.UnknownRun:
            return  # purged since (by a purge that did not spare retries): nothing to retry
        try:
            policy = retrying.policy_for(run.tags, self._settings)
        except errors.TagError as exc:
            await self._note(end.run_id, f"no retry: {exc}", "ERROR")
            return
        ending = retrying.Ending(run.status, end.data.get("reason"), end.timestamp)
        rand = random.Random(run.run_id).random  # the same jitter after a restart
        now = self._clock.now()
        decision = retrying.decide(run, ending, policy, self._settings, rand, now)
        if not isinstance(decision, retrying.NoRetry):
            await self._submit(run, decision, policy)

    async def _submit(
        self, run: runs.Run, decision: retrying.Retry, policy: retrying.Policy
    ) -> None:
        now = self._clock.now()
        child = reexecution.child_run(
            run,
            reexecution.Mode(decision.strategy.value),
            now,
            instigator=retrying.INSTIGATOR,
            run_key=retrying.run_key(run.run_id),
        )
        if decision.due > now:
            child = dataclasses.replace(child, not_before=decision.due)
        try:
            child = await self._coordinator.submit(child)
        except errors.DuplicateRunKey:
            return  # submitted before a restart; `launch_due` sees to its launch
        except errors.LaunchError:
            pass  # the coordinator ended the child FAILURE with the error; it is retried in turn
        self._submitted += 1
        message = (
            f"retry {child.retry_number} of {policy.max_retries} ({decision.strategy}) "
            f"submitted as run {child.run_id}"
        )
        if decision.due > now:
            when = datetime.datetime.fromtimestamp(decision.due, datetime.UTC)
            message += f", due at {when.isoformat(timespec='seconds')}"
        await self._note(run.run_id, message, None, child.run_id)
        logger.info(
            "run %s: %s",
            run.run_id,
            message,
            extra={
                "event": "run.retry_submitted",
                "run_id": run.run_id,
                "job": run.job_name,
                "retry_run_id": child.run_id,
                "retry_number": child.retry_number,
            },
        )

    async def _note(
        self, run_id: str, message: str, level: str | None, child: str | None = None
    ) -> None:
        """Announce a decision on the ended run's log."""
        await self._store.append_events([self._event(run_id, message, level, child)])

    def _event(
        self, run_id: str, message: str, level: str | None, child: str | None
    ) -> events.NewEvent:
        data = {"retry_run_id": child} if child else {}
        return events.NewEvent(
            run_id=run_id,
            event_type=E.ENGINE,
            timestamp=self._clock.now(),
            level=level,
            message=message,
            data=data,
        )
