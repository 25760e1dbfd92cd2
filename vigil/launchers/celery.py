"""The Celery launcher: a run's worker is a Celery task on any `vigil celery worker`.

`launch` sends one task per run to the queue its `vigil/celery_queue` tag names (else the
options' `queue`); the task starts a run worker process on the Celery worker's machine
(`vigil.celery.task`). The launch facts are the task's id and queue (`TaskInfo`); the run
worker records its own host and pid. `terminate` revokes the task with termination (the
task forwards SIGTERM to its run worker, which ends the run CANCELED); the health check
reads the task's state from the result backend and pings the Celery worker running it,
UNKNOWN when it cannot tell. A broker that cannot be reached is `LauncherUnavailable`:
nothing was sent, the run may be launched again.

Celery's calls block: each runs in a worker thread, bounded by `connect_timeout`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import anyio
import kombu.exceptions
import pydantic
import redis.exceptions

from vigil import errors, runs
from vigil.celery import app as app_mod
from vigil.celery import options as options_mod
from vigil.celery import task as task_mod
from vigil.launchers import base

H = base.WorkerHealth
# What a broker or result backend that cannot be reached raises through Celery.
UNREACHABLE = (kombu.exceptions.OperationalError, redis.exceptions.RedisError, OSError)
ENDED_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
RUNNING_STATES = frozenset({"STARTED", "RETRY"})
PING_TIMEOUT = 2.0  # seconds a started task's Celery worker has to answer a ping


class CeleryLauncher(base.RunLauncher):
    Options = options_mod.CeleryOptions
    supports_resume: ClassVar[bool] = True

    def __init__(self, options: pydantic.BaseModel, context: base.LaunchContext) -> None:
        super().__init__(options, context)
        assert isinstance(options, options_mod.CeleryOptions)
        self._opts = options
        self._broker = options_mod.where(options_mod.broker_url(options))
        self._app = app_mod.build_app(options)

    @classmethod
    def reachable(cls, options: pydantic.BaseModel) -> str | None:
        assert isinstance(options, options_mod.CeleryOptions)
        url = options_mod.broker_url(options)
        app = app_mod.build_app(options)
        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=options.connect_timeout)
        except UNREACHABLE as exc:
            key = "broker_url" if options.broker_url is not None else "broker_url_file"
            return (
                f"run_launcher.options.{key}: cannot reach the broker at "
                f"{options_mod.where(url)}: {_reason(exc)}"
            )
        finally:
            app.close()
        return None

    async def launch(self, run: runs.Run) -> Mapping[str, Any]:
        return await self._send(run, resume=False)

    async def resume(self, run: runs.Run) -> Mapping[str, Any]:
        return await self._send(run, resume=True)

    async def _send(self, run: runs.Run, resume: bool) -> Mapping[str, Any]:
        request = task_mod.RunRequest(run.run_id, run.launch_token, resume)
        queue = run.tags.get(runs.TAG_CELERY_QUEUE) or self._opts.queue
        try:
            await anyio.to_thread.run_sync(self._publish, request, queue)
        except UNREACHABLE as exc:
            raise errors.LauncherUnavailable(
                f"cannot send run {run.run_id} to the Celery broker at {self._broker}: "
                f"{_reason(exc)}"
            ) from None
        return TaskInfo(request.task_id, queue).to_info()

    def _publish(self, request: task_mod.RunRequest, queue: str) -> None:
        """Send the task message, and only that: unlike `send_task` it does not subscribe to
        the task's result (the launcher reads states, never waits on a result), so a broker
        that is down fails the send at once."""
        amqp = self._app.amqp
        message = amqp.create_task_message(
            request.task_id, app_mod.TASK_NAME, (), request.to_kwargs()
        )
        with self._app.producer_or_acquire() as producer:
            amqp.send_task_message(producer, app_mod.TASK_NAME, message, queue=queue, retry=False)

    async def terminate(self, run: runs.Run) -> bool:
        """Revoke the task, terminating it with SIGTERM (passed on to the run worker); False
        when it had not started (a revoked task is dropped: no worker will take the run).
        True when the broker cannot be reached: a worker may be alive (the monitor's cancel
        timeout settles a run nobody ends)."""
        return await self._revoke(run, "SIGTERM")

    async def kill(self, run: runs.Run) -> bool:
        """Revoke the task with SIGKILL: its pool process dies, and the run worker with it
        (on Linux, `PR_SET_PDEATHSIG`; elsewhere the run worker may live on)."""
        return await self._revoke(run, "SIGKILL")

    async def _revoke(self, run: runs.Run, signame: str) -> bool:
        info = TaskInfo.from_info(run.launcher_info)
        if info.task_id is None:
            return False
        try:
            state, _ = await anyio.to_thread.run_sync(self._task_state, info.task_id)
            await anyio.to_thread.run_sync(self._send_revoke, info.task_id, signame)
        except UNREACHABLE:
            return True
        return state in RUNNING_STATES

    def _send_revoke(self, task_id: str, signame: str) -> None:
        self._app.control.revoke(task_id, terminate=True, signal=signame)

    def _task_state(self, task_id: str) -> tuple[str, str | None]:
        """The task's state in the result backend, and the Celery worker that started it."""
        meta = self._app.backend.get_task_meta(task_id)
        result = meta.get("result")
        node = result.get("hostname") if isinstance(result, dict) else None
        return str(meta.get("status")), None if node is None else str(node)

    def _look(self, task_id: str) -> tuple[str, str | None, bool]:
        """The task's state, its Celery worker, and whether that worker answers a ping (a
        task not started, or ended, is not asked about)."""
        state, node = self._task_state(task_id)
        if state not in RUNNING_STATES or node is None:
            return state, node, True
        replies = self._app.control.ping(destination=[node], timeout=PING_TIMEOUT)
        return state, node, bool(replies)

    async def check_worker_health(self, run: runs.Run) -> base.HealthCheck:
        """RUNNING while the task is started and its Celery worker answers a ping; DEAD once
        the task ended (its run worker exited); else UNKNOWN (never DEAD on doubt)."""
        info = TaskInfo.from_info(run.launcher_info)
        if info.task_id is None:
            return base.HealthCheck(H.UNKNOWN, "no Celery task recorded yet")
        task = f"Celery task {info.task_id}"
        try:
            state, node, answers = await anyio.to_thread.run_sync(self._look, info.task_id)
        except UNREACHABLE as exc:
            return base.HealthCheck(H.UNKNOWN, f"broker or result backend: {_reason(exc)}")
        if not answers:
            return base.HealthCheck(H.UNKNOWN, f"{task}: worker {node} does not answer")
        if state in RUNNING_STATES:
            return base.HealthCheck(H.RUNNING, f"{task} {state} on {node or 'a worker'}")
        if state in ENDED_STATES:
            return base.HealthCheck(H.DEAD, f"{task} ended {state}")
        return base.HealthCheck(H.UNKNOWN, f"{task} {state}")

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._app.close)


@dataclasses.dataclass(frozen=True, slots=True)
class TaskInfo:
    """A run's Celery task as the launcher records it in `launcher_info`."""

    task_id: str | None
    queue: str | None

    def to_info(self) -> dict[str, Any]:
        return {"launcher": "celery", "task_id": self.task_id, "queue": self.queue}

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> TaskInfo:
        task_id, queue = info.get("task_id"), info.get("queue")
        return cls(
            task_id=None if task_id is None else str(task_id),
            queue=None if queue is None else str(queue),
        )


def _reason(exc: BaseException) -> str:
    """The error in one line, without any URL it may quote."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if "://" not in text else type(exc).__name__
