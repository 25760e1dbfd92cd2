"""The supervisor: one task group for the loops' runners and the daemon's services.

`run()` starts each loop's runner, then each service, waiting for each to signal
readiness, then signals its own. A runner or service that raises or returns before the
daemon stops is logged and restarted after a capped exponential backoff with jitter; one
child's crash never touches another. (A loop's own iteration errors are handled by its
runner, which never raises them.)

Shutdown (`stop()`): the runners start no more iterations; running ones get
`shutdown_grace` to finish; then the task group is cancelled, which ends the services
(the heartbeat writers write their final, stopped heartbeats as they end).

For the HTTP and systemd services: `statistics()` (cheap snapshots), `alive`,
`stopping` and `wait_stopping()`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.abc

from vigil.config import settings
from vigil.daemon import clock as clock_mod
from vigil.daemon import loop as loop_mod
from vigil.daemon import runner as runner_mod
from vigil.daemon import service as service_mod

logger = logging.getLogger(__name__)


class SupervisorState(enum.StrEnum):
    NEW = "new"
    STARTING = "starting"  # starting its children, each waited for until ready
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class _Readiness:
    """Passes a child's first `started()` on, once, whichever attempt makes it."""

    def __init__(self, inner: anyio.abc.TaskStatus[Any]) -> None:
        self._inner = inner
        self._done = False

    def started(self, value: object = None) -> None:
        if not self._done:
            self._done = True
            self._inner.started(value)


class Supervisor:
    def __init__(
        self,
        runners: Sequence[runner_mod.LoopRunner],
        *,
        clock: clock_mod.Clock,
        restart: settings.BackoffSettings,
        rand: Callable[[], float],
        shutdown_grace: float,
    ) -> None:
        self._runners = tuple(runners)
        self._clock = clock
        self._restart = restart
        self._rand = rand
        self._grace = shutdown_grace
        self._state = SupervisorState.NEW
        self._stop_requested = anyio.Event()
        self._loops_left = len(self._runners)
        self._loops_done = anyio.Event()
        if not self._runners:
            self._loops_done.set()

    # what services may read ------------------------------------------------------------
    def statistics(self) -> list[loop_mod.LoopStatistics]:
        """Each loop's snapshot, in registration order."""
        return [runner.statistics() for runner in self._runners]

    @property
    def loop_names(self) -> list[str]:
        return [runner.name for runner in self._runners]

    @property
    def state(self) -> SupervisorState:
        return self._state

    @property
    def alive(self) -> bool:
        """The supervisor is running (starting its children, serving, or draining)."""
        return self._state in (
            SupervisorState.STARTING,
            SupervisorState.RUNNING,
            SupervisorState.STOPPING,
        )

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    async def wait_stopping(self) -> None:
        """Return once a shutdown was requested."""
        await self._stop_requested.wait()

    # control ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Begin the shutdown: drain the loops within the grace, then cancel the rest."""
        self._stop_requested.set()

    def reload(self, workspace: Sequence[settings.CodeLocationSettings]) -> None:
        """Give every loop the reloaded workspace before its next iteration."""
        for runner in self._runners:
            runner.request_reload(workspace)

    async def run(
        self,
        services: Sequence[service_mod.Service] = (),
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the loops and `services` until `stop()` and the drain; then return."""
        self._state = SupervisorState.STARTING
        try:
            async with anyio.create_task_group() as tg:
                for runner in self._runners:
                    await tg.start(self._guard_loop, runner)
                for service in services:
                    await tg.start(self._guard, service)
                self._state = SupervisorState.RUNNING
                task_status.started()
                await self._stop_requested.wait()
                self._state = SupervisorState.STOPPING
                await self._drain()
                tg.cancel_scope.cancel()
        finally:
            self._state = SupervisorState.STOPPED

    async def _drain(self) -> None:
        for runner in self._runners:
            runner.stop()
        deadline = self._clock.now() + self._grace
        if await clock_mod.wait_any(self._clock, deadline, self._loops_done):
            return
        running = [s.name for s in self.statistics() if s.state is not loop_mod.LoopState.STOPPED]
        logger.warning(
            "loops %s still running after the %ss shutdown grace; cancelling them",
            ", ".join(running),
            self._grace,
            extra={"event": "daemon.drain_timeout", "loops": running},
        )

    async def _guard_loop(
        self,
        runner: runner_mod.LoopRunner,
        *,
        task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await self._guard(service_mod.Service(runner.name, runner.run), task_status=task_status)
        finally:
            self._loops_left -= 1
            if self._loops_left == 0:
                self._loops_done.set()

    async def _guard(
        self,
        service: service_mod.Service,
        *,
        task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep `service` running until the shutdown; restart it after a crash."""
        readiness = _Readiness(task_status)
        attempt = 0
        while True:
            began = self._clock.now()
            error = await _attempt(service, readiness)
            readiness.started()
            if self._stop_requested.is_set():
                return
            ran_long = self._clock.now() - began >= self._restart.cap
            attempt = 1 if ran_long else attempt + 1
            delay = runner_mod.restart_delay(self._restart, attempt, self._rand)
            _log_crash(service.name, error, delay)
            deadline = self._clock.now() + delay
            if await clock_mod.wait_any(self._clock, deadline, self._stop_requested):
                return


async def _attempt(
    service: service_mod.Service, readiness: anyio.abc.TaskStatus[Any]
) -> BaseException | None:
    """Run the service once; its error, or None if it returned."""
    try:
        await service.serve(task_status=readiness)
    except (Exception, SystemExit) as exc:
        return exc
    return None


def _log_crash(name: str, error: BaseException | None, delay: float) -> None:
    what = "returned" if error is None else f"crashed: {type(error).__qualname__}: {error}"
    logger.error(
        "%s %s; restarting in %.2fs",
        name,
        what,
        delay,
        exc_info=error,
        extra={"event": "service.crashed", "service": name, "restart_in": round(delay, 3)},
    )
