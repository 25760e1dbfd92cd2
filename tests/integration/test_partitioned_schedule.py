"""A daily schedule of a partitioned job in the scheduler loop, on a manual clock with real
evaluation processes and a real store: each tick submits the day that just ended, tagged
and keyed by it, once."""

from __future__ import annotations

import datetime
import pathlib
import zoneinfo
from collections.abc import AsyncIterator

import pytest

from tests.daemon.fakes import ManualClock
from tests.integration import pools
from tests.plugins import stalling_launcher
from vigil import runs, storage, ticks
from vigil.config import settings
from vigil.coordinators import queued
from vigil.daemon.loops import instigation, scheduler
from vigil.evaluation import pool
from vigil.launchers import base as launchers

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOCATION = settings.CodeLocationSettings(name="parts", file=HERE / "partitioned_jobs.py")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
T = ticks.TickStatus
NIGHTLY = "schedule:nightly"


def at(text: str) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=NEW_YORK).timestamp()


@pytest.fixture
async def loop(
    store_target: storage.StoreTarget,
) -> AsyncIterator[tuple[scheduler.SchedulerLoop, storage.Store, ManualClock]]:
    store = await storage.open_store(store_target)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    evaluators = pool.build([LOCATION], REPO, env, processes=1, max_concurrent=4, retry_after=60)
    served = pools.serve(evaluators)
    clock = ManualClock(at("2025-12-29T12:00"))
    try:
        await pools.loaded(evaluators)
        context = launchers.LaunchContext(REPO, REPO, {}, REPO)
        launcher = stalling_launcher.StallingLauncher(stalling_launcher.StallingOptions(), context)
        coordinator = queued.QueuedCoordinator(queued.QueuedOptions(), store, launcher, clock.now)
        shared = instigation.Instigation(evaluators, store, coordinator, clock)
        yield scheduler.SchedulerLoop(shared, settings.SchedulingSettings()), store, clock
    finally:
        await pools.stop(evaluators, served)
        await store.close()


async def test_each_tick_submits_the_day_that_ended_once(
    loop: tuple[scheduler.SchedulerLoop, storage.Store, ManualClock],
) -> None:
    the_loop, store, clock = loop
    await store.set_instigator_status(
        NIGHTLY, ticks.InstigatorKind.SCHEDULE, ticks.InstigatorStatus.RUNNING, clock.now()
    )
    await the_loop.iterate()
    # Midnight Dec 30 is the first partition's start: nothing is complete yet.
    clock.advance_to(at("2025-12-30T00:10"))
    await the_loop.iterate()
    for day in ("2025-12-31", "2026-01-01"):
        clock.advance_to(at(f"{day}T00:10"))
        await the_loop.iterate()
        await the_loop.iterate()  # a second pass over the same tick submits nothing new

    found = reversed(await store.list_ticks(NIGHTLY))
    assert [(t.status, t.error) for t in found] == [
        (T.SKIPPED, "no partition of job 'daily' is complete at 2025-12-30 00:00:00-05:00"),
        (T.SUCCESS, None),
        (T.SUCCESS, None),
    ]
    submitted = sorted(await store.instigator_runs(NIGHTLY), key=lambda r: r.created_at)
    assert [(r.tags[runs.TAG_PARTITION], r.run_key) for r in submitted] == [
        ("2025-12-30", "2025-12-31T05:00:00Z/2025-12-30"),
        ("2025-12-31", "2026-01-01T05:00:00Z/2025-12-31"),
    ]
