"""Worker-exit notices: other loops woken at each one, the monitor at most once a spacing."""

from __future__ import annotations

import functools
from typing import Any

import anyio

from vigil.daemon import loop
from vigil.daemon.loops import monitor

SPACING = 0.2


class Exits:
    """Stands in for a launcher: `wait_for_exits` returns once for each `tell`."""

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[None](100)

    def tell(self) -> None:
        self._send.send_nowait(None)

    async def wait_for_exits(self) -> None:
        await self._receive.receive()

    def close(self) -> None:
        self._send.close()
        self._receive.close()


class Counting(loop.Wakeup):
    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()


async def test_a_burst_of_exits_wakes_the_queue_each_time_and_the_monitor_twice() -> None:
    exits, monitor_wake, queue_wake = Exits(), Counting(), Counting()
    launcher: Any = exits
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            relay = functools.partial(
                monitor.relay_exits, launcher, monitor_wake, queue_wake, spacing=SPACING
            )
            tg.start_soon(relay)
            for _ in range(5):
                exits.tell()
            await anyio.wait_all_tasks_blocked()
            # At once: the queue for each exit, the monitor for the first.
            assert (queue_wake.sets, monitor_wake.sets) == (5, 1)
            monitor_wake.clear()
            # The four others make one more pass, after the spacing.
            await monitor_wake.wait()
            assert monitor_wake.sets == 2
            await anyio.sleep(SPACING * 2)
            assert monitor_wake.sets == 2
            tg.cancel_scope.cancel()
    exits.close()
