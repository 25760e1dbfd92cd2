"""The multiprocess executor: one forked process per step, up to a concurrency limit."""

from __future__ import annotations

import os
from typing import ClassVar

import anyio
import anyio.abc
import pydantic

from vigil.executors import attempt, base, lifecycle, process
from vigil.executors import plan as plan_mod


class MultiprocessOptions(pydantic.BaseModel):
    """`max_concurrent` step processes at once (default: the CPU count); on cancellation a
    step process gets `terminate_grace` seconds between SIGTERM and SIGKILL."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_concurrent: int | None = pydantic.Field(default=None, ge=1, le=4096)
    terminate_grace: float = pydantic.Field(default=5.0, ge=0.0, le=3600.0)


class MultiprocessExecutor(base.Executor):
    """Starts each step in its own process as soon as its upstreams have succeeded.

    Retries are decided here, in the parent, so a step whose process crashed is retried
    like one that raised.
    """

    name: ClassVar[str] = "multiprocess"
    Options: ClassVar[type[pydantic.BaseModel]] = MultiprocessOptions

    def __init__(self, options: pydantic.BaseModel | None = None) -> None:
        super().__init__(options)
        assert isinstance(self.options, MultiprocessOptions)
        self._max_concurrent = self.options.max_concurrent or os.cpu_count() or 1
        self._grace = self.options.terminate_grace

    async def execute(
        self, plan: plan_mod.StepPlan, services: base.ExecutionServices
    ) -> base.ExecutionResult:
        limiter = anyio.CapacityLimiter(self._max_concurrent)
        execution = _Execution(plan, services, limiter, self._grace)
        async with anyio.create_task_group() as tg:
            execution.advance(tg)
        return execution.tracker.result()


class _Execution(lifecycle.StepDriver):
    """One run's steps, each attempt in a forked process."""

    def __init__(
        self,
        plan: plan_mod.StepPlan,
        services: base.ExecutionServices,
        limiter: anyio.CapacityLimiter,
        grace: float,
    ) -> None:
        super().__init__(plan, services, limiter)
        self._grace = grace

    async def _run_attempt(self, step: str, number: int) -> attempt.Outcome:
        return await process.run_attempt(self.plan, step, number, self.services, self._grace)
