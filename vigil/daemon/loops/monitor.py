"""The run monitor loop: every in-flight run either ends or is ended, with the reason.

Each iteration reads the in-flight runs (STARTING, STARTED, CANCELING), applies the limits
(`monitoring.deadline_action`), asks the launcher about the workers that need a look, all
at once under a concurrency limit and each within `health_check_timeout` (a check that
times out or raises counts as UNKNOWN), and acts on each verdict
(`monitoring.health_action`): end the run FAILURE or CANCELED with an event saying why
(then stop or kill whatever worker is left), or give it a new worker that resumes it.

It iterates every `poll_interval`, and at once when the launcher tells of a worker's exit
(`relay_exits`): a worker this daemon launched is handled the moment it dies; one launched
by another process (a CLI, an earlier daemon) is found by the poll.

With many daemons, the in-flight runs are split into `daemon.monitor_shards` shards by a
hash of the run id (`leases.monitor_unit`); each daemon watches the shards it holds leases
on, and each of its decisions (end, resume) is fenced by its shard's lease: a daemon that
lost the shard while it was paused cannot act on a run another daemon now watches.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import anyio
import anyio.abc

from vigil import errors, events, monitoring, runs
from vigil.config import settings as settings_mod
from vigil.daemon import clock as clock_mod
from vigil.daemon import leases as leases_mod
from vigil.daemon import loop
from vigil.daemon import orphans as orphans_mod
from vigil.launchers import base as launchers
from vigil.storage import store as store_mod

logger = logging.getLogger(__name__)
S = runs.RunStatus
K = monitoring.Kind
E = events.EventType
MIN_TIMEOUT = 60.0
EXIT_PASS_SPACING = 0.1  # seconds between two monitor passes set off by worker exits


class MonitorStore(store_mod.RunStore, store_mod.EventWriter, Protocol):
    """The in-flight runs and their state verbs (end, resume, record the launch), and the
    event log for the monitor's notes."""


@dataclasses.dataclass(frozen=True, slots=True)
class MonitorStatistics:
    """Runs the monitor ended, by reason; workers it resumed; workers of unknown health now;
    orphaned claims it launched again."""

    ended: Mapping[str, int]
    resumes: int
    unknown: int
    relaunched: int = 0  # orphaned claims launched again (see `vigil.daemon.orphans`)


