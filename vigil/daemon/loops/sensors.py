"""The sensor loop: each running sensor evaluated at most every `minimum_interval`.

Each iteration reads the catalogs and states, takes up ticks a dead daemon left STARTED
(evaluated again as the same tick, so keyless requests get the same run keys; one a sensor
an iteration, and no new tick of that sensor beside it, since both would be evaluated from
the same cursor), starts a tick for each other sensor whose interval has passed,
evaluates them concurrently and round-robin across code locations, submits the requested
runs (a run key is launched at most once per sensor: the store's unique index), and ends
the ticks. A sensor's new cursor
is written with its tick, only when the tick succeeds or skips. With many daemons, each
evaluates only the sensors it holds leases on, and its tick endings (cursors with them)
are fenced: a daemon that lost a sensor to another cannot move its cursor.

A run status sensor's cursor is its place in the event log: each tick reads up to
`EVENT_BATCH` events of the watched status after it, and the function is called for every
run of the watched jobs among them; a full batch makes the sensor due again at once, so
it never falls behind while events keep coming. Its first tick starts at the log's end.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence

from vigil import events, runs, ticks
from vigil.config import settings as settings_mod
from vigil.daemon import loop
from vigil.daemon.loops import instigation
from vigil.evaluation import messages
from vigil.evaluation import pool as pool_mod

logger = logging.getLogger(__name__)
T = ticks.TickStatus
KIND = ticks.InstigatorKind.SENSOR
CHUNK = 128
EVENT_BATCH = 500
END_EVENTS = {
    runs.RunStatus.SUCCESS: events.EventType.RUN_SUCCESS,
    runs.RunStatus.FAILURE: events.EventType.RUN_FAILURE,
    runs.RunStatus.CANCELED: events.EventType.RUN_CANCELED,
}

END_STATUSES = {event_type: status for status, event_type in END_EVENTS.items()}
TickRequest = messages.SensorRequest | messages.RunStatusRequest


class SensorLoop(loop.Loop):
    name = "sensors"

    def __init__(
        self, shared: instigation.Instigation, settings: settings_mod.SchedulingSettings
    ) -> None:
        super().__init__()
        self._shared = shared
        self.interval = settings.poll_interval
        self.timeout = 300.0
        self.timer = instigation.DueTimer(shared.clock, self.wake.set)
        self._lanes = instigation.Lanes(shared, self.wake, "sensor")
        self._last: dict[str, float] | None = None
        self._behind: set[str] = set()  # run status sensors with more events waiting

    async def drain(self) -> None:
        """Ticks still being evaluated end before the daemon stops (within its grace)."""
        await self._lanes.join()

    async def iterate(self) -> None:
        async with self._shared.precedence.prompt():
            await self._iterate()

    async def _iterate(self) -> None:
        store, now = self._shared.store, self._shared.clock.now()
        sensors = await self._sensors()
        states = {s.name: s for s in await store.list_instigators()}
        running = {
            s.instigator: s
            for s in sensors.values()
            if instigation.is_running(s.default_status, states.get(s.instigator))
        }
        self._shared.count_instigators("sensor", len(sensors), len(running))
        owned, gained = await self._shared.own("sensor:", list(running))
        if gained:
            self._last = None  # their last ticks may be another daemon's: read them again
        running = {name: s for name, s in running.items() if name in owned}
        last = await self._last_ticks()
        busy = self._lanes.busy()
        free = {name: s for name, s in running.items() if s.location not in busy}
        interrupted = await self._interrupted(free)
        due = [
            s.instigator
            for s in free.values()
            if s.instigator not in interrupted and self._is_due(s, last, now)
        ]
        started = await store.add_ticks([(name, now) for name in due], T.STARTED, now)
        fresh = [t for t in started if t.status is T.STARTED]
        pending = sorted(
            [*fresh, *interrupted.values()], key=lambda t: (t.scheduled_time, t.tick_id)
        )
        for tick in pending:
            last[tick.instigator] = max(last.get(tick.instigator, 0.0), tick.scheduled_time)
        self.timer.set_due(self._next_due(free.values(), last))
        lanes = instigation.by_location(pending, lambda t: free[t.instigator].location)
        await self._lanes.run(lanes, functools.partial(self._run, running=free, states=states))

    async def _run(
        self,
        pending: Sequence[ticks.Tick],
        *,
        running: Mapping[str, instigation.SensorInfo],
        states: Mapping[str, ticks.InstigatorState],
    ) -> None:
        for start in range(0, len(pending), CHUNK):
            await self._run_chunk(pending[start : start + CHUNK], running, states)

    async def _sensors(self) -> dict[str, instigation.SensorInfo]:
        found: dict[str, instigation.SensorInfo] = {}
        for catalog in await self._shared.catalogs():
            for data in catalog.sensors:
                info = instigation.sensor_info(catalog.location, data)
                found[info.instigator] = info
        return found

    async def _last_ticks(self) -> dict[str, float]:
        if self._last is None:
            latest = await self._shared.store.latest_ticks()
            self._last = {n: t.scheduled_time for n, t in latest.items() if n.startswith("sensor:")}
        return self._last

    def _is_due(self, s: instigation.SensorInfo, last: dict[str, float], now: float) -> bool:
        previous = last.get(s.instigator)
        if s.instigator in self._behind:
            return previous is None or previous < now
        return previous is None or previous + s.minimum_interval <= now

    def _next_due(
        self, running: Iterable[instigation.SensorInfo], last: dict[str, float]
    ) -> float | None:
        due = []
        for s in running:
            previous = last.get(s.instigator)
            if s.instigator in self._behind or previous is None:
                due.append(self._shared.clock.now())
            else:
                due.append(previous + s.minimum_interval)
        return min(due, default=None)

    async def _interrupted(
        self, running: Mapping[str, instigation.SensorInfo]
    ) -> dict[str, ticks.Tick]:
        """The oldest tick each running sensor has left STARTED (a daemon died in it, or
        lost the sensor to this one): taken up alone, so that no other tick of the sensor
        is evaluated from the same cursor beside it; the next one waits for its end."""
        found: dict[str, ticks.Tick] = {}
        for tick in await self._shared.store.list_ticks(statuses=[T.STARTED]):
            if tick.instigator not in running:
                continue
            known = found.get(tick.instigator)
            if known is None or (tick.scheduled_time, tick.tick_id) < (
                known.scheduled_time,
                known.tick_id,
            ):
                found[tick.instigator] = tick
        return found

    async def _run_chunk(
        self,
        chunk: Sequence[ticks.Tick],
        running: Mapping[str, instigation.SensorInfo],
        states: Mapping[str, ticks.InstigatorState],
    ) -> None:
        requests = [await self._request(t, running[t.instigator], states) for t in chunk]
        batch = [
            pool_mod.Evaluation(running[t.instigator].location, r, running[t.instigator].timeout)
            for t, r in zip(chunk, requests, strict=True)
        ]
        results = await self._shared.pool.evaluate_all(batch)
        outcomes = []
        for tick, request, result in zip(chunk, requests, results, strict=True):
            self._shared.observe("sensor", None, result.seconds)
            outcomes.append(await self._submit(tick, running[tick.instigator], request, result))
        await self._shared.finish(outcomes)

    async def _request(
        self,
        tick: ticks.Tick,
        s: instigation.SensorInfo,
        states: Mapping[str, ticks.InstigatorState],
    ) -> TickRequest:
        state = states.get(s.instigator)
        cursor = state.cursor if state is not None else None
        if s.run_status is not None:
            return await self._run_status_request(s, cursor)
        previous = await self._shared.store.instigator_runs(s.instigator, limit=1)
        return messages.SensorRequest(
            s.name,
            cursor,
            previous[0].run_key if previous else None,
            (self._last or {}).get(s.instigator),
        )

    async def _run_status_request(
        self, s: instigation.SensorInfo, cursor: str | None
    ) -> messages.RunStatusRequest:
        store = self._shared.store
        after = int(cursor) if cursor else await store.last_event_id()
        assert s.run_status is not None
        found = await store.events_after(after, EVENT_BATCH, [END_EVENTS[s.run_status]])
        if len(found) == EVENT_BATCH:
            self._behind.add(s.instigator)
        else:
            self._behind.discard(s.instigator)
        items = [await self._item(e, s) for e in found]
        new_cursor = str(found[-1].event_id) if found else str(after)
        kept = tuple(i for i in items if i is not None)
        return messages.RunStatusRequest(s.name, kept, new_cursor)

    async def _item(
        self, event: events.Event, s: instigation.SensorInfo
    ) -> messages.RunStatusItem | None:
        run = await self._shared.store.get_run(event.run_id)
        if s.monitored_jobs and run.job_name not in s.monitored_jobs:
            return None
        return run_status_item(run, event)

    async def _submit(
        self,
        tick: ticks.Tick,
        s: instigation.SensorInfo,
        request: TickRequest,
        result: pool_mod.Result,
    ) -> ticks.TickOutcome:
        if not result.ok:
            return self._shared.outcome(tick, result)
        [(run_ids, error)] = await self._shared.submit_chunk(
            [(tick, s.location, result.answer.requests, _key_of(tick))]
        )
        outcome = self._shared.outcome(tick, result, run_ids, error)
        if outcome.status is T.FAILED:
            return outcome
        if isinstance(request, messages.RunStatusRequest):
            cursor, commit = request.new_cursor, True
        else:
            cursor, commit = result.answer.cursor, result.answer.cursor_updated
        return ticks.TickOutcome(
            outcome.tick_id,
            outcome.instigator,
            outcome.status,
            outcome.run_ids,
            outcome.error,
            cursor,
            commit,
        )


def _key_of(tick: ticks.Tick) -> instigation.KeyOf:
    """The user's run key, or one from the tick (the same when the tick is taken up again)."""
    return lambda i, r: r.run_key if r.run_key is not None else f"tick:{tick.tick_id}/{i}"


def run_status_item(run: runs.Run, event: events.Event) -> messages.RunStatusItem:
    """What a run status sensor's function is told of one run that reached the status."""
    return messages.RunStatusItem(
        run_id=run.run_id,
        job_name=run.job_name,
        status=END_STATUSES[event.event_type],
        tags=dict(run.tags),
        event_id=event.event_id,
        timestamp=event.timestamp,
        message=event.message,
    )
