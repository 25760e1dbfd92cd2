"""One attempt at one step: load its inputs, call it, store its output.

`run` is the body shared by both executors; it runs in a worker thread or in a forked
child process and never raises: whatever goes wrong becomes a `Failure`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from vigil.executors import base, context, outputs
from vigil.executors import plan as plan_mod


@dataclasses.dataclass(frozen=True, slots=True)
class Success:
    locator: str
    type_name: str


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    error_type: str
    message: str
    traceback: str = ""
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failure:
        return cls(type(exc).__name__, _describe(exc), "".join(traceback.format_exception(exc)))

    @property
    def summary(self) -> str:
        return f"{self.error_type}: {self.message}"


Outcome = Success | Failure


def run(
    plan: plan_mod.StepPlan,
    step: str,
    number: int,
    store: outputs.OutputStore,
    sink: base.EventSink,
    clock: Callable[[], float],
) -> Outcome:
    """Attempt number `number` of `step`; its LOG events go to `sink`."""
    step_def = plan.job.steps[step]
    log = context.StepLog(sink, plan.run_id, step, clock)
    ctx = context.StepContext(plan.run_id, plan.job.name, step, number, plan.config_for(step), log)
    try:
        inputs = {name: store.get(plan.source_run(name), name) for name in step_def.inputs}
        value = step_def.invoke(ctx, plan.config_for(step), inputs)
        locator = store.put(plan.run_id, step, value)
    except BaseException as exc:  # the step's failure, whatever it is, is reported
        return Failure.from_exception(exc)
    return Success(locator, type(value).__name__)


def log_paths(
    compute_logs_dir: pathlib.Path, run_id: str, step: str
) -> tuple[pathlib.Path, pathlib.Path]:
    """The stdout and stderr files of a step (all attempts append to them)."""
    directory = compute_logs_dir / run_id / step
    directory.mkdir(parents=True, exist_ok=True)
    return directory / "stdout.log", directory / "stderr.log"


def _describe(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose str() failed>"
