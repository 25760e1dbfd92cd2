"""The monitor loop judging worker heartbeats, against a real store (SQLite and PostgreSQL),
a scripted launcher and a manual clock: silence past the timeout, a pass that lost the
store, and an unknown launcher outvoted by a heartbeat that moves."""

from __future__ import annotations

from typing import Any

import pytest

from tests.daemon.fakes import ManualClock
from tests.integration.test_monitor_loop import T0, ScriptedLauncher, make_loop, messages
from vigil import errors, events, launchers, runs, storage

S = runs.RunStatus
E = events.EventType
H = launchers.WorkerHealth
ALL_RUNS = storage.RunFilter()
BEATS = {"worker_heartbeat_interval": 5, "worker_heartbeat_misses": 6}  # 30 s


class KillingLauncher(ScriptedLauncher):
    def __init__(self, verdict: launchers.WorkerHealth) -> None:
        super().__init__(verdict)
        self.killed: list[Any] = []

    async def kill(self, run: runs.Run) -> bool:
        self.killed.append(dict(run.launcher_info))
        return True


class LosingStore:
    """The real store, whose next `list_runs` fails as if the database went away."""

    def __init__(self, store: storage.Store) -> None:
        self._store = store
        self.lose_next = False

    async def list_runs(self, run_filter: storage.RunFilter = ALL_RUNS) -> list[runs.Run]:
        if self.lose_next:
            self.lose_next = False
            raise errors.StoreUnavailable("connection refused")
        return await self._store.list_runs(run_filter)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def beating_run(store: storage.Store, beat: float = T0) -> runs.Run:
    run = runs.Run(
        run_id="r1",
        job_name="j",
        status=S.STARTED,
        created_at=T0,
        updated_at=T0,
        start_time=T0,
        launcher_info={"pid": 1},
        launch_token="t1",
    )
    await store.add_run(run)
    assert await store.record_worker_heartbeat("r1", "t1", beat)
    return run


async def test_a_silent_live_worker_is_killed_and_resumed(store: storage.Store) -> None:
    launcher = KillingLauncher(H.RUNNING)
    await beating_run(store)
    clock = ManualClock(T0)
    loop = make_loop(store, launcher, clock, **BEATS)

    await loop.iterate()
    clock.advance(29)
    await loop.iterate()
    assert launcher.resumed == []
    clock.advance(1)
    await loop.iterate()

    assert (launcher.resumed, launcher.killed) == (["r1"], [{"pid": 1}])
    [note] = await messages(store, "r1", E.ENGINE)
    assert "no heartbeat for 30 s while its process is alive (scripted)" in note
    resumed = await store.get_run("r1")
    assert (resumed.resume_attempt, resumed.worker_heartbeat) == (1, None)
    clock.advance(100)  # the new worker has not beaten yet: the launcher's word alone counts
    await loop.iterate()
    assert launcher.resumed == ["r1"]


async def test_a_pass_that_lost_the_store_starts_the_watch_again(store: storage.Store) -> None:
    launcher = KillingLauncher(H.RUNNING)
    await beating_run(store)
    losing = LosingStore(store)
    clock = ManualClock(T0)
    loop = make_loop(losing, launcher, clock, **BEATS)

    await loop.iterate()
    clock.advance(40)
    losing.lose_next = True
    with pytest.raises(errors.StoreUnavailable):
        await loop.iterate()
    await loop.iterate()  # seen afresh at T0 + 40: not 40 s of silence
    clock.advance(29)
    await loop.iterate()
    assert launcher.resumed == []
    clock.advance(1)
    await loop.iterate()
    assert launcher.resumed == ["r1"]


async def test_a_moving_heartbeat_outvotes_an_unknown_launcher(store: storage.Store) -> None:
    launcher = KillingLauncher(H.UNKNOWN)
    await beating_run(store)
    clock = ManualClock(T0)
    loop = make_loop(store, launcher, clock, **BEATS)  # unknown_grace: 5 s

    for beat in range(1, 8):
        clock.advance(10)
        assert await store.record_worker_heartbeat("r1", "t1", T0 + 10 * beat)
        await loop.iterate()
    assert (launcher.resumed, loop.statistics().unknown) == ([], 0)

    clock.advance(30)  # it stops beating: dead, and the launcher cannot tell more
    await loop.iterate()
    assert (launcher.resumed, launcher.killed) == (["r1"], [])
    [note] = await messages(store, "r1", E.ENGINE)
    assert "no heartbeat for 30 s; the launcher cannot tell (scripted)" in note
