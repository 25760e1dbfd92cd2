"""The monitor loop against a real store (SQLite and PostgreSQL), a scripted launcher and a
manual clock: concurrent and bounded health checks, unknown health, bad tags, failed resumes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import anyio

from tests.daemon.fakes import ManualClock
from tests.integration.test_launcher import REPO
from vigil import errors, events, launchers, runs, storage
from vigil.config import settings as settings_mod
from vigil.daemon.loops import monitor

S = runs.RunStatus
E = events.EventType
H = launchers.WorkerHealth
T0 = 1_000_000.0


class ScriptedLauncher(launchers.RunLauncher):
    """Health verdicts from a script; `gate` holds every check until `expected` are waiting."""

    supports_resume = True

    def __init__(self, verdict: launchers.WorkerHealth = H.RUNNING, expected: int = 0) -> None:
        super().__init__(
            launchers.RunLauncher.Options(), launchers.LaunchContext(REPO, REPO, {}, REPO)
        )
        self.verdict = verdict
        self.expected = expected
        self.waiting = 0
        self.gate = anyio.Event()
        self.hang = False
        self.resume_error: str | None = None
        self.resumed: list[str] = []

    async def launch(self, run: runs.Run) -> Mapping[str, Any]:
        raise errors.LaunchError("not here")

    async def terminate(self, run: runs.Run) -> bool:
        return False

    async def check_worker_health(self, run: runs.Run) -> launchers.HealthCheck:
        self.waiting += 1
        if self.waiting >= self.expected:
            self.gate.set()
        await self.gate.wait()
        if self.hang:
            await anyio.sleep_forever()
        return launchers.HealthCheck(self.verdict, "scripted")

    async def resume(self, run: runs.Run) -> Mapping[str, Any]:
        if self.resume_error is not None:
            raise errors.LaunchError(self.resume_error)
        self.resumed.append(run.run_id)
        return {"pid": 2}


def make_loop(
    store: storage.Store, launcher: ScriptedLauncher, clock: ManualClock, **values: object
) -> monitor.MonitorLoop:
    settings = settings_mod.RunMonitoringSettings.model_validate(
        {"poll_interval": 1, "unknown_grace": 5, **values}
    )
    return monitor.MonitorLoop(store, launcher, clock, settings, "test-daemon")


async def started_run(store: storage.Store, **tags: str) -> runs.Run:
    run = runs.Run(
        run_id=str(uuid.uuid4()),
        job_name="j",
        status=S.STARTED,
        tags=tags,
        created_at=T0,
        updated_at=T0,
        start_time=T0,
        launcher_info={"pid": 1},
    )
    await store.add_run(run)
    return run


async def messages(store: storage.Store, run_id: str, kind: events.EventType) -> list[str]:
    return [e.message for e in await store.get_events(run_id, event_types=(kind,))]


async def test_health_checks_go_out_at_once(store: storage.Store) -> None:
    launcher = ScriptedLauncher(expected=5)
    for _ in range(5):
        await started_run(store)
    loop = make_loop(store, launcher, ManualClock(T0))
    with anyio.fail_after(10):  # one check at a time would wait for the gate forever
        await loop.iterate()
    assert launcher.waiting == 5
    assert loop.statistics() == monitor.MonitorStatistics({}, 0, 0)


async def test_a_hung_check_is_unknown_then_dead_after_the_grace(store: storage.Store) -> None:
    launcher = ScriptedLauncher()
    launcher.hang = True
    run = await started_run(store)
    clock = ManualClock(T0)
    loop = make_loop(store, launcher, clock, health_check_timeout=0.05)
    await loop.iterate()
    assert loop.statistics().unknown == 1
    assert (await store.get_run(run.run_id)).status is S.STARTED
    clock.advance(5)
    await loop.iterate()
    assert launcher.resumed == [run.run_id]
    [note] = await messages(store, run.run_id, E.ENGINE)
    assert "health unknown for 5 s (the health check took more than 0.05 s)" in note
    resumed = await store.get_run(run.run_id)
    assert (resumed.launcher_info, resumed.resume_attempt) == ({"pid": 2}, 1)
    assert loop.statistics() == monitor.MonitorStatistics({}, 1, 0)


async def test_a_resume_that_cannot_launch_fails_the_run(store: storage.Store) -> None:
    launcher = ScriptedLauncher(H.DEAD)
    launcher.resume_error = "no capacity"
    run = await started_run(store)
    loop = make_loop(store, launcher, ManualClock(T0))
    await loop.iterate()
    assert (await store.get_run(run.run_id)).status is S.FAILURE
    [failure] = await messages(store, run.run_id, E.RUN_FAILURE)
    assert failure.endswith("resuming (attempt 1 of 1), which failed: no capacity")
    assert loop.statistics().ended == {"worker_died": 1}


async def test_a_bad_max_runtime_tag_is_reported_once(store: storage.Store) -> None:
    launcher = ScriptedLauncher()
    run = await started_run(store, **{runs.TAG_MAX_RUNTIME: "an hour"})
    clock = ManualClock(T0)
    loop = make_loop(store, launcher, clock, max_runtime=60)
    await loop.iterate()
    await loop.iterate()
    assert await messages(store, run.run_id, E.ENGINE) == [
        f"run {run.run_id}: tag vigil/max_runtime='an hour' is not a number of seconds "
        "greater than 0; the instance default applies"
    ]
    clock.advance(60)
    await loop.iterate()
    assert await messages(store, run.run_id, E.RUN_FAILURE) == ["exceeded max runtime of 60 s"]
