"""What the scheduler and sensor loops share: the catalog, run submission, tick endings.

`Instigation` holds the evaluation processes (`pool`), the store and the coordinator. It
reads the code locations' catalogs (the daemon never imports user code: each evaluation
process reports what its location defines), turns an evaluation's answer into runs
submitted with their run keys, and ends ticks, counting them for the metrics.

Exactly once: a run is submitted with (instigator, run key); a key the instigator already
used raises `DuplicateRunKey`, and the run already submitted is taken instead. A tick that
was interrupted (the daemon died) is evaluated again and makes the same keys, so it
completes without duplicating or losing a run.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import math
import uuid
import zoneinfo
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import anyio

from vigil import errors, runs, ticks
from vigil.coordinators import base as coordinators
from vigil.daemon import clock as clock_mod
from vigil.daemon import leases as leases_mod
from vigil.daemon import loop as loop_mod
from vigil.daemon import precedence as precedence_mod
from vigil.evaluation import messages
from vigil.evaluation import pool as pool_mod
from vigil.scheduling import cron as cron_mod
from vigil.scheduling import ticks as tick_times
from vigil.storage import store as store_mod

logger = logging.getLogger(__name__)
ACTIVE_STATUSES = frozenset(runs.RunStatus) - runs.TERMINAL_STATUSES
TickCounts = Mapping[tuple[str, str], int]
KeyOf = Callable[[int, messages.RequestedRun], str]
# One tick's requested runs: the tick, its code location, the requests, their run keys.
Submission = tuple[ticks.Tick, str, Sequence[messages.RequestedRun], KeyOf]


class LoopStore(store_mod.InstigationStore, store_mod.RunReader, store_mod.EventReader, Protocol):
    """What the scheduler and sensor loops read and write themselves (they submit runs
    through the coordinator): instigators and ticks, the runs they made, the event log
    (run status sensors follow it)."""


class TickObserver(Protocol):
    """Told of each evaluation as it happens (the daemon's metrics implement it)."""

    def observe_tick_delay(self, kind: str, seconds: float) -> None: ...
    def observe_evaluation(self, kind: str, seconds: float) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleInfo:
    location: str
    name: str
    cron: cron_mod.Cron
    zone: zoneinfo.ZoneInfo
    default_status: ticks.InstigatorStatus
    catchup: tick_times.Catchup
    max_catchup_ticks: int
    overlap: tick_times.Overlap
    timeout: float

    @property
    def instigator(self) -> str:
        return ticks.instigator_id(ticks.InstigatorKind.SCHEDULE, self.name)


@dataclasses.dataclass(frozen=True, slots=True)
class SensorInfo:
    location: str
    name: str
    minimum_interval: float
    default_status: ticks.InstigatorStatus
    timeout: float
    run_status: runs.RunStatus | None
    monitored_jobs: tuple[str, ...]

    @property
    def instigator(self) -> str:
        return ticks.instigator_id(ticks.InstigatorKind.SENSOR, self.name)


def schedule_info(location: str, data: Mapping[str, Any]) -> ScheduleInfo:
    return ScheduleInfo(
        location=location,
        name=data["name"],
        cron=cron_mod.parse_cron(data["cron"]),
        zone=cron_mod.parse_zone(data["timezone"]),
        default_status=ticks.InstigatorStatus(data["default_status"]),
        catchup=tick_times.Catchup(data["catchup"]),
        max_catchup_ticks=int(data["max_catchup_ticks"]),
        overlap=tick_times.Overlap(data["overlap"]),
        timeout=float(data["timeout"]),
    )


def sensor_info(location: str, data: Mapping[str, Any]) -> SensorInfo:
    status = data.get("run_status")
    return SensorInfo(
        location=location,
        name=data["name"],
        minimum_interval=float(data["minimum_interval"]),
        default_status=ticks.InstigatorStatus(data["default_status"]),
        timeout=float(data["timeout"]),
        run_status=runs.RunStatus(status) if status else None,
        monitored_jobs=tuple(data.get("monitored_jobs", ())),
    )


def is_running(default: ticks.InstigatorStatus, state: ticks.InstigatorState | None) -> bool:
    """The operator's status when one was set, else the definition's default."""
    if state is not None and state.status is not ticks.InstigatorStatus.DEFAULT:
        return state.status is ticks.InstigatorStatus.RUNNING
    return default is ticks.InstigatorStatus.RUNNING


@dataclasses.dataclass(frozen=True, slots=True)
class InstigationStatistics:
    """A snapshot: ticks ended by (kind, status), evaluation timeouts by kind, and the
    instigators the loops know by (kind, running or stopped)."""

    ticks: TickCounts
    timeouts: Mapping[str, int]
    instigators: TickCounts


class Instigation:
    """The evaluation pool, store and coordinator, as the two loops use them; `observer`,
    when given, is told of each evaluation (the daemon's metrics)."""

    def __init__(
        self,
        pool: pool_mod.EvaluatorPool,
        store: LoopStore,
        coordinator: coordinators.RunCoordinator,
        clock: clock_mod.Clock,
        observer: TickObserver | None = None,
        precedence: precedence_mod.Precedence | None = None,
        keeper: leases_mod.Keeper | None = None,
    ) -> None:
        self.pool = pool
        self.keeper = keeper
        self.store = store
        self.clock = clock
        self.observer = observer
        # The loops' iterations are prompt work: a backfill's chunks give way to them.
        self.precedence = precedence if precedence is not None else precedence_mod.Precedence()
        self._coordinator = coordinator
        self._ticks: collections.Counter[tuple[str, str]] = collections.Counter()
        self._timeouts: collections.Counter[str] = collections.Counter()
        self._instigators: dict[str, dict[tuple[str, str], int]] = {}
        self._errors_logged: dict[str, str] = {}
        self._owned: dict[str, frozenset[str]] = {}  # by prefix, as of the last `own`

    def statistics(self) -> InstigationStatistics:
        merged: collections.Counter[tuple[str, str]] = collections.Counter()
        for counts in self._instigators.values():
            merged.update(counts)
        return InstigationStatistics(dict(self._ticks), dict(self._timeouts), dict(merged))

    def count_instigators(self, kind: str, known: int, running: int) -> None:
        self._instigators[kind] = {(kind, "running"): running, (kind, "stopped"): known - running}

    async def catalogs(self) -> list[pool_mod.LocationCatalog]:
        """The catalogs of the locations that can answer now. A location still loading
        (slow, or hanging until its load timeout) is left out: its instigators wait for it,
        and nobody else waits (the pool wakes the loops when a load ends)."""
        found = await self.pool.catalogs()
        for catalog in found:
            self._log_load_error(catalog)
        return [catalog for catalog in found if not catalog.loading]

    def _log_load_error(self, catalog: pool_mod.LocationCatalog) -> None:
        error = catalog.error
        if error is None:
            self._errors_logged.pop(catalog.location, None)
        elif self._errors_logged.get(catalog.location) != error:
            self._errors_logged[catalog.location] = error
            logger.error(
                "%s",
                error,
                extra={"event": "location.load_failed", "location": catalog.location},
            )

    def observe(self, kind: str, delay: float | None, seconds: float | None) -> None:
        if self.observer is None:
            return
        if delay is not None:
            self.observer.observe_tick_delay(kind, delay)
        if seconds is not None:
            self.observer.observe_evaluation(kind, seconds)

    async def own(self, prefix: str, units: Sequence[str]) -> tuple[frozenset[str], bool]:
        """This daemon's share of these instigators (all of them without a keeper), and
        whether it gained any since the last call (their last ticks must be read again:
        another daemon may have ticked them)."""
        owned = frozenset(units)
        if self.keeper is not None:
            owned = await self.keeper.share(prefix, units)
        gained = bool(owned - self._owned.get(prefix, frozenset()))
        self._owned[prefix] = owned
        return owned, gained

    async def finish(self, outcomes: Sequence[ticks.TickOutcome]) -> None:
        """End the ticks, fenced by this daemon's leases: a tick of an instigator another
        daemon took over is not recorded (its new owner takes it up)."""
        if not outcomes:
            return
        fence = None
        if self.keeper is not None:
            fence = self.keeper.fence({o.instigator for o in outcomes})
        refused = set(await self.store.finish_ticks(outcomes, self.clock.now(), fence))
        if refused:
            outcomes = self._refused(outcomes, refused)
        for outcome in outcomes:
            kind, _ = ticks.split_id(outcome.instigator)
            self._ticks[(kind.value, outcome.status.value)] += 1
            log_tick(outcome)

    def _refused(
        self, outcomes: Sequence[ticks.TickOutcome], refused: set[int]
    ) -> list[ticks.TickOutcome]:
        """Tell the keeper and the log of the ticks fencing refused; the others."""
        lost = sorted({o.instigator for o in outcomes if o.tick_id in refused})
        assert self.keeper is not None
        self.keeper.lost(lost)
        logger.warning(
            "%d ticks were not recorded: this daemon no longer owns %s",
            len(refused),
            ", ".join(lost),
            extra={"event": "tick.fenced", "instigators": lost, "tick_ids": sorted(refused)},
        )
        return [o for o in outcomes if o.tick_id not in refused]

    def count_missed(self, count: int) -> None:
        self._ticks[(ticks.InstigatorKind.SCHEDULE.value, ticks.TickStatus.MISSED.value)] += count

    def outcome(
        self,
        tick: ticks.Tick,
        result: pool_mod.Result,
        run_ids: Sequence[str] = (),
        error: str | None = None,
    ) -> ticks.TickOutcome:
        """The tick's ending from its evaluation's result and the runs it submitted."""
        kind, _ = ticks.split_id(tick.instigator)
        if result.timed_out:
            self._timeouts[kind.value] += 1
        if not result.ok or error is not None:
            failed = ticks.TickStatus.FAILED
            return ticks.TickOutcome(
                tick.tick_id, tick.instigator, failed, tuple(run_ids), error or result.error
            )
        if run_ids:
            return ticks.TickOutcome(
                tick.tick_id, tick.instigator, ticks.TickStatus.SUCCESS, tuple(run_ids)
            )
        skip = result.answer.skip
        return ticks.TickOutcome(tick.tick_id, tick.instigator, ticks.TickStatus.SKIPPED, (), skip)

    async def submit_chunk(self, items: Sequence[Submission]) -> list[tuple[list[str], str | None]]:
        """Submit the runs of several ticks; per tick, its run ids and an error that stopped it.

        All in one `submit_many` (one transaction with the queued coordinator). If that is
        refused (a run key already used: ticks taken up again after a crash; or a launch
        that failed), each run is submitted on its own instead, taking the run already
        stored for a key used before: the same runs, once each, just slower.
        """
        made = [
            [self._new_run(tick, location, r, key_of(i, r)) for i, r in enumerate(requests)]
            for tick, location, requests, key_of in items
        ]
        flat = [run for group in made for run in group]
        if flat:
            try:
                await self._coordinator.submit_many(flat)
            except (
                errors.DuplicateRun,
                errors.LaunchError,
                errors.RunConfigError,
                errors.NotFound,
            ):
                return [await self._submit_each(group) for group in made]
        return [([run.run_id for run in group], None) for group in made]

    async def _submit_each(self, group: Sequence[runs.Run]) -> tuple[list[str], str | None]:
        run_ids: list[str] = []
        for run in group:
            try:
                run_ids.append(await self._submit_once(run))
            except (errors.LaunchError, errors.RunConfigError, errors.NotFound) as exc:
                return run_ids, f"{type(exc).__name__}: {exc}"
        return run_ids, None

    async def _submit_once(self, run: runs.Run) -> str:
        try:
            await self._coordinator.submit(run)
        except errors.DuplicateRunKey:
            assert run.instigator is not None
            assert run.run_key is not None
            found = await self.store.get_run_by_key(run.instigator, run.run_key)
            if found is None:
                raise
            return found.run_id
        except errors.LaunchError:
            return run.run_id
        return run.run_id

    def _new_run(
        self, tick: ticks.Tick, location: str, request: messages.RequestedRun, run_key: str
    ) -> runs.Run:
        kind, name = ticks.split_id(tick.instigator)
        run_id = str(uuid.uuid4())
        now = self.clock.now()
        tags = {**request.tags, f"vigil/{kind.value}": name, "vigil/tick": str(tick.tick_id)}
        return runs.Run(
            run_id=run_id,
            job_name=request.job,
            status=runs.RunStatus.NOT_STARTED,
            run_config=dict(request.run_config),
            tags=tags,
            code_location=location,
            root_run_id=run_id,
            created_at=now,
            updated_at=now,
            instigator=tick.instigator,
            run_key=run_key,
        )


class DueTimer:
    """Wakes a loop when its next tick is due; the loop tells it each new due time.

    A service: `run` waits for the due time or a change of it, whichever comes first, and
    sets the loop's wake-up at the due time. So the loop sleeps until its next due tick,
    not a fixed poll; its interval only bounds how late it sees an operator's change.
    """

    def __init__(self, clock: clock_mod.Clock, wake: Callable[[], None]) -> None:
        self._clock = clock
        self._wake = wake
        self._due: float | None = None
        self._changed = anyio.Event()

    @property
    def due(self) -> float | None:
        return self._due

    def set_due(self, due: float | None) -> None:
        self._due = due
        self._changed.set()

    async def run(self) -> None:
        while True:
            self._changed = anyio.Event()
            due = self._due
            if due is None:
                await self._changed.wait()
                continue
            if await clock_mod.wait_any(self._clock, due, self._changed):
                continue
            self._wake()
            await self._changed.wait()


class Lanes:
    """Each code location's evaluations in flight, which may outlive an iteration.

    A loop hands each location's ticks to that location's lane (one batch a location at a
    time, run in the pool's task group) and waits until they all end or the loop is woken
    (its next tick is due, a load ended). A lane still running then goes on alone: the loop
    plans around its location (`busy`) and leaves its ticks alone, and the lane wakes the
    loop when it ends. So an evaluation that hangs until its timeout holds back only the
    instigators of its own location. A lane that fails (the store went away) is logged;
    its ticks stay STARTED and the next iteration takes them up, as after a crash.
    """

    def __init__(self, shared: Instigation, wake: loop_mod.Wakeup, kind: str) -> None:
        self._pool = shared.pool
        self._clock = shared.clock
        self._wake = wake
        self._kind = kind
        self._busy: set[str] = set()
        self._idle = anyio.Event()
        self._idle.set()

    def busy(self) -> frozenset[str]:
        return frozenset(self._busy)

    async def join(self) -> None:
        """Until no lane runs (the daemon drains them as it stops)."""
        await self._idle.wait()

    async def run(
        self,
        ticks_by_location: Mapping[str, Sequence[ticks.Tick]],
        work: Callable[[Sequence[ticks.Tick]], Awaitable[None]],
    ) -> None:
        """Start a lane per location; return once all end or the loop is woken."""
        if not ticks_by_location:
            return
        batch = _Batch(set(ticks_by_location))
        if self._idle.is_set():
            self._idle = anyio.Event()
        for location, found in ticks_by_location.items():
            self._busy.add(location)
            self._pool.spawn(functools.partial(self._lane, location, found, work, batch))
        await clock_mod.wait_any(self._clock, math.inf, batch.done, self._wake)
        batch.detached = not batch.done.is_set()

    async def _lane(
        self,
        location: str,
        found: Sequence[ticks.Tick],
        work: Callable[[Sequence[ticks.Tick]], Awaitable[None]],
        batch: _Batch,
    ) -> None:
        try:
            await work(found)
        except Exception as exc:
            logger.error(
                "%s evaluations of code location %s failed: %s",
                self._kind,
                location,
                exc,
                exc_info=exc,
                extra={"event": "lane.failed", "location": location, "error": str(exc)},
            )
        finally:
            self._busy.discard(location)
            if not self._busy:
                self._idle.set()
            batch.left.discard(location)
            if not batch.left:
                batch.done.set()
            if batch.detached:  # it outlived its iteration: its location is free again
                self._wake.set()


@dataclasses.dataclass
class _Batch:
    left: set[str]
    done: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    detached: bool = False


def log_tick(outcome: ticks.TickOutcome) -> None:
    """The `tick.evaluated` line: the tick's outcome, its runs, its error or skip reason."""
    failed = outcome.status is ticks.TickStatus.FAILED
    runs_part = f", runs {' '.join(outcome.run_ids)}" if outcome.run_ids else ""
    why = f": {outcome.error}" if outcome.error else ""
    logger.log(
        logging.WARNING if failed else logging.INFO,
        "tick %s of %s: %s%s%s",
        outcome.tick_id,
        outcome.instigator,
        outcome.status,
        runs_part,
        why,
        extra={
            "event": "tick.evaluated",
            "instigator": outcome.instigator,
            "tick_id": outcome.tick_id,
            "status": outcome.status.value,
            "run_ids": list(outcome.run_ids),
            "error": outcome.error,
        },
    )


def by_location(
    pending: Sequence[ticks.Tick], location_of: Callable[[ticks.Tick], str]
) -> dict[str, list[ticks.Tick]]:
    """The ticks of each location, in their order."""
    found: dict[str, list[ticks.Tick]] = {}
    for tick in pending:
        found.setdefault(location_of(tick), []).append(tick)
    return found
