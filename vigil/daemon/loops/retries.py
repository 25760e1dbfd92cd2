"""The run retries loop: a failed run with retries left gets a child run, exactly once.

It follows the event log from a durable cursor (the instance flag `retries.cursor`: every
run end at or before it has been dealt with) and reads the run ends after it
(RUN_FAILURE, RUN_CANCELED). For each, `retrying.decide` says whether a retry is due and
when (the delay counts from the failure, so a daemon restart does not reset it). A due
retry is submitted through the coordinator as a child run under the instigator
`vigil/retries` with the run key `retry-of:RUN`: the store refuses a second run with that
key (`DuplicateRunKey`), so a daemon killed at any point, and restarted, submits each retry
exactly once and forgets none. The cursor moves past an end only once it is dealt with:
the ends still waiting for their delay are the backlog, read again at each iteration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import random
from collections.abc import Sequence

from vigil import errors, events, reexecution, retrying, runs
from vigil.config import settings as settings_mod
from vigil.coordinators import base as coordinators
from vigil.daemon import clock as clock_mod
from vigil.daemon import loop
from vigil.storage import store as store_mod

logger = logging.getLogger(__name__)
E = events.EventType
CURSOR_FLAG = "retries.cursor"
BATCH = 500
ENDS = (E.RUN_FAILURE, E.RUN_CANCELED)
MIN_TIMEOUT = 60.0


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
        clock: clock_mod.Clock,
        settings: settings_mod.RunRetriesSettings,
    ) -> None:
        super().__init__()
        self._coordinator = coordinator
        self._store = coordinator.store
        self._clock = clock
        self._settings = settings
        self.interval = settings.poll_interval
        self.timeout = max(MIN_TIMEOUT, settings.poll_interval * 3)
        self._dealt: set[int] = set()  # end events dealt with past the cursor (this process)
        self._noted: set[int] = set()  # end events whose pending retry was announced
        self._submitted = 0
        self._waiting: dict[int, float] = {}

    def statistics(self) -> RetriesStatistics:
        due = min(self._waiting.values(), default=None)
        return RetriesStatistics(self._submitted, len(self._waiting), due)

    async def iterate(self) -> None:
        cursor = int(await self._store.get_flag(CURSOR_FLAG) or 0)
        ends = await self._ends_after(cursor)
        waiting: dict[int, float] = {}
        for end in ends:
            if end.event_id in self._dealt:
                continue
            due = await self._deal_with(end)
            if due is None:
                self._dealt.add(end.event_id)
            else:
                waiting[end.event_id] = due
        self._waiting = waiting
        await self._advance(cursor, ends, waiting)

    async def _ends_after(self, cursor: int) -> list[events.Event]:
        found: list[events.Event] = []
        while True:
            batch = await self._store.events_after(cursor, BATCH, ENDS)
            found += batch
            if len(batch) < BATCH:
                return found
            cursor = batch[-1].event_id

    async def _advance(
        self, cursor: int, ends: Sequence[events.Event], waiting: dict[int, float]
    ) -> None:
        """Move the cursor to just before the first end still waiting (or past them all)."""
        if not ends:
            return
        new = min(waiting) - 1 if waiting else ends[-1].event_id
        if new > cursor:
            await self._store.set_flag(CURSOR_FLAG, new, self._clock.now())
            self._dealt = {i for i in self._dealt if i > new}
            self._noted = {i for i in self._noted if i > new}

    async def _deal_with(self, end: events.Event) -> float | None:
        """Submit the retry this end calls for if it is due; its due time if it waits."""
        run = await self._store.get_run(end.run_id)
        try:
            policy = retrying.policy_for(run.tags, self._settings)
        except errors.TagError as exc:
            await self._note(end, f"no retry: {exc}", "ERROR")
            return None
        ending = retrying.Ending(run.status, end.data.get("reason"), end.timestamp)
        rand = random.Random(run.run_id).random  # the same jitter after a restart
        now = self._clock.now()
        decision = retrying.decide(run, ending, policy, self._settings, rand, now)
        if isinstance(decision, retrying.NoRetry):
            return None
        if decision.due > now:
            when = datetime.datetime.fromtimestamp(decision.due).isoformat(timespec="seconds")
            await self._note(end, f"retry {decision.number} of {policy.max_retries} due at {when}")
            return decision.due
        await self._submit(run, decision, policy)
        return None

    async def _submit(
        self, run: runs.Run, decision: retrying.Retry, policy: retrying.Policy
    ) -> None:
        root = run.root_run_id or run.run_id
        child = reexecution.child_run(
            run,
            reexecution.Mode(decision.strategy.value),
            self._clock.now(),
            instigator=retrying.INSTIGATOR,
            run_key=retrying.run_key(run.run_id),
        )
        try:
            child = await self._coordinator.submit(child)
        except errors.DuplicateRunKey:
            await self._finish_submission(root, child.run_key)  # submitted before a restart
            return
        except errors.LaunchError:
            pass  # the coordinator ended the child FAILURE with the error; it is retried in turn
        self._submitted += 1
        message = (
            f"retry {child.retry_number} of {policy.max_retries} ({decision.strategy}) "
            f"submitted as run {child.run_id}"
        )
        await self._store.append_events([self._event(run.run_id, message, None, child.run_id)])
        logger.info(
            "run %s: %s",
            run.run_id,
            message,
            extra={"event": "run.retry_submitted", "run_id": run.run_id},
        )

    async def _finish_submission(self, root: str, key: str | None) -> None:
        """Launch a retry an earlier daemon inserted but died before launching.

        The immediate coordinator inserts a run NOT_STARTED and then launches it; a daemon
        killed in between leaves the child NOT_STARTED. The queued one inserts it QUEUED,
        and its queue launches it.
        """
        lineage = await self._store.list_runs(store_mod.RunFilter(root_run_id=root))
        for run in lineage:
            if run.run_key == key and run.instigator == retrying.INSTIGATOR:
                if run.status is runs.RunStatus.NOT_STARTED:
                    with contextlib.suppress(errors.LaunchError):  # it ended FAILURE
                        await self._coordinator.launch(run)
                return

    async def _note(self, end: events.Event, message: str, level: str | None = None) -> None:
        """Announce a decision on the ended run's log, once per daemon process."""
        if end.event_id in self._noted:
            return
        self._noted.add(end.event_id)
        await self._store.append_events([self._event(end.run_id, message, level, None)])

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
