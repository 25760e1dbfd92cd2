"""The celery executor: each step attempt is a Celery task, run by any `vigil celery worker`.

The run worker keeps the step's life (`lifecycle.run_step`: STEP_START, retries with
backoff, STEP_OUTPUT, STEP_SUCCESS or STEP_FAILURE), as the multiprocess executor does; an
attempt is sent as a step task (`vigil.celery.step_task`) to the queue the step's
`vigil/celery_queue` tag names, else the options' `queue`, else the launcher's. The Celery
worker runs the attempt in a step process of its own that reads its inputs from, and
writes its output to, the storage root (a shared path or URL). The task's result carries
the attempt's events (its LOG events) and outcome: the run worker writes them through its
own sink, after STEP_START and before STEP_OUTPUT, so the run's events stay in order and
each is written once, by one writer.

The run worker reads the task's state every `poll_interval` seconds. A step process that
died is a crash (its signal or exit code), retried by the step's policy; so is a task that
ended FAILURE or REVOKED without a result (a pool process that died: Celery marks it
FAILURE), and a STARTED task whose Celery worker missed `lost_after` pings in a row, one
every `check_interval` seconds (a machine that vanished): that task is revoked first.
Cancelling the run worker revokes its in-flight tasks with termination (SIGTERM to the
step process, SIGKILL after `terminate_grace`).

The broker and result backend are the celery run launcher's (`run_launcher.options`).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

import anyio
import anyio.abc
import kombu.exceptions
import pydantic
import redis.exceptions

from vigil import errors, events, runs
from vigil.celery import app as app_mod
from vigil.celery import options as options_mod
from vigil.celery import step as step_mod
from vigil.executors import attempt, base, lifecycle, process
from vigil.executors import plan as plan_mod

if TYPE_CHECKING:
    import celery

    from vigil.config import settings as settings_mod

UNREACHABLE = (kombu.exceptions.OperationalError, redis.exceptions.RedisError, OSError)
ENDED = frozenset({"FAILURE", "REVOKED"})
LOST = "StepTaskLost"
NOT_SENT = "StepTaskNotSent"
PING_TIMEOUT = 2.0


class CeleryExecutorOptions(pydantic.BaseModel):
    """`queue` of the step tasks (default: the launcher's); at most `max_concurrent` of a
    run's steps sent at once (default: no limit but the Celery workers'); the other
    intervals as the module says."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    queue: str | None = pydantic.Field(default=None, min_length=1, max_length=200)
    max_concurrent: int | None = pydantic.Field(default=None, ge=1, le=4096)
    terminate_grace: float = pydantic.Field(default=5.0, ge=0.0, le=3600.0)
    poll_interval: float = pydantic.Field(default=0.2, gt=0.0, le=60.0)
    check_interval: float = pydantic.Field(default=10.0, gt=0.0, le=3600.0)
    lost_after: int = pydantic.Field(default=3, ge=1, le=1000)


class CeleryExecutor(base.Executor):
    """Sends each step attempt to a Celery worker, as soon as its upstreams succeeded."""

    name: ClassVar[str] = "celery"
    Options: ClassVar[type[pydantic.BaseModel]] = CeleryExecutorOptions

    def __init__(
        self,
        options: pydantic.BaseModel | None = None,
        broker: options_mod.CeleryOptions | None = None,
    ) -> None:
        super().__init__(options)
        assert isinstance(self.options, CeleryExecutorOptions)
        self._opts: CeleryExecutorOptions = self.options
        self._broker = broker

    @classmethod
    def for_settings(
        cls, options: pydantic.BaseModel, settings: settings_mod.InstanceSettings
    ) -> Self:
        if settings.run_launcher.type != "celery":
            raise errors.ConfigError(
                "executor.type: the celery executor sends steps through the celery run "
                f"launcher's broker (this instance's launcher is {settings.run_launcher.type!r})"
            )
        broker = options_mod.CeleryOptions.model_validate(dict(settings.run_launcher.options))
        return cls(options, broker)

    async def execute(
        self, plan: plan_mod.StepPlan, services: base.ExecutionServices
    ) -> base.ExecutionResult:
        if self._broker is None:
            raise errors.ConfigError("executor.type: the celery executor needs a broker")
        tasks = _Tasks(app_mod.build_app(self._broker), self._opts, self._broker)
        maximum = self._opts.max_concurrent
        limiter = None if maximum is None else anyio.CapacityLimiter(maximum)
        execution = _Execution(plan, services, tasks, limiter)
        try:
            async with anyio.create_task_group() as tg:
                execution.advance(tg)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(tasks.app.close)
        return execution.tracker.result()


