"""The supervisor: one task group, crashes contained and restarted, a drain with a grace."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio
import anyio.abc
import pytest

from tests.daemon.fakes import BLOCK, ManualClock, ScriptedLoop
from vigil.config import settings
from vigil.daemon import loop, runner, service, supervisor

S = loop.LoopState
BACKOFF = settings.BackoffSettings(base=1.0, factor=2.0, cap=60.0, jitter=0.1)
DEADLINE = 10


def make(
    loops: Sequence[ScriptedLoop], clock: ManualClock, grace: float = 30.0
) -> supervisor.Supervisor:
    runners = [runner.LoopRunner(q, clock=clock, restart=BACKOFF, rand=lambda: 0.5) for q in loops]
    return supervisor.Supervisor(
        runners, clock=clock, restart=BACKOFF, rand=lambda: 0.5, shutdown_grace=grace
    )


def by_name(sup: supervisor.Supervisor) -> dict[str, loop.LoopStatistics]:
    return {s.name: s for s in sup.statistics()}


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == name]


async def test_one_loop_crashing_never_stops_another() -> None:
    clock = ManualClock(1000.0)
    a, b = ScriptedLoop("a", interval=1.0), ScriptedLoop("b", interval=1.0)
    sup = make([a, b], clock)
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            assert sup.alive
            assert sup.loop_names == ["a", "b"]
            await a.step(RuntimeError("a is broken"))  # t=1000: a waits 1 s
            await b.step()
            await clock.sleeping_until(1001.0)
            clock.advance_to(1001.0)
            await a.step(RuntimeError("a is broken"))  # t=1001: a waits 2 s
            await b.step()
            await clock.sleeping_until(1002.0)
            clock.advance_to(1002.0)
            await b.step()  # b goes on while a waits
            await clock.sleeping_until(1003.0)
            clock.advance_to(1003.0)
            await a.step(RuntimeError("a is broken"))
            await b.step()
            await clock.sleeping_until(1004.0)
            stats = by_name(sup)
            assert (stats["a"].failures, stats["a"].restarts, stats["a"].state) == (3, 2, S.BACKOFF)
            assert (stats["b"].failures, stats["b"].iterations) == (0, 4)
            sup.stop()
    assert sup.state is supervisor.SupervisorState.STOPPED


async def test_a_service_that_returns_counts_as_a_crash_and_is_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(1000.0)
    sup = make([], clock)
    starts: list[float] = []

    async def returns(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        starts.append(clock.now())
        task_status.started()

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run, [service.Service("flapper", returns)])
            await clock.sleeping_until(1001.0)
            assert starts == [1000.0]
            clock.advance(1.0)
            await clock.sleeping_until(1003.0)  # the second crash in a row waits 2 s
            assert starts == [1000.0, 1001.0]
            sup.stop()
    crashed = events(caplog, "service.crashed")
    assert [r.service for r in crashed] == ["flapper", "flapper"]  # type: ignore[attr-defined]
    assert "returned" in crashed[0].getMessage()


async def test_a_service_that_raises_before_it_is_ready_does_not_block_the_start() -> None:
    clock = ManualClock(1000.0)
    q = ScriptedLoop("q")
    sup = make([q], clock)
    attempts: list[float] = []

    async def broken() -> None:
        attempts.append(clock.now())
        raise OSError("address already in use")

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run, [service.Service("http", broken, ready_on_start=True)])
            assert sup.alive
            await q.step()
            await clock.sleeping_until(1001.0)
            clock.advance(1.0)
            await clock.sleeping_until(1003.0)
            assert attempts == [1000.0, 1001.0]
            sup.stop()


async def test_stop_drains_running_iterations_then_cancels_the_services() -> None:
    clock = ManualClock(1000.0)
    q, idle = ScriptedLoop("q"), ScriptedLoop("idle")
    sup = make([q, idle], clock)
    seen_at_cancel: list[tuple[S, S]] = []

    async def server(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            stats = by_name(sup)
            seen_at_cancel.append((stats["q"].state, stats["idle"].state))

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run, [service.Service("server", server)])
            await idle.step()
            await q.started.get()  # q's first iteration is running
            sup.stop()
            await sup.wait_stopping()
            await anyio.wait_all_tasks_blocked()
            assert sup.state is supervisor.SupervisorState.STOPPING
            assert sup.alive
            assert sup.stopping
            assert by_name(sup)["idle"].state is S.STOPPED
            assert seen_at_cancel == []  # the services serve during the drain
            q.replies.put(None)
    assert seen_at_cancel == [(S.STOPPED, S.STOPPED)]
    assert by_name(sup)["q"].iterations == 1
    assert not sup.alive


async def test_iterations_still_running_after_the_grace_are_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(1000.0)
    q = ScriptedLoop("q")
    sup = make([q], clock, grace=30.0)
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            await q.step(BLOCK)
            sup.stop()
            await clock.sleeping_until(1030.0)
            clock.advance(30.0)
    assert by_name(sup)["q"].state is S.STOPPED
    timed_out = events(caplog, "daemon.drain_timeout")
    assert [r.loops for r in timed_out] == [["q"]]  # type: ignore[attr-defined]


async def test_stop_during_a_restart_backoff_ends_at_once() -> None:
    clock = ManualClock(1000.0)
    sup = make([], clock)

    async def crashes() -> None:
        raise RuntimeError("no")

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run, [service.Service("s", crashes, ready_on_start=True)])
            await clock.sleeping_until(1001.0)
            sup.stop()
    assert clock.now() == 1000.0


async def test_a_reload_reaches_every_loop() -> None:
    clock = ManualClock(1000.0)
    a, b = ScriptedLoop("a"), ScriptedLoop("b")
    sup = make([a, b], clock)
    workspace = (settings.CodeLocationSettings(module="pipelines"),)
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            await a.step()
            await b.step()
            sup.reload(workspace)
            await a.step()
            await b.step()
            assert a.reloads == b.reloads == [workspace]
            sup.stop()


async def test_a_supervisor_without_loops_runs_and_stops() -> None:
    clock = ManualClock(1000.0)
    sup = make([], clock)
    assert sup.state is supervisor.SupervisorState.NEW
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            assert sup.statistics() == []
            assert sup.alive
            sup.stop()
    assert sup.state is supervisor.SupervisorState.STOPPED
