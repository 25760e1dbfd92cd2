"""The scheduler and sensor loops on a manual clock: real evaluation processes, a real store.

The clock is moved by hand, so downtime, lateness and due times are exact.
"""

from __future__ import annotations

import datetime
import pathlib
from collections.abc import AsyncIterator

import pytest

from tests.daemon.fakes import ManualClock
from tests.integration import pools
from tests.plugins import stalling_launcher
from vigil import events, runs, storage, ticks
from vigil.config import settings
from vigil.coordinators import queued
from vigil.daemon.loops import instigation, scheduler, sensors
from vigil.evaluation import pool
from vigil.launchers import base as launchers

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOCATION = settings.CodeLocationSettings(name="good", file=HERE / "instigators.py")
T = ticks.TickStatus
RUNNING = ticks.InstigatorStatus.RUNNING
S = runs.RunStatus


def at(text: str) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC).timestamp()


def _hhmm(instant: float) -> str:
    return datetime.datetime.fromtimestamp(instant, datetime.UTC).strftime("%H:%M")


class Rig:
    def __init__(self, store: storage.Store, evaluators: pool.EvaluatorPool) -> None:
        self.store = store
        self.clock = ManualClock(at("2026-01-01 00:30"))
        context = launchers.LaunchContext(REPO, REPO, {}, REPO)
        launcher = stalling_launcher.StallingLauncher(stalling_launcher.StallingOptions(), context)
        coordinator = queued.QueuedCoordinator(
            queued.QueuedOptions(), store, launcher, self.clock.now
        )
        self.shared = instigation.Instigation(evaluators, store, coordinator, self.clock)
        scheduling = settings.SchedulingSettings()
        self.scheduler = scheduler.SchedulerLoop(self.shared, scheduling)
        self.sensors = sensors.SensorLoop(self.shared, scheduling)

    async def start(self, name: str) -> None:
        kind, _ = ticks.split_id(name)
        await self.store.set_instigator_status(name, kind, RUNNING, self.clock.now())

    async def ticks(self, name: str) -> list[tuple[str, T]]:
        found = reversed(await self.store.list_ticks(name))
        return [(_hhmm(t.scheduled_time), t.status) for t in found]


@pytest.fixture
async def rig(store_target: storage.StoreTarget) -> AsyncIterator[Rig]:
    store = await storage.open_store(store_target)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    evaluators = pool.build([LOCATION], REPO, env, processes=1, max_concurrent=4, retry_after=60)
    served = pools.serve(evaluators)
    try:
        await pools.loaded(evaluators)
        yield Rig(store, evaluators)
    finally:
        await pools.stop(evaluators, served)
        await store.close()


async def test_after_downtime_catchup_all_runs_up_to_the_limit_and_misses_the_rest(
    rig: Rig,
) -> None:
    await rig.start("schedule:hourly_all")
    await rig.scheduler.iterate()
    assert rig.scheduler.timer.due == at("2026-01-01 01:00")

    rig.clock.advance_to(at("2026-01-01 05:10"))
    await rig.scheduler.iterate()

    assert await rig.ticks("schedule:hourly_all") == [
        ("01:00", T.MISSED),
        ("02:00", T.MISSED),
        ("03:00", T.SUCCESS),
        ("04:00", T.SUCCESS),
        ("05:00", T.SUCCESS),
    ]
    assert len(await rig.store.instigator_runs("schedule:hourly_all")) == 3
    assert rig.scheduler.timer.due == at("2026-01-01 06:00")


async def test_catchup_latest_runs_only_the_most_recent(rig: Rig) -> None:
    await rig.start("schedule:hourly_latest")
    rig.clock.advance_to(at("2026-01-01 03:10"))
    await rig.scheduler.iterate()

    assert await rig.ticks("schedule:hourly_latest") == [
        ("01:00", T.MISSED),
        ("02:00", T.MISSED),
        ("03:00", T.SUCCESS),
    ]


async def test_catchup_none_misses_late_ticks_and_runs_on_time_ones(rig: Rig) -> None:
    await rig.start("schedule:hourly_none")
    rig.clock.advance_to(at("2026-01-01 02:10"))
    await rig.scheduler.iterate()
    rig.clock.advance_to(at("2026-01-01 03:00:00.2"))
    await rig.scheduler.iterate()

    assert await rig.ticks("schedule:hourly_none") == [
        ("01:00", T.MISSED),
        ("02:00", T.MISSED),
        ("03:00", T.SUCCESS),
    ]


