"""The in-process executor: steps one after another, each in a worker thread."""

from __future__ import annotations

import contextlib
import functools
from typing import ClassVar

import anyio.to_thread

from vigil import filemodes
from vigil.executors import attempt, base, lifecycle, progress
from vigil.executors import plan as plan_mod


class InProcessExecutor(base.Executor):
    """Runs the steps sequentially in topological order inside the worker process.

    Each step runs in a worker thread so that the worker's event loop keeps flushing events;
    its stdout and stderr are redirected (at the Python level) to its compute-log files.
    """

    name: ClassVar[str] = "in_process"

    async def execute(
        self, plan: plan_mod.StepPlan, services: base.ExecutionServices
    ) -> base.ExecutionResult:
        tracker = progress.Progress(plan)
        run_attempt = functools.partial(_run_attempt, plan, services)
        while True:
            lifecycle.emit_skipped(plan, services, tracker.take_skipped())
            ready = tracker.take_ready(limit=1)
            if not ready:
                return tracker.result()
            ok = await lifecycle.run_step(plan, ready[0], services, run_attempt)
            tracker.finish(ready[0], ok)


async def _run_attempt(
    plan: plan_mod.StepPlan, services: base.ExecutionServices, step: str, number: int
) -> attempt.Outcome:
    return await anyio.to_thread.run_sync(
        _run_captured, plan, step, number, services, abandon_on_cancel=True
    )


def _run_captured(
    plan: plan_mod.StepPlan, step: str, number: int, services: base.ExecutionServices
) -> attempt.Outcome:
    stdout_path, stderr_path = attempt.log_paths(services.compute_logs_dir, plan.run_id, step)
    with (
        filemodes.private_open(stdout_path, "a", buffering=1, encoding="utf-8") as out,
        filemodes.private_open(stderr_path, "a", buffering=1, encoding="utf-8") as err,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        return attempt.run(plan, step, number, services, services.sink)
