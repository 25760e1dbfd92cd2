"""The due timer wakes its loop at the next due tick, not at a fixed poll."""

from __future__ import annotations

import anyio
import anyio.abc

from tests.daemon.fakes import ManualClock
from vigil.daemon.loops import instigation


async def test_the_timer_wakes_the_loop_when_the_due_time_comes() -> None:
    clock = ManualClock(1000.0)
    woken: list[float] = []
    timer = instigation.DueTimer(clock, lambda: woken.append(clock.now()))
    async with anyio.create_task_group() as tg:
        tg.start_soon(timer.run)
        timer.set_due(1060.0)
        await clock.sleeping_until(1060.0)
        clock.advance_to(1059.0)
        await anyio.wait_all_tasks_blocked()
        assert woken == []
        clock.advance_to(1060.0)
        await anyio.wait_all_tasks_blocked()
        assert woken == [1060.0]
        tg.cancel_scope.cancel()


async def test_a_new_due_time_replaces_the_old_one() -> None:
    clock = ManualClock(1000.0)
    woken: list[float] = []
    timer = instigation.DueTimer(clock, lambda: woken.append(clock.now()))
    async with anyio.create_task_group() as tg:
        tg.start_soon(timer.run)
        timer.set_due(1060.0)
        await clock.sleeping_until(1060.0)
        timer.set_due(1010.0)
        await clock.sleeping_until(1010.0)
        clock.advance_to(1010.0)
        await anyio.wait_all_tasks_blocked()
        assert woken == [1010.0]
        timer.set_due(None)
        clock.advance_to(1100.0)
        await anyio.wait_all_tasks_blocked()
        assert woken == [1010.0]
        tg.cancel_scope.cancel()


async def test_a_due_time_already_past_wakes_at_once() -> None:
    clock = ManualClock(1000.0)
    woken: list[float] = []
    timer = instigation.DueTimer(clock, lambda: woken.append(clock.now()))
    async with anyio.create_task_group() as tg:
        tg.start_soon(timer.run)
        timer.set_due(990.0)
        await anyio.wait_all_tasks_blocked()
        assert woken == [1000.0]
        tg.cancel_scope.cancel()