class MonitorLoop(loop.Loop):
    name = "monitor"

    def __init__(
        self,
        store: MonitorStore,
        launcher: launchers.RunLauncher,
        clock: clock_mod.Clock,
        settings: settings_mod.RunMonitoringSettings,
        claimer: str,
        orphans: orphans_mod.Relauncher | None = None,
        keeper: leases_mod.Keeper | None = None,
        shards: int = 1,
    ) -> None:
        super().__init__()
        self._keeper = keeper
        self._shards = shards
        self._units = leases_mod.monitor_units(shards)
        self._store = store
        self._launcher = launcher
        self._clock = clock
        self._settings = settings
        self._claimer = claimer
        self._orphans = orphans
        self.interval = settings.poll_interval
        self.timeout = max(MIN_TIMEOUT, settings.health_check_timeout * 3)
        self._limits = monitoring.Limits(
            start_timeout=settings.start_timeout,
            cancel_timeout=settings.cancel_timeout,
            max_resume_attempts=settings.max_resume_attempts,
            unknown_grace=settings.unknown_grace,
            poll_interval=settings.poll_interval,
            max_runtime=settings.max_runtime,
        )
        self._suspicions: dict[str, monitoring.Suspicion] = {}
        self._bad_tags: set[str] = set()
        self._ended: collections.Counter[str] = collections.Counter()
        self._resumes = 0
        self._relaunched = 0

    def statistics(self) -> MonitorStatistics:
        return MonitorStatistics(
            dict(self._ended), self._resumes, len(self._suspicions), self._relaunched
        )

    def due_sooner(self) -> float | None:
        """Sooner than the poll when a claim will be old enough to count as orphaned."""
        return None if self._orphans is None else self._orphans.next_due

    async def iterate(self) -> None:
        if self._keeper is not None:
            await self._keeper.share(leases_mod.MONITOR, self._units)
        if self._orphans is not None:
            taken = await self._orphans.relaunch(self._clock.now(), self._owns)
            self._relaunched += len(taken)
        in_flight = await self._store.list_runs(
            store_mod.RunFilter(statuses=tuple(runs.IN_FLIGHT_STATUSES))
        )
        in_flight = [run for run in in_flight if self._owns(run)]
        self._forget_all_but({run.run_id for run in in_flight})
        now = self._clock.now()
        to_check: list[runs.Run] = []
        for run in in_flight:
            action = monitoring.deadline_action(run, now, self._limits, await self._runtime(run))
            if action is not None:
                await self._apply(run, action)
            elif monitoring.wants_check(run, now, self._suspicions.get(run.run_id)):
                to_check.append(run)
        checks = await self._check_all(to_check)
        now = self._clock.now()
        for run in to_check:
            action = monitoring.health_action(
                run,
                checks[run.run_id],
                now,
                self._limits,
                self._suspicions.get(run.run_id),
                self._launcher.supports_resume,
            )
            await self._apply(run, action)

    def _owns(self, run: runs.Run) -> bool:
        """Whether this daemon watches the run (its shard's lease; always, alone)."""
        return self._keeper is None or self._keeper.holds(self._unit(run))

    def _unit(self, run: runs.Run) -> str:
        return leases_mod.monitor_unit(run.run_id, self._shards)

    def _fence(self, run: runs.Run) -> store_mod.Fence | None:
        return None if self._keeper is None else self._keeper.fence([self._unit(run)])

    def _forget_all_but(self, in_flight: set[str]) -> None:
        for run_id in set(self._suspicions) - in_flight:
            del self._suspicions[run_id]
        self._bad_tags &= in_flight

    async def _runtime(self, run: runs.Run) -> float | None:
        """The run's max runtime; a bad tag is reported once and the default used."""
        try:
            return monitoring.max_runtime(run, self._limits.max_runtime)
        except errors.TagError as exc:
            if run.run_id not in self._bad_tags:
                self._bad_tags.add(run.run_id)
                message = f"{exc}; the instance default applies"
                await self._store.append_events([self._event(run, E.ENGINE, message, "ERROR")])
                logger.error(message, extra={"event": "run.bad_tag", "run_id": run.run_id})
            return self._limits.max_runtime

    # health checks ---------------------------------------------------------------------
    async def _check_all(self, to_check: Sequence[runs.Run]) -> dict[str, launchers.HealthCheck]:
        """Every run's health check at once, each bounded; a failed check is UNKNOWN."""
        results: dict[str, launchers.HealthCheck] = {}
        limiter = anyio.CapacityLimiter(self._settings.max_concurrent_checks)
        async with anyio.create_task_group() as tg:
            for run in to_check:
                tg.start_soon(self._check_one, run, limiter, results)
        return results

    async def _check_one(
        self,
        run: runs.Run,
        limiter: anyio.CapacityLimiter,
        results: dict[str, launchers.HealthCheck],
    ) -> None:
        limit = self._settings.health_check_timeout
        unknown = launchers.WorkerHealth.UNKNOWN
        results[run.run_id] = launchers.HealthCheck(
            unknown, f"the health check took more than {monitoring.seconds(limit)} s"
        )
        async with limiter:
            with anyio.move_on_after(limit):
                try:
                    results[run.run_id] = await self._launcher.check_worker_health(run)
                except Exception as exc:
                    detail = f"the health check raised {type(exc).__name__}: {exc}"
                    results[run.run_id] = launchers.HealthCheck(unknown, detail)

    # actions -----------------------------------------------------------------------------
    async def _apply(self, run: runs.Run, action: monitoring.Action) -> None:
        try:
            await self._act(run, action)
        except errors.LeaseLost as exc:
            assert self._keeper is not None
            self._keeper.lost([self._unit(run)])
            logger.warning(
                "run %s: not acted on: %s",
                run.run_id,
                exc,
                extra={"event": "monitor.fenced", "run_id": run.run_id},
            )

    async def _act(self, run: runs.Run, action: monitoring.Action) -> None:
        if action.kind is K.KEEP:
            self._remember(run.run_id, action.suspicion)
        elif action.kind is K.FAIL:
            await self._fail(run, action)
        elif action.kind is K.CANCEL:
            await self._cancel(run, action)
        else:
            await self._resume(run, action)

    def _remember(self, run_id: str, suspicion: monitoring.Suspicion | None) -> None:
        if suspicion is None:
            self._suspicions.pop(run_id, None)
        else:
            self._suspicions[run_id] = suspicion

    async def _fail(self, run: runs.Run, action: monitoring.Action) -> None:
        if await self._end(run, S.FAILURE, action):
            await self._launcher.terminate(run)

    async def _cancel(self, run: runs.Run, action: monitoring.Action) -> None:
        if action.kill:
            await self._launcher.kill(run)
        await self._end(run, S.CANCELED, action)

    async def _end(
        self,
        run: runs.Run,
        status: runs.RunStatus,
        action: monitoring.Action,
        token: str | None = None,
    ) -> bool:
        reason = action.reason.value if action.reason else None
        end = runs.RunEnd(status, action.message, action.reason, by="monitor")
        now = self._clock.now()
        fence = self._fence(run)
        won = await self._store.end_run(run.run_id, run.status, end, now, token=token, fence=fence)
        if won:
            self._suspicions.pop(run.run_id, None)
            self._ended[reason or "unknown"] += 1
            logger.warning(
                "run %s ended %s: %s",
                run.run_id,
                status,
                action.message,
                extra={
                    "event": "run.ended_by_monitor",
                    "run_id": run.run_id,
                    "status": status.value,
                    "reason": reason,
                },
            )
        return won

    async def _resume(self, run: runs.Run, action: monitoring.Action) -> None:
        """A new worker for a STARTED run whose worker died, once per resume attempt.

        `resume_run` takes the attempt (conditional on the one before it) and a new launch
        token in one transaction: a daemon killed after it never resumes one attempt twice,
        and the dead worker's token no longer counts.
        """
        data = {"reason": runs.EndReason.WORKER_DIED.value, "resume_attempt": action.resume_attempt}
        event = dataclasses.replace(
            self._event(run, E.ENGINE, action.message, "WARNING"), data=data
        )
        now = self._clock.now()
        taken = await self._store.resume_run(
            run.run_id,
            run.status,
            action.resume_attempt,
            now,
            self._claimer,
            event,
            self._fence(run),
        )
        if taken is None:
            return  # it moved on since it was read (it ended, or was resumed already)
        try:
            if taken.status is S.STARTING:  # its worker died before it started: nothing ran
                info = await self._launcher.launch(taken)
            else:
                info = await self._launcher.resume(taken)
        except errors.LaunchError as exc:
            failed = monitoring.Action(
                K.FAIL, runs.EndReason.WORKER_DIED, f"{action.message}, which failed: {exc}"
            )
            await self._end(taken, S.FAILURE, failed, token=taken.launch_token)
            return
        launch = store_mod.Launch(run.run_id, taken.launch_token, info)
        await self._store.record_launches([launch], self._clock.now())
        self._suspicions.pop(run.run_id, None)
        self._resumes += 1
        logger.warning(
            "run %s: %s",
            run.run_id,
            action.message,
            extra={
                "event": "run.resumed",
                "run_id": run.run_id,
                "resume_attempt": action.resume_attempt,
            },
        )

    def _event(
        self, run: runs.Run, kind: E, message: str, level: str | None = None
    ) -> events.NewEvent:
        return events.NewEvent(
            run_id=run.run_id,
            event_type=kind,
            timestamp=self._clock.now(),
            level=level,
            message=message,
        )


