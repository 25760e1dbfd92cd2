"""The run coordinator interface: it decides when a submitted run is launched.

A coordinator sees the store through `CoordinatorStore`, the roles it plays: runs from
submission to launch and cancel, the run queue, instance flags (the queue's pause). A
coordinator that queues runs says so with `run_queue()`, the `RunQueue` the daemon's queue
loop drives; the daemon builds that loop from the answer, never from the coordinator's
class. `observer`, when given, is told of each launch made from the queue (the daemon's
metrics).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import socket
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import ClassVar, Protocol

import psutil
import pydantic

from vigil import errors, events, runs
from vigil.launchers import base as launchers
from vigil.storage import store as store_mod

logger = logging.getLogger(__name__)
Clock = Callable[[], float]
S = runs.RunStatus
R = runs.EndReason
DUE_BATCH = 100  # due runs launched per call


class NoOptions(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class CoordinatorStore(store_mod.RunStore, store_mod.QueueStore, store_mod.FlagStore, Protocol):
    """The store roles of a coordinator: runs, the run queue, instance flags."""


class LaunchObserver(Protocol):
    """Told of each launch (the daemon's metrics implement it)."""

    def observe_launch(self, seconds: float) -> None: ...
    def observe_queue_wait(self, seconds: float) -> None: ...
    def launch_failed(self) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class QueueStatistics:
    """A cheap snapshot: runs held back at the last claim, by kind of reason; launches now."""

    held: Mapping[str, int]
    launches_in_flight: int


class RunQueue(Protocol):
    """A coordinator's queue, as the daemon's queue loop drives it.

    The loop calls `dequeue` (claim what the limits allow, launch it) on each queue notice
    and every `poll_interval`, again while a call claims a full `launch_batch`; one call
    should end within `launch_timeout` (the loop's own timeout is twice that). The metrics
    read `statistics()`.
    """

    @property
    def poll_interval(self) -> float: ...
    @property
    def launch_timeout(self) -> float: ...
    @property
    def launch_batch(self) -> int: ...
    async def dequeue(self) -> list[runs.Run]: ...
    def statistics(self) -> QueueStatistics: ...


def log_submitted(stored: Sequence[runs.Run]) -> None:
    """One `run.submitted` line a run (a no-op in a CLI, which logs nothing at INFO)."""
    for run in stored:
        logger.info(
            "run %s of job %s submitted (%s)",
            run.run_id,
            run.job_name,
            run.status,
            extra={
                "event": "run.submitted",
                "run_id": run.run_id,
                "job": run.job_name,
                "location": run.code_location,
                "instigator": run.instigator,
                "status": run.status.value,
            },
        )


def log_launched(run: runs.Run, info: Mapping[str, object]) -> None:
    """One `run.launched` line: the launcher took the run and started its worker."""
    logger.info(
        "run %s of job %s launched",
        run.run_id,
        run.job_name,
        extra={
            "event": "run.launched",
            "run_id": run.run_id,
            "job": run.job_name,
            "pid": info.get("pid"),
        },
    )


def cli_claimer() -> str:
    """The claimer name of a process that is not a daemon (a CLI launching a run): its pid,
    start time (ms) and host, so a daemon on the same host can tell whether it still
    lives (`cli_claim_process`). At most 64 characters (the column's width)."""
    return claimer_of(psutil.Process())


def claimer_of(process: psutil.Process) -> str:
    """`cli_claimer` for a process of this host."""
    started = round(process.create_time() * 1000)
    return f"cli:{process.pid}:{started}@{socket.gethostname()}"[:64]


def cli_claim_alive(claimer: str | None) -> bool | None:
    """Whether the CLI process that made a claim still runs: True or False when it is of
    this host, None when that cannot be told (another host, a daemon, an old claimer)."""
    if claimer is None or not claimer.startswith("cli:"):
        return None
    ident, _, host = claimer[4:].partition("@")
    pid, _, started = ident.partition(":")
    here = socket.gethostname()
    if not (pid.isdigit() and started.isdigit() and host) or not here.startswith(host):
        return None
    try:
        return claimer_of(psutil.Process(int(pid))) == claimer
    except psutil.Error:
        return False


class RunCoordinator(abc.ABC):
    """Takes submitted runs (status NOT_STARTED) to a launch, now or later.

    `claimer` names this process in the claims it makes (a daemon's id; `cli:...` for a
    CLI): a claim whose claimer is gone and that was never launched is launched again by
    a daemon (`relaunch_orphans`).
    """

    Options: ClassVar[type[pydantic.BaseModel]] = NoOptions

    def __init__(
        self,
        options: pydantic.BaseModel,
        store: CoordinatorStore,
        launcher: launchers.RunLauncher,
        clock: Clock,
        claimer: str | None = None,
        observer: LaunchObserver | None = None,
    ) -> None:
        self.options = options
        self.store = store
        self.launcher = launcher
        self.clock = clock
        self.claimer = claimer or cli_claimer()
        self.observer = observer
        self._launching_ids: set[str] = set()

    def launching(self) -> Collection[str]:
        """The runs this process is launching now: claimed, their launch not yet ended."""
        return self._launching_ids

    def run_queue(self) -> RunQueue | None:
        """The queue the daemon's queue loop drives; None (the default): runs are launched
        when submitted or due, and the daemon runs no queue loop."""
        return None

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
        run = await self.store.request_cancel(run_id, self.clock())
        if run.status is S.CANCELING and not await self.launcher.terminate(run):
            await self._end(run, S.CANCELING, S.CANCELED, "no live worker", R.CANCELED)
            return await self.store.get_run(run_id)
        return run

    async def settle_cancel(self, run_id: str) -> runs.Run:
        """End a CANCELING run CANCELED if its worker is gone without having ended it."""
        run = await self.store.get_run(run_id)
        if run.status is not S.CANCELING:
            return run
        check = await self.launcher.check_worker_health(run)
        if check.health is launchers.WorkerHealth.DEAD:
            message = f"worker gone before it ended the run ({check.detail})"
            await self._end(run, S.CANCELING, S.CANCELED, message, R.CANCELED)
        return await self.store.get_run(run_id)

    async def launch(self, run: runs.Run) -> runs.Run:
        """Claim a run (its status -> STARTING, a new launch token) and hand it to the launcher."""
        claimed = await self.store.claim_run(run.run_id, run.status, self.clock(), self.claimer)
        if claimed is None:
            return await self.store.get_run(run.run_id)
        return await self.start_worker(claimed)

    async def start_worker(self, run: runs.Run) -> runs.Run:
        """Give a claimed (STARTING) run its worker; a LaunchError ends the run FAILURE."""
        self._launching_ids.add(run.run_id)
        try:
            try:
                info = await self.launcher.launch(run)
            except errors.LaunchError as exc:
                await self._end(run, S.STARTING, S.FAILURE, str(exc), R.LAUNCH_FAILED)
                raise
            launch = store_mod.Launch(run.run_id, run.launch_token, info)
            await self.store.record_launches([launch], self.clock())
        finally:
            self._launching_ids.discard(run.run_id)
        log_launched(run, info)
        # As launched; the worker may already have moved it on (no re-read on this hot path).
        return dataclasses.replace(run, status=S.STARTING, launcher_info=dict(info))

    async def launch_due(self, instigator: str, limit: int = DUE_BATCH) -> list[runs.Run]:
        """Launch this instigator's runs inserted ahead of their due time (or inserted by a
        process that died before launching them), now that they are due.

        Each launch is the conditional claim, so a run launched by someone else meanwhile
        is skipped. A coordinator that queues runs returns [] (its queue claims them when
        due).
        """
        launched = []
        for run in await self.store.due_runs(instigator, self.clock(), limit):
            with contextlib.suppress(errors.LaunchError):  # it ended FAILURE with the error
                launched.append(await self.launch(run))
        return launched

    async def relaunch_orphans(
        self, live_claimers: Collection[str], claimed_before: float
    ) -> list[runs.Run]:
        """Launch again the claims nobody will launch: STARTING, no launch recorded, their
        claimer not live (and not this process), claimed before `claimed_before`.

        Each takes a new launch token first (conditional on the old one), so a worker of
        the old claim, if one was started after all, loses its start: never two workers.
        """
        live = {*live_claimers, self.claimer}
        return await self.launch_orphans(await self.store.orphaned_claims(live, claimed_before))

    async def launch_orphans(self, orphans: Sequence[runs.Run]) -> list[runs.Run]:
        """Launch again these orphaned claims (as `orphaned_claims` found them), each under
        a new launch token taken first; returns those it took (none moved on meanwhile)."""
        taken: list[runs.Run] = []
        for orphan in orphans:
            message = (
                f"claimed by {orphan.claimed_by or 'an older vigil'}, which is gone, and "
                f"never launched; launching again (claimed by {self.claimer})"
            )
            if orphan.claimed_by == self.claimer:
                message = (
                    "claimed by this daemon, which did not learn of its claim (the store "
                    "went away as it committed), and never launched; launching again"
                )
            event = self._event(orphan.run_id, events.EventType.ENGINE, message)
            run = await self.store.reclaim_launch(
                orphan.run_id, orphan.launch_token, self.clock(), self.claimer, event
            )
            if run is not None:
                taken.append(run)
                logger.warning(message, extra={"event": "run.relaunched", "run_id": run.run_id})
        await self._launch_claimed_runs(taken)
        return taken

    async def _launch_claimed_runs(self, claimed: Sequence[runs.Run]) -> None:
        """Launch runs this process claimed; a failed launch ends its run FAILURE."""
        for run in claimed:
            with contextlib.suppress(errors.LaunchError):
                await self.start_worker(run)

    async def _end(
        self,
        run: runs.Run,
        expected: runs.RunStatus,
        status: runs.RunStatus,
        message: str,
        reason: runs.EndReason | None = None,
    ) -> bool:
        """End a run this coordinator holds; guarded by the launch token when it has one."""
        end = runs.RunEnd(status, message, reason, by="coordinator")
        token = run.launch_token if expected is S.STARTING else None
        return await self.store.end_run(run.run_id, expected, end, self.clock(), token=token)

    def _event(self, run_id: str, kind: events.EventType, message: str) -> events.NewEvent:
        return events.NewEvent(
            run_id=run_id, event_type=kind, timestamp=self.clock(), message=message
        )