class _Execution(lifecycle.StepDriver):
    """One call of `execute`: sends steps as their upstreams succeed."""

    def __init__(
        self,
        plan: plan_mod.StepPlan,
        services: base.ExecutionServices,
        tasks: _Tasks,
        limiter: anyio.CapacityLimiter | None,
    ) -> None:
        super().__init__(plan, services, limiter)
        self._tasks = tasks

    async def _run_attempt(self, step: str, number: int) -> attempt.Outcome:
        try:
            request = _request(self.plan, step, number, self.services, self._tasks.grace)
        except Exception as exc:
            return attempt.Failure.from_exception(exc)
        task_id = f"{self.plan.run_id}:{step}:{number}:{uuid.uuid4().hex[:12]}"
        queue = self._tasks.queue_of(self.plan.job.steps[step].tags)
        report = await self._tasks.run(task_id, request, queue)
        if isinstance(report, attempt.Failure):
            return report
        self._emit_report(step, task_id, report)
        return report.outcome or process.crash(report.exit_code)

    def _emit_report(self, step: str, task_id: str, report: step_mod.StepReport) -> None:
        where = {"host": report.host, "pid": report.pid, "task_id": task_id}
        message = f"ran in process {report.pid} on {report.host} (Celery task {task_id})"
        self.services.sink.emit(
            events.NewEvent(
                run_id=self.plan.run_id,
                event_type=events.EventType.ENGINE,
                timestamp=self.services.clock(),
                step=step,
                message=message,
                data=where,
            )
        )
        for event in report.events:
            self.services.sink.emit(event)


def _request(
    plan: plan_mod.StepPlan,
    step: str,
    number: int,
    services: base.ExecutionServices,
    grace: float,
) -> step_mod.StepRequest:
    if plan.code_location is None:
        raise errors.DefinitionError(f"run {plan.run_id}: the plan names no code location")
    inputs: dict[str, tuple[str, str]] = {}
    for upstream in plan.job.steps[step].inputs:
        own = upstream in plan.steps
        digest = services.digests.get(upstream) if own else plan.input_digests.get(upstream)
        if digest is not None:
            inputs[upstream] = (plan.source_run(upstream), digest)
    config = plan.config_for(step)
    return step_mod.StepRequest(
        run_id=plan.run_id,
        code_location=plan.code_location,
        job_name=plan.job.name,
        step=step,
        attempt=number,
        config=None if config is None else config.model_dump(mode="json"),
        inputs=inputs,
        partition_key=plan.partition_key,
        terminate_grace=grace,
    )


