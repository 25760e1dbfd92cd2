"""A service: something the supervisor keeps running in its task group, beside the loops.

The loops' runners and heartbeat writers are services; so are the extras `vigil daemon run`
adds (the HTTP server, the systemd notifier). A service runs until it is cancelled: one
that returns or raises before the daemon stops is a crash, logged and restarted with the
daemon's restart backoff. Services are cancelled once the loops have drained at shutdown.

`run` is called as `run(task_status=...)` and calls `task_status.started(...)` once it
serves (a bound socket, say); with `ready_on_start` it is called as `run()` and counts as
ready at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc


@dataclasses.dataclass(frozen=True, slots=True)
class Service:
    name: str
    run: Callable[..., Awaitable[object]]
    ready_on_start: bool = False

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        if self.ready_on_start:
            task_status.started()
            await self.run()
        else:
            await self.run(task_status=task_status)