async def test_overlap_skip_skips_while_a_run_is_in_flight(rig: Rig) -> None:
    await rig.start("schedule:hourly_skip")
    for moment in ("01:00:00.1", "02:00:00.1"):
        rig.clock.advance_to(at(f"2026-01-01 {moment}"))
        await rig.scheduler.iterate()
    [run] = await rig.store.instigator_runs("schedule:hourly_skip")
    await rig.store.transition_run(run.run_id, S.QUEUED, S.CANCELED, rig.clock.now())
    rig.clock.advance_to(at("2026-01-01 03:00:00.1"))
    await rig.scheduler.iterate()

    assert await rig.ticks("schedule:hourly_skip") == [
        ("01:00", T.SUCCESS),
        ("02:00", T.SKIPPED),
        ("03:00", T.SUCCESS),
    ]
    skipped = (await rig.store.list_ticks("schedule:hourly_skip"))[1]
    assert skipped.error == f"run {run.run_id} of this schedule is still in flight"


async def test_a_schedule_runs_by_default_status_until_an_operator_stops_it(rig: Rig) -> None:
    rig.clock.advance_to(at("2026-01-01 00:59:59"))
    await rig.scheduler.iterate()  # every_minute is stopped by default: nothing
    await rig.start("schedule:every_minute")
    rig.clock.advance_to(at("2026-01-01 01:01:00.05"))
    await rig.scheduler.iterate()
    await rig.store.set_instigator_status(
        "schedule:every_minute",
        ticks.InstigatorKind.SCHEDULE,
        ticks.InstigatorStatus.STOPPED,
        rig.clock.now(),
    )
    rig.clock.advance_to(at("2026-01-01 01:05"))
    await rig.scheduler.iterate()

    assert await rig.ticks("schedule:every_minute") == [
        ("01:00", T.MISSED),
        ("01:01", T.SUCCESS),
    ]
    [run] = await rig.store.instigator_runs("schedule:every_minute")
    assert run.run_key == "2026-01-01T01:01:00Z/0"
    assert run.tags["local"] == "2026-01-01T02:01:00+01:00"
    assert run.tags["vigil/schedule"] == "every_minute"
    assert run.status is S.QUEUED


async def test_a_raising_schedule_records_its_traceback_and_others_go_on(rig: Rig) -> None:
    await rig.start("schedule:raiser")
    await rig.start("schedule:skipper")
    rig.clock.advance_to(at("2026-01-02 00:00:00.1"))
    await rig.scheduler.iterate()

    [failed] = await rig.store.list_ticks("schedule:raiser")
    [skipped] = await rig.store.list_ticks("schedule:skipper")
    assert failed.status is T.FAILED
    assert failed.error is not None
    assert "RuntimeError: schedule exploded" in failed.error
    assert (skipped.status, skipped.error) == (T.SKIPPED, "nothing today")
    counts = rig.shared.statistics().ticks
    assert counts[("schedule", "FAILED")] == 1
    assert counts[("schedule", "SKIPPED")] == 1


async def test_a_run_status_sensor_sees_every_run_once_by_its_cursor(rig: Rig) -> None:
    await rig.start("sensor:on_failure")
    await rig.sensors.iterate()  # the first tick starts at the end of the log
    for i in range(3):
        run_id = f"failed-{i}"
        run = runs.Run(run_id, "counted", S.FAILURE, tags={"ignore": "no"}, created_at=1.0)
        await rig.store.add_run(run)
        await rig.store.append_events(
            [events.NewEvent(run_id, events.EventType.RUN_FAILURE, timestamp=1.0)]
        )
    rig.clock.advance(31)
    await rig.sensors.iterate()
    rig.clock.advance(31)
    await rig.sensors.iterate()

    made = await rig.store.instigator_runs("sensor:on_failure")
    assert sorted(r.tags["failed_run"] for r in made) == ["failed-0", "failed-1", "failed-2"]
    assert {r.job_name for r in made} == {"other"}
    [state] = await rig.store.list_instigators(["sensor:on_failure"])
    failures = await rig.store.events_after(0, 100, [events.EventType.RUN_FAILURE])
    assert state.cursor == str(failures[-1].event_id)
    statuses = [t.status for t in reversed(await rig.store.list_ticks("sensor:on_failure"))]
    assert statuses == [T.SKIPPED, T.SUCCESS, T.SKIPPED]


