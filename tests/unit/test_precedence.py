"""Background work gives way to prompt work, for a bounded time."""

from __future__ import annotations

import anyio

from vigil.daemon import precedence


async def test_give_way_returns_at_once_when_nothing_prompt_runs() -> None:
    first = precedence.Precedence()
    with anyio.fail_after(10):
        await first.give_way(3600)
    assert not first.busy


async def test_give_way_waits_until_the_last_prompt_block_ends() -> None:
    first = precedence.Precedence()
    order: list[str] = []
    inner_may_end = anyio.Event()
    outer_may_end = anyio.Event()

    async def prompt_work() -> None:
        async with first.prompt():
            async with first.prompt():
                await inner_may_end.wait()
            order.append("inner ended")
            await outer_may_end.wait()
            order.append("prompt ended")

    async def background() -> None:
        await first.give_way(3600)
        order.append("background")

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(prompt_work)
            await anyio.wait_all_tasks_blocked()
            assert first.busy
            tg.start_soon(background)
            await anyio.wait_all_tasks_blocked()
            inner_may_end.set()
            await anyio.wait_all_tasks_blocked()
            assert order == ["inner ended"]  # one prompt block still runs
            outer_may_end.set()
    assert order == ["inner ended", "prompt ended", "background"]
    assert not first.busy


async def test_give_way_is_bounded_when_prompt_work_never_ends() -> None:
    first = precedence.Precedence()
    never = anyio.Event()

    async def stuck() -> None:
        async with first.prompt():
            await never.wait()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stuck)
            await anyio.wait_all_tasks_blocked()
            await first.give_way(0.01)  # returns although the prompt work goes on
            assert first.busy
            tg.cancel_scope.cancel()
    assert not first.busy