class _Tasks:
    """The step tasks of one execution, through one Celery app (its calls block: each runs
    in a worker thread)."""

    def __init__(
        self,
        app: celery.Celery,
        opts: CeleryExecutorOptions,
        broker: options_mod.CeleryOptions,
    ) -> None:
        self.app = app
        self.grace = opts.terminate_grace
        self.where = options_mod.where(options_mod.broker_url(broker))
        self._opts = opts
        self._default_queue = opts.queue or broker.queue
        self._timeout = broker.connect_timeout

    def queue_of(self, tags: Mapping[str, str]) -> str:
        return tags.get(runs.TAG_CELERY_QUEUE) or self._default_queue

    def publish(self, task_id: str, request: step_mod.StepRequest, queue: str) -> None:
        amqp = self.app.amqp
        message = amqp.create_task_message(task_id, step_mod.TASK_NAME, (), request.to_json())
        with self.app.producer_or_acquire() as producer:
            amqp.send_task_message(producer, step_mod.TASK_NAME, message, queue=queue, retry=False)

    async def run(
        self, task_id: str, request: step_mod.StepRequest, queue: str
    ) -> step_mod.StepReport | attempt.Failure:
        """Send the task and return its report once it ends; a Failure when it could not
        be sent, ended without a report, or its worker was lost. Cancelled, even while the
        message is on its way, the task is revoked with termination."""
        ended = False
        try:
            found = await self._send_and_watch(task_id, request, queue)
            ended = True
        finally:
            if not ended:
                with anyio.CancelScope(shield=True):
                    await self._revoke(task_id, "SIGTERM")
        await self._forget(task_id)
        return found

    async def _send_and_watch(
        self, task_id: str, request: step_mod.StepRequest, queue: str
    ) -> step_mod.StepReport | attempt.Failure:
        try:
            await anyio.to_thread.run_sync(self.publish, task_id, request, queue)
        except UNREACHABLE as exc:
            message = f"cannot send step {request.step} to the Celery broker at {self.where}"
            return attempt.Failure(NOT_SENT, f"{message}: {_reason(exc)}")
        return await self._watch(task_id, request.run_id, request.step)

    async def _watch(
        self, task_id: str, run_id: str, step: str
    ) -> step_mod.StepReport | attempt.Failure:
        watch = Watch(self._opts.check_interval, self._opts.lost_after)
        while True:
            state, result = await self._state(task_id)
            if state == "SUCCESS" and isinstance(result, dict):
                return step_mod.StepReport.from_json(result, run_id, step)
            if state in ENDED or state == "SUCCESS":
                return attempt.Failure(LOST, f"Celery task {task_id} ended {state}: {result}")
            if state == "STARTED" and watch.due() and watch.lost(await self._answers(result)):
                await self._revoke(task_id, "SIGKILL")
                node = result.get("hostname") if isinstance(result, dict) else None
                message = f"Celery worker {node} stopped answering (task {task_id})"
                return attempt.Failure(LOST, message)
            await anyio.sleep(self._opts.poll_interval)

    async def _state(self, task_id: str) -> tuple[str, Any]:
        """The task's state and result; PENDING while the backend cannot be read."""
        try:
            meta = await anyio.to_thread.run_sync(self.app.backend.get_task_meta, task_id)
        except UNREACHABLE:
            return "PENDING", None
        return str(meta.get("status")), meta.get("result")

    async def _answers(self, started: Any) -> bool:
        """Whether the Celery worker that started the task answers a ping (True when the
        state does not name it, or the broker cannot be reached: never lost on doubt)."""
        node = started.get("hostname") if isinstance(started, dict) else None
        if node is None:
            return True
        try:
            replies = await anyio.to_thread.run_sync(self._ping, str(node))
        except UNREACHABLE:
            return True
        return bool(replies)

    def _ping(self, node: str) -> Any:
        return self.app.control.ping(destination=[node], timeout=PING_TIMEOUT)

    async def _revoke(self, task_id: str, signame: str) -> None:
        with anyio.move_on_after(self._timeout * 2), contextlib.suppress(*UNREACHABLE):
            await anyio.to_thread.run_sync(self._send_revoke, task_id, signame)

    def _send_revoke(self, task_id: str, signame: str) -> None:
        self.app.control.revoke(task_id, terminate=True, signal=signame)

    async def _forget(self, task_id: str) -> None:
        """Delete the task's result (the report was read, once)."""
        with anyio.CancelScope(shield=True), contextlib.suppress(*UNREACHABLE):
            await anyio.to_thread.run_sync(self.app.backend.forget, task_id)


class Watch:
    """When the next ping of a started task's worker is due, and how many it missed."""

    def __init__(self, interval: float, lost_after: int) -> None:
        self._interval = interval
        self._lost_after = lost_after
        self._next = time.monotonic() + interval
        self._missed = 0

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._interval
        return True

    def lost(self, answered: bool) -> bool:
        """Count a ping's answer; True once `lost_after` pings in a row went unanswered."""
        self._missed = 0 if answered else self._missed + 1
        return self._missed >= self._lost_after


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if "://" not in text else type(exc).__name__
