"""The run coordinator interface: it decides when a submitted run is launched."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import ClassVar

import pydantic

from vigil import errors, events, runs
from vigil.launchers import base as launchers
from vigil.storage import store as store_mod

Clock = Callable[[], float]
S = runs.RunStatus
NEVER_LAUNCHED = frozenset({S.NOT_STARTED, S.QUEUED})


class NoOptions(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class RunCoordinator(abc.ABC):
    """Takes submitted runs (status NOT_STARTED) to a launch, now or later."""

    Options: ClassVar[type[pydantic.BaseModel]] = NoOptions

    def __init__(
        self,
        options: pydantic.BaseModel,
        store: store_mod.Store,
        launcher: launchers.RunLauncher,
        clock: Clock,
    ) -> None:
        self.options = options
        self.store = store
        self.launcher = launcher
        self.clock = clock

    @abc.abstractmethod
    async def submit(self, run: runs.Run) -> runs.Run:
        """Record a new run and see to its launch; returns the run as stored after."""

    async def submit_many(self, batch: Sequence[runs.Run]) -> list[runs.Run]:
        """Submit several runs; a coordinator that can records them in one transaction.

        All or nothing where it is one transaction (a run key already used raises
        DuplicateRunKey and submits none); this default submits them one at a time.
        """
        return [await self.submit(run) for run in batch]

    async def cancel(self, run_id: str) -> runs.Run:
        """Cancel a run: at once if it never launched, else through its worker."""
        run = await self.store.get_run(run_id)
        if run.status.is_terminal or run.status is S.CANCELING:
            return run
        if run.status in NEVER_LAUNCHED:
            await self._end(
                run_id,
                run.status,
                S.CANCELED,
                events.EventType.RUN_CANCELED,
                "canceled before launch",
                runs.EndReason.CANCELED,
            )
            return await self.store.get_run(run_id)
        won = await self.store.transition_run(
            run_id,
            run.status,
            S.CANCELING,
            self.clock(),
            event=self._event(run_id, events.EventType.RUN_CANCELING, "cancel requested"),
        )
        if won and not await self.launcher.terminate(run):
            await self._end(
                run_id,
                S.CANCELING,
                S.CANCELED,
                events.EventType.RUN_CANCELED,
                "no live worker",
                runs.EndReason.CANCELED,
            )
        return await self.store.get_run(run_id)

    async def settle_cancel(self, run_id: str) -> runs.Run:
        """End a CANCELING run CANCELED if its worker is gone without having ended it."""
        run = await self.store.get_run(run_id)
        if run.status is not S.CANCELING:
            return run
        check = await self.launcher.check_worker_health(run)
        if check.health is launchers.WorkerHealth.DEAD:
            message = f"worker gone before it ended the run ({check.detail})"
            await self._end(
                run_id,
                S.CANCELING,
                S.CANCELED,
                events.EventType.RUN_CANCELED,
                message,
                runs.EndReason.CANCELED,
            )
        return await self.store.get_run(run_id)

    async def launch(self, run: runs.Run) -> runs.Run:
        """Claim a run (its status -> STARTING) and hand it to the launcher."""
        claimed = await self.store.transition_run(
            run.run_id,
            run.status,
            S.STARTING,
            self.clock(),
            event=self._event(run.run_id, events.EventType.RUN_STARTING, "launching"),
        )
        if not claimed:
            return await self.store.get_run(run.run_id)
        return await self.start_worker(run)

    async def start_worker(self, run: runs.Run) -> runs.Run:
        """Give a claimed (STARTING) run its worker; a LaunchError ends the run FAILURE."""
        try:
            info = await self.launcher.launch(run)
        except errors.LaunchError as exc:
            await self._end(
                run.run_id,
                S.STARTING,
                S.FAILURE,
                events.EventType.RUN_FAILURE,
                str(exc),
                runs.EndReason.LAUNCH_FAILED,
            )
            raise
        await self.store.update_run_info(run.run_id, store_mod.RunUpdate(launcher_info=info))
        # As launched; the worker may already have moved it on (no re-read on this hot path).
        return dataclasses.replace(run, status=S.STARTING, launcher_info=dict(info))

    async def _end(
        self,
        run_id: str,
        expected: runs.RunStatus,
        status: runs.RunStatus,
        kind: events.EventType,
        message: str,
        reason: runs.EndReason | None = None,
    ) -> None:
        now = self.clock()
        event = self._event(run_id, kind, message)
        if reason is not None:
            event = dataclasses.replace(event, data={"reason": reason.value})
        update = store_mod.RunUpdate(end_time=now)
        await self.store.transition_run(run_id, expected, status, now, update, event)

    def _event(self, run_id: str, kind: events.EventType, message: str) -> events.NewEvent:
        return events.NewEvent(
            run_id=run_id, event_type=kind, timestamp=self.clock(), message=message
        )