async def test_a_sensor_waits_its_minimum_interval(rig: Rig) -> None:
    await rig.start("sensor:files")
    await rig.sensors.iterate()
    rig.clock.advance(0.5)
    await rig.sensors.iterate()
    assert len(await rig.store.list_ticks("sensor:files")) == 1
    assert rig.sensors.timer.due == rig.clock.now() + 0.5
    rig.clock.advance(0.5)
    await rig.sensors.iterate()

    found = await rig.store.list_ticks("sensor:files")
    assert [t.cursor for t in found] == ["2", "1"]
    assert sorted(r.run_key or "" for r in await rig.store.instigator_runs("sensor:files")) == [
        "file-0",
        "file-1",
    ]


async def test_old_ticks_are_purged_by_status_and_age(rig: Rig) -> None:
    now = rig.clock.now()
    day = 86400.0
    await rig.store.add_ticks([("schedule:x", now - 8 * day)], T.SKIPPED, now)
    await rig.store.add_ticks([("schedule:x", now - 6 * day)], T.MISSED, now)
    await rig.store.add_ticks([("schedule:x", now - 8 * day + 1)], T.SUCCESS, now)
    await rig.store.add_ticks([("schedule:x", now - 91 * day)], T.FAILED, now)
    await rig.scheduler.iterate()

    left = [(round((now - t.scheduled_time) / day), t.status) for t in await rig.store.list_ticks()]
    assert left == [(6, T.MISSED), (8, T.SUCCESS)]


async def test_a_tick_taken_up_again_keeps_the_runs_submitted_before(rig: Rig) -> None:
    await rig.start("schedule:chatty")
    midnight = at("2026-01-02 00:00")
    [tick] = await rig.store.add_ticks([("schedule:chatty", midnight)], T.STARTED, midnight)
    before = runs.Run(
        "submitted-before-the-crash",
        "counted",
        S.QUEUED,
        instigator="schedule:chatty",
        run_key="2026-01-02T00:00:00Z/a",
    )
    await rig.store.add_run(before)
    rig.clock.advance_to(midnight + 0.5)
    await rig.scheduler.iterate()

    [done] = await rig.store.list_ticks("schedule:chatty")
    made = await rig.store.instigator_runs("schedule:chatty")
    assert (done.tick_id, done.status) == (tick.tick_id, T.SUCCESS)
    assert done.run_ids[0] == "submitted-before-the-crash"
    assert sorted(done.run_ids) == sorted(r.run_id for r in made)
    assert sorted(r.run_key or "" for r in made) == [
        "2026-01-02T00:00:00Z/a",
        "2026-01-02T00:00:00Z/b",
    ]


async def test_a_sensor_tick_taken_up_again_is_evaluated_alone_from_its_cursor(
    rig: Rig,
) -> None:
    """A tick left STARTED (its daemon died, or lost the sensor to this one) is evaluated
    again, alone: a new tick beside it would be evaluated from the same cursor and list the
    same runs."""
    await rig.start("sensor:files")
    left = rig.clock.now() - 5
    [interrupted] = await rig.store.add_ticks([("sensor:files", left)], T.STARTED, left)
    await rig.sensors.iterate()

    [done] = await rig.store.list_ticks("sensor:files")
    assert (done.tick_id, done.status, done.cursor) == (interrupted.tick_id, T.SUCCESS, "1")
    rig.clock.advance(1)
    await rig.sensors.iterate()

    found = await rig.store.list_ticks("sensor:files")
    assert [t.cursor for t in found] == ["2", "1"]
    listed = [run_id for t in found for run_id in t.run_ids]
    assert len(listed) == len(set(listed)) == 2
    made = await rig.store.instigator_runs("sensor:files")
    assert sorted(r.run_key or "" for r in made) == ["file-0", "file-1"]
