"""The life of one step: attempts, retries with backoff, and the events that tell it.

Every executor drives steps through `run_step`; they differ only in how one attempt runs
(a worker thread, a forked process, a Celery task), which they pass in as `run_attempt`.
`StepDriver` is the part of a run the process-based executors share: it starts each step
as soon as its inputs are ready, and leaves the attempt to its subclass.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import anyio.abc

from vigil import blobs, events
from vigil.definitions import step as step_mod
from vigil.executors import attempt, base, progress
from vigil.executors import plan as plan_mod
from vigil.scheduling import backoff

AttemptRunner = Callable[[str, int], Awaitable[attempt.Outcome]]

_NO_RETRY = step_mod.RetryPolicy()
_T = events.EventType


class StepDriver(abc.ABC):
    """One run's steps, each started as soon as its inputs are ready; `advance` starts them."""

    def __init__(
        self,
        plan: plan_mod.StepPlan,
        services: base.ExecutionServices,
        limiter: anyio.CapacityLimiter | None,
    ) -> None:
        self.plan = plan
        self.services = services
        self.tracker = progress.Progress(plan)
        self._limiter = limiter

    def advance(self, tg: anyio.abc.TaskGroup) -> None:
        emit_skipped(self.plan, self.services, self.tracker.take_skipped())
        for step in self.tracker.take_ready():
            tg.start_soon(self._run_step, tg, step, name=f"step {step}")

    async def _run_step(self, tg: anyio.abc.TaskGroup, step: str) -> None:
        ok = await run_step(self.plan, step, self.services, self._run_attempt, self._limiter)
        self.tracker.finish(step, ok)
        self.advance(tg)

    @abc.abstractmethod
    async def _run_attempt(self, step: str, number: int) -> attempt.Outcome:
        """Run one attempt of the step to its outcome."""


async def run_step(
    plan: plan_mod.StepPlan,
    step: str,
    services: base.ExecutionServices,
    run_attempt: AttemptRunner,
    limiter: anyio.CapacityLimiter | None = None,
) -> bool:
    """Attempt the step until it succeeds or its retries run out; True if it succeeded.

    Each attempt holds a token of `limiter` (if any) from its STEP_START to its end; the
    wait before a retry holds none.
    """
    policy = plan.job.steps[step].retry or _NO_RETRY
    number = 1
    while True:
        async with limiter or contextlib.nullcontext():
            outcome = await _attempt(plan, step, number, services, run_attempt)
        if isinstance(outcome, attempt.Success):
            return True
        if number > policy.max_retries:
            _emit(services, plan, step, _T.STEP_FAILURE, outcome.summary, _failure(outcome, number))
            return False
        delay = backoff.retry_delay(policy, number, services.rand)
        _emit_retry(services, plan, step, outcome, number, delay)
        await anyio.sleep(delay)
        number += 1


def emit_skipped(
    plan: plan_mod.StepPlan,
    services: base.ExecutionServices,
    skipped: Iterable[tuple[str, str, str]],
) -> None:
    """Tell which steps will not run, and which failed upstream step is the reason."""
    for step, upstream, failed in skipped:
        reason = f"upstream step '{failed}' failed"
        if upstream != failed:
            reason = f"upstream step '{upstream}' was skipped because step '{failed}' failed"
        data = {"upstream": upstream, "failed_step": failed}
        _emit(services, plan, step, _T.STEP_SKIPPED, f"skipped: {reason}", data)


async def _attempt(
    plan: plan_mod.StepPlan,
    step: str,
    number: int,
    services: base.ExecutionServices,
    run_attempt: AttemptRunner,
) -> attempt.Outcome:
    started = services.clock()
    _emit(services, plan, step, _T.STEP_START, f"attempt {number}", {"attempt": number})
    outcome = await run_attempt(step, number)
    if services.logs_upload is not None:
        await _upload_logs(services, services.logs_upload, plan, step)
    if isinstance(outcome, attempt.Success):
        # Before the step counts as done: a downstream step reads it only by this digest.
        services.digests[step] = outcome.digest
        output = {"locator": outcome.locator, "type": outcome.type_name, "digest": outcome.digest}
        _emit(services, plan, step, _T.STEP_OUTPUT, f"output: {outcome.type_name}", output)
        duration = max(0.0, services.clock() - started)
        done = {"attempt": number, "duration": duration}
        _emit(services, plan, step, _T.STEP_SUCCESS, f"succeeded in {duration:.3f}s", done)
    return outcome


async def _upload_logs(
    services: base.ExecutionServices, root: blobs.Root, plan: plan_mod.StepPlan, step: str
) -> None:
    """Copy the step's log files to `logs_dir`; a failure is told, the step goes on."""
    try:
        await anyio.to_thread.run_sync(attempt.upload_logs, services, root, plan.run_id, step)
    except Exception as exc:  # the logs are still on this machine; the run is not harmed
        message = f"could not upload the compute logs of step {step} to {root.url}: {exc}"
        services.sink.emit(
            events.NewEvent(
                run_id=plan.run_id,
                event_type=_T.ENGINE,
                timestamp=services.clock(),
                step=step,
                level="WARNING",
                message=message,
            )
        )


def _emit_retry(
    services: base.ExecutionServices,
    plan: plan_mod.StepPlan,
    step: str,
    outcome: attempt.Failure,
    number: int,
    delay: float,
) -> None:
    message = f"attempt {number} failed ({outcome.summary}); retrying in {delay:.3f}s"
    data = {
        "attempt": number,
        "delay": delay,
        "error_type": outcome.error_type,
        "message": outcome.message,
    }
    _emit(services, plan, step, _T.STEP_RETRY, message, data)


def _failure(outcome: attempt.Failure, number: int) -> dict[str, Any]:
    return {
        "error_type": outcome.error_type,
        "message": outcome.message,
        "traceback": outcome.traceback,
        "attempt": number,
        **outcome.details,
    }


def _emit(
    services: base.ExecutionServices,
    plan: plan_mod.StepPlan,
    step: str,
    event_type: events.EventType,
    message: str,
    data: dict[str, Any],
) -> None:
    services.sink.emit(
        events.NewEvent(
            run_id=plan.run_id,
            event_type=event_type,
            timestamp=services.clock(),
            step=step,
            message=message,
            data=data,
        )
    )
