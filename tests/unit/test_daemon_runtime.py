"""The daemon put together, in process, on a fake store and a manual clock (no signals sent)."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest

from tests.daemon.fakes import HeartbeatStore, ManualClock, ScriptedLoop
from vigil import errors
from vigil.config import settings
from vigil.daemon import heartbeat, runtime, service
from vigil.storage import store as store_mod

DEADLINE = 10
IDENTITY = heartbeat.DaemonIdentity("me", "box", 42, 1000.0)
SETTINGS = settings.DaemonSettings(heartbeat_interval=1.0, shutdown_grace=5.0)
CONTROLS = runtime.Controls(reload_workspace=lambda: (), force_exit=lambda signum: None)


def make(store: HeartbeatStore, clock: ManualClock, *loops: ScriptedLoop) -> runtime.Daemon:
    return runtime.Daemon(SETTINGS, store, loops, identity=IDENTITY, clock=clock, rand=lambda: 0.5)


async def test_the_daemon_beats_for_itself_and_each_loop_and_ends_stopped() -> None:
    clock, store, q = ManualClock(1000.0), HeartbeatStore(), ScriptedLoop("q")
    daemon = make(store, clock, q)
    iterations: list[tuple[str, float]] = []
    seen_by_service: list[list[str]] = []

    async def extra(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        seen_by_service.append([s.name for s in daemon.supervisor.statistics()])
        task_status.started()
        await anyio.sleep_forever()

    extras = runtime.Extras(
        services=[service.Service("extra", extra)],
        on_iteration=lambda n, s: iterations.append((n, s)),
    )
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run, extras, CONTROLS)
            await q.step()
            await clock.sleeping_until(1010.0)
            await anyio.wait_all_tasks_blocked()
            assert set(store.rows) == {("me", "supervisor"), ("me", "q")}
            assert daemon.supervisor.alive
            daemon.supervisor.stop()
    assert seen_by_service == [["q"]]  # extras start once the loops have
    assert iterations == [("q", 0.0)]
    for beat in store.rows.values():
        assert beat.info["stopped"] is True
        assert (beat.host, beat.pid) == ("box", 42)


async def test_a_starting_daemon_prunes_heartbeats_past_their_retention() -> None:
    clock = ManualClock(1_000_000.0)
    retention = SETTINGS.heartbeat_retention
    old = store_mod.Heartbeat("gone", "q", "box", 7, clock.now() - retention - 1)
    recent = store_mod.Heartbeat("stopped", "q", "box", 8, clock.now() - retention + 1)
    store = HeartbeatStore([old, recent])
    q = ScriptedLoop("q")
    daemon = make(store, clock, q)
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run, runtime.Extras(), CONTROLS)
            await q.step()  # the loop runs: the pruning came before it
            daemon.supervisor.stop()
    assert ("gone", "q") not in store.rows
    assert ("stopped", "q") in store.rows


async def test_the_daemon_refuses_to_start_beside_a_live_one() -> None:
    clock = ManualClock(1000.0)
    other = heartbeat.supervisor_info("running", [], IDENTITY, 1.0)
    beat = store_mod.Heartbeat("other", "supervisor", "elsewhere", 7, 999.5, other)
    store = HeartbeatStore([beat])
    with (
        anyio.fail_after(DEADLINE),
        pytest.raises(errors.DaemonAlreadyRunning, match="elsewhere pid 7"),
    ):
        await make(store, clock, ScriptedLoop("q")).run(runtime.Extras(), CONTROLS)
    assert set(store.rows) == {("other", "supervisor")}