async def relay_exits(
    launcher: launchers.RunLauncher,
    monitor_wake: loop.Wakeup | None,
    *others: loop.Wakeup,
    spacing: float = EXIT_PASS_SPACING,
) -> None:
    """Forever: turn the launcher's worker-exit notices into wake-ups.

    The other loops are woken at once. The monitor is woken at most once every `spacing`
    seconds, since each of its passes checks every run in flight: a burst of exits (a busy
    queue) makes one pass, and each exit is still looked at within `spacing` of its notice.
    """
    throttled = None if monitor_wake is None else _Spaced(monitor_wake, spacing)
    async with anyio.create_task_group() as tg:
        while True:
            await launcher.wait_for_exits()
            for wake in others:
                wake.set()
            if throttled is not None:
                throttled.set(tg)


class _Spaced:
    """A wake-up set at most once every `spacing` seconds; a set in between is deferred."""

    def __init__(self, wake: loop.Wakeup, spacing: float) -> None:
        self._wake = wake
        self._spacing = spacing
        self._last = -math.inf
        self._deferred = False

    def set(self, tg: anyio.abc.TaskGroup) -> None:
        if self._deferred:
            return
        delay = self._last + self._spacing - anyio.current_time()
        if delay <= 0:
            self._fire()
            return
        self._deferred = True
        tg.start_soon(self._later, delay)

    async def _later(self, delay: float) -> None:
        await anyio.sleep(delay)
        self._deferred = False
        self._fire()

    def _fire(self) -> None:
        self._last = anyio.current_time()
        self._wake.set()
