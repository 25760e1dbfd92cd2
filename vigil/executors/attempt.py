"""One attempt at one step: load its inputs, call it, store its output.

`run` is the body shared by both executors; it runs in a worker thread or in a forked
child process and never raises: whatever goes wrong becomes a `Failure`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import traceback
from collections.abc import Mapping
from typing import Any

from vigil import blobs, errors, filemodes
from vigil.executors import base, context
from vigil.executors import plan as plan_mod


@dataclasses.dataclass(frozen=True, slots=True)
class Success:
    locator: str
    type_name: str
    digest: str


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
    services: base.ExecutionServices,
    sink: base.EventSink,
) -> Outcome:
    """Attempt number `number` of `step`; its LOG events go to `sink`."""
    step_def = plan.job.steps[step]
    log = context.StepLog(sink, plan.run_id, step, services.clock)
    ctx = context.StepContext(
        plan.run_id,
        plan.job.name,
        step,
        number,
        plan.config_for(step),
        log,
        plan.partition_key,
        plan.partition_window,
    )
    try:
        inputs = {name: _input(plan, name, services) for name in step_def.inputs}
        value = step_def.invoke(ctx, plan.config_for(step), inputs)
        stored = services.outputs.put(plan.run_id, step, value)
    except BaseException as exc:  # the step's failure, whatever it is, is reported
        return Failure.from_exception(exc)
    return Success(stored.locator, type(value).__name__, stored.digest)


def _input(plan: plan_mod.StepPlan, upstream: str, services: base.ExecutionServices) -> Any:
    """The output of `upstream`, read only as the bytes its run recorded: an upstream of
    this plan by the digest its attempt returned, another run's by the plan's digest."""
    source = plan.source_run(upstream)
    if upstream in plan.steps:
        digest = services.digests.get(upstream)
    else:
        digest = plan.input_digests.get(upstream)
    if digest is None:
        raise errors.OutputMismatch(
            f"output of step {upstream} from run {source} has no recorded digest: "
            "refusing to load it"
        )
    return services.outputs.get(source, upstream, digest)


def log_paths(
    compute_logs_dir: pathlib.Path, run_id: str, step: str
) -> tuple[pathlib.Path, pathlib.Path]:
    """The stdout and stderr files of a step (all attempts append to them)."""
    directory = compute_logs_dir / run_id / step
    filemodes.private_dirs(directory)
    return directory / "stdout.log", directory / "stderr.log"


def upload_logs(services: base.ExecutionServices, root: blobs.Root, run_id: str, step: str) -> None:
    """Copy a step's log files from this machine to `root` (each one atomically)."""
    for path in log_paths(services.compute_logs_dir, run_id, step):
        if path.is_file():
            root.upload(f"{run_id}/{step}/{path.name}", path)


def _describe(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose str() failed>"
