"""The scheduler loop: every running schedule's ticks, once each, on time.

Each iteration:
1. reads the catalogs (what each code location's evaluation process reported) and the
   instigators' states; a schedule runs when an operator started it, or by its
   `default_status` until an operator says otherwise; with many daemons, each takes only
   the running schedules it holds leases on (`leases.Keeper.share`);
2. for each running schedule, computes the ticks due since its last tick (or since it was
   started), by the pure tick rules, and splits them by its catch-up policy: the ones to
   run are inserted STARTED, the others MISSED (in one transaction for all schedules);
   ticks left STARTED by a daemon that died are taken up again;
3. evaluates them in rounds (one tick of each schedule per round; a schedule that skips
   overlaps and still has a run in flight gets SKIPPED instead), in chunks evaluated
   concurrently and round-robin across code locations, submitting the chunk's runs with
   their run keys (one transaction with the queued coordinator) and ending the chunk's
   ticks in one transaction, fenced by the leases (a schedule taken over meanwhile by
   another daemon keeps its tick STARTED for its new owner);
4. tells the `DueTimer` when the next tick is due: the loop sleeps until then, or until its
   interval (`scheduling.poll_interval`) to see an operator's start or stop.

Old ticks are purged every `retention.purge_interval`.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
from collections.abc import Sequence

from vigil import ticks
from vigil.config import settings as settings_mod
from vigil.daemon import loop
from vigil.daemon.loops import instigation
from vigil.evaluation import messages
from vigil.evaluation import pool as pool_mod
from vigil.scheduling import ticks as tick_times

logger = logging.getLogger(__name__)
T = ticks.TickStatus
CHUNK = 128
MAX_MISSED_RECORDED = 100
MISSED_REASON = "missed while the daemon was not running (catch-up policy)"
DAY = 86400.0


@dataclasses.dataclass
class _Plan:
    run: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    missed: list[tuple[str, float]] = dataclasses.field(default_factory=list)


class SchedulerLoop(loop.Loop):
    name = "scheduler"

    def __init__(
        self, shared: instigation.Instigation, settings: settings_mod.SchedulingSettings
    ) -> None:
        super().__init__()
        self._shared = shared
        self._settings = settings
        self.interval = settings.poll_interval
        self.timeout = 300.0
        self.timer = instigation.DueTimer(shared.clock, self.wake.set)
        self._lanes = instigation.Lanes(shared, self.wake, "schedule")
        self._last: dict[str, float] | None = None
        self._next: dict[str, tuple[float, float]] = {}  # instigator -> (after, next tick)
        self._purged_at: float | None = None
        self._parsed: (
            tuple[tuple[pool_mod.LocationCatalog, ...], dict[str, instigation.ScheduleInfo]] | None
        ) = None

    async def reload(self, workspace: Sequence[settings_mod.CodeLocationSettings]) -> None:
        """SIGHUP: the evaluation processes (shared with the sensor loop) restart on the
        new workspace, importing the code afresh."""
        await self._shared.pool.reload(workspace)

    async def drain(self) -> None:
        """Ticks still being evaluated end before the daemon stops (within its grace)."""
        await self._lanes.join()

    async def iterate(self) -> None:
        async with self._shared.precedence.prompt():
            await self._iterate()

    async def _iterate(self) -> None:
        store, now = self._shared.store, self._shared.clock.now()
        schedules = await self._schedules()
        states = {s.name: s for s in await store.list_instigators()}
        running = [
            s
            for s in schedules.values()
            if instigation.is_running(s.default_status, states.get(s.instigator))
        ]
        self._shared.count_instigators("schedule", len(schedules), len(running))
        running = await self._owned(running)
        await self._ensure_states(running, states, now)
        last = await self._last_ticks()
        busy = self._lanes.busy()
        free = [s for s in running if s.location not in busy]
        plan = self._plan(free, states, last, now)
        started = await store.plan_ticks(plan.run, plan.missed, now, MISSED_REASON)
        self._shared.count_missed(len(plan.missed))
        pending = await self._with_interrupted(started, {s.instigator for s in free})
        for tick in pending:
            last[tick.instigator] = max(last.get(tick.instigator, 0.0), tick.scheduled_time)
        self.timer.set_due(self._next_due(free, states, last))
        lanes = instigation.by_location(pending, lambda t: schedules[t.instigator].location)
        await self._lanes.run(lanes, functools.partial(self._run, schedules=schedules))
        await self._purge(now)

    async def _owned(
        self, running: Sequence[instigation.ScheduleInfo]
    ) -> list[instigation.ScheduleInfo]:
        """The running schedules this daemon owns (its share, with many daemons)."""
        owned, gained = await self._shared.own("schedule:", [s.instigator for s in running])
        if gained:
            self._last = None  # their last ticks may be another daemon's: read them again
        return [s for s in running if s.instigator in owned]

    async def _schedules(self) -> dict[str, instigation.ScheduleInfo]:
        """The schedules of every catalog, parsed again only when a catalog changed."""
        catalogs = tuple(await self._shared.catalogs())
        if self._parsed is not None and self._parsed[0] == catalogs:
            return self._parsed[1]
        found: dict[str, instigation.ScheduleInfo] = {}
        for catalog in catalogs:
            for data in catalog.schedules:
                info = instigation.schedule_info(catalog.location, data)
                found[info.instigator] = info
        self._parsed = (catalogs, found)
        return found

    async def _ensure_states(
        self,
        running: Sequence[instigation.ScheduleInfo],
        states: dict[str, ticks.InstigatorState],
        now: float,
    ) -> None:
        """Running schedules without a state row get one: when they started to run."""
        missing = [s.instigator for s in running if s.instigator not in states]
        if not missing:
            return
        kind = ticks.InstigatorKind.SCHEDULE
        await self._shared.store.ensure_instigators([(name, kind) for name in missing], now)
        for state in await self._shared.store.list_instigators(missing):
            states[state.name] = state

    async def _last_ticks(self) -> dict[str, float]:
        if self._last is None:
            latest = await self._shared.store.latest_ticks()
            self._last = {name: tick.scheduled_time for name, tick in latest.items()}
        return self._last

    def _after(
        self,
        s: instigation.ScheduleInfo,
        states: dict[str, ticks.InstigatorState],
        last: dict[str, float],
    ) -> float:
        """Ticks are due after the last one, and never from before the schedule ran."""
        state = states.get(s.instigator)
        since = state.updated_at if state is not None else self._shared.clock.now()
        return max(last.get(s.instigator, since), since)

    def _next_tick(self, s: instigation.ScheduleInfo, after: float) -> float:
        cached = self._next.get(s.instigator)
        if cached is not None and cached[0] == after:
            return cached[1]
        found = tick_times.next_tick(s.cron, s.zone, after)
        self._next[s.instigator] = (after, found)
        return found

    def _plan(
        self,
        running: Sequence[instigation.ScheduleInfo],
        states: dict[str, ticks.InstigatorState],
        last: dict[str, float],
        now: float,
    ) -> _Plan:
        plan = _Plan()
        for s in running:
            after = self._after(s, states, last)
            first = self._next_tick(s, after)
            if first > now:
                continue
            keep = MAX_MISSED_RECORDED + s.max_catchup_ticks
            due = tick_times.due_ticks(s.cron, s.zone, after, now, keep, first)
            chosen = tick_times.plan_catchup(
                due, now, s.catchup, s.max_catchup_ticks, self._settings.catchup_grace
            )
            if due.times:
                self._next[s.instigator] = (due.times[-1], due.following)
            plan.run += [(s.instigator, t) for t in chosen.run]
            plan.missed += [(s.instigator, t) for t in chosen.missed]
            if chosen.unrecorded:
                logger.warning(
                    "schedule %s missed %s%d more ticks than are recorded",
                    s.name,
                    "" if chosen.counted else "at least ",
                    chosen.unrecorded,
                    extra={"event": "schedule.missed_unrecorded", "schedule": s.name},
                )
            if chosen.missed and not chosen.run:
                last[s.instigator] = chosen.missed[-1]
        return plan

    async def _with_interrupted(
        self, started: Sequence[ticks.Tick], running: set[str]
    ) -> list[ticks.Tick]:
        """The new STARTED ticks, and the ones a dead daemon left STARTED, oldest first."""
        fresh = [t for t in started if t.status is T.STARTED]
        left = await self._shared.store.list_ticks(statuses=[T.STARTED])
        pending = {t.tick_id: t for t in fresh}
        for tick in left:
            if tick.instigator in running:
                pending.setdefault(tick.tick_id, tick)
        return sorted(pending.values(), key=lambda t: (t.scheduled_time, t.tick_id))

    async def _run(
        self, pending: Sequence[ticks.Tick], *, schedules: dict[str, instigation.ScheduleInfo]
    ) -> None:
        for round_ in _rounds(pending):
            ready = await self._skip_overlaps(round_, schedules)
            for start in range(0, len(ready), CHUNK):
                await self._run_chunk(ready[start : start + CHUNK], schedules)

    async def _skip_overlaps(
        self, round_: Sequence[ticks.Tick], schedules: dict[str, instigation.ScheduleInfo]
    ) -> list[ticks.Tick]:
        ready: list[ticks.Tick] = []
        skipped: list[ticks.TickOutcome] = []
        for tick in round_:
            if schedules[tick.instigator].overlap is tick_times.Overlap.SKIP:
                busy = await self._shared.store.instigator_runs(
                    tick.instigator, statuses=instigation.ACTIVE_STATUSES, limit=1
                )
                if busy:
                    reason = f"run {busy[0].run_id} of this schedule is still in flight"
                    skipped.append(
                        ticks.TickOutcome(tick.tick_id, tick.instigator, T.SKIPPED, error=reason)
                    )
                    continue
            ready.append(tick)
        await self._shared.finish(skipped)
        return ready

    async def _run_chunk(
        self, chunk: Sequence[ticks.Tick], schedules: dict[str, instigation.ScheduleInfo]
    ) -> None:
        batch = [
            pool_mod.Evaluation(
                schedules[t.instigator].location,
                messages.ScheduleRequest(schedules[t.instigator].name, t.scheduled_time),
                schedules[t.instigator].timeout,
            )
            for t in chunk
        ]
        began = self._shared.clock.now()
        results = await self._shared.pool.evaluate_all(batch)
        for tick in chunk:
            self._shared.observe("schedule", began - tick.scheduled_time, None)
        answered = [(t, r) for t, r in zip(chunk, results, strict=True) if r.ok]
        submitted = await self._shared.submit_chunk(
            [
                (t, schedules[t.instigator].location, r.answer.requests, _key_of(t))
                for t, r in answered
            ]
        )
        made = {t.tick_id: s for (t, _), s in zip(answered, submitted, strict=True)}
        outcomes = [
            self._shared.outcome(t, r, *made[t.tick_id]) if r.ok else self._shared.outcome(t, r)
            for t, r in zip(chunk, results, strict=True)
        ]
        await self._shared.finish(outcomes)

    def _next_due(
        self,
        running: Sequence[instigation.ScheduleInfo],
        states: dict[str, ticks.InstigatorState],
        last: dict[str, float],
    ) -> float | None:
        due = [self._next_tick(s, self._after(s, states, last)) for s in running]
        return min(due, default=None)

    async def _purge(self, now: float) -> None:
        retention = self._settings.retention
        if self._purged_at is not None and now - self._purged_at < retention.purge_interval:
            return
        self._purged_at = now
        store = self._shared.store
        skipped = await store.purge_ticks(now - retention.skipped_days * DAY, [T.SKIPPED, T.MISSED])
        others = await store.purge_ticks(now - retention.other_days * DAY, [T.SUCCESS, T.FAILED])
        if skipped or others:
            logger.info(
                "purged %d skipped or missed and %d other ticks",
                skipped,
                others,
                extra={"event": "ticks.purged", "skipped": skipped, "others": others},
            )


def _rounds(pending: Sequence[ticks.Tick]) -> list[list[ticks.Tick]]:
    """Round k holds the k-th pending tick of each schedule (ticks oldest first)."""
    rounds: list[list[ticks.Tick]] = []
    seen: dict[str, int] = {}
    for tick in pending:
        k = seen.get(tick.instigator, 0)
        seen[tick.instigator] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(tick)
    return rounds


def _key_of(tick: ticks.Tick) -> instigation.KeyOf:
    """A schedule's run key: the tick's UTC time and the request's key (or its index)."""
    prefix = _utc(tick.scheduled_time)
    return lambda i, r: f"{prefix}/{r.run_key if r.run_key is not None else i}"


def _utc(instant: float) -> str:
    return datetime.datetime.fromtimestamp(instant, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
