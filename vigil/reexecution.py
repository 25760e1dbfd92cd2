"""Re-executions: a child run of an ended run, for a retry or `vigil run reexecute`.

A child shares its parent's job, code location, run config and tags; it names its parent
and the root of the chain (`parent_run_id`, `root_run_id`, and the tags
`vigil/parent_run_id`, `vigil/root_run_id`, `vigil/retry_number`, `vigil/reexecution`).

- `from_failure`: the child runs the steps that did not succeed in its lineage (the failed
  ones, those skipped after them, those a dead worker never ran), reading every other
  step's output from the run of the lineage that kept it. The worker works the steps out
  when it plans (`worker.lineage.done_steps`), so the daemon never imports user code.
- `all_steps`: the whole job again.
- `steps`: exactly the steps named (upstreams outside them read from the lineage).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence

from vigil import errors, runs

S = runs.RunStatus
WRITTEN_TAGS = frozenset(
    {runs.TAG_RETRY_NUMBER, runs.TAG_PARENT_RUN, runs.TAG_ROOT_RUN, runs.TAG_REEXECUTION}
)


class Mode(enum.StrEnum):
    FROM_FAILURE = "from_failure"
    ALL_STEPS = "all_steps"
    STEPS = "steps"


def child_run(
    parent: runs.Run,
    mode: Mode,
    now: float,
    *,
    steps: Sequence[str] | None = None,
    instigator: str | None = None,
    run_key: str | None = None,
) -> runs.Run:
    """A NOT_STARTED child of an ended run; raises ReexecutionError if it has not ended."""
    if not parent.status.is_terminal:
        raise errors.ReexecutionError(
            f"run {parent.run_id} is {parent.status}: only an ended run can be re-executed"
        )
    if mode is Mode.STEPS and not steps:
        raise errors.ReexecutionError("name at least one step to re-execute")
    root = parent.root_run_id or parent.run_id
    number = parent.retry_number + 1
    tags = {k: v for k, v in parent.tags.items() if k not in WRITTEN_TAGS}
    tags |= {
        runs.TAG_RETRY_NUMBER: str(number),
        runs.TAG_PARENT_RUN: parent.run_id,
        runs.TAG_ROOT_RUN: root,
        runs.TAG_REEXECUTION: mode.value,
    }
    return runs.Run(
        run_id=str(uuid.uuid4()),
        job_name=parent.job_name,
        status=S.NOT_STARTED,
        run_config=dict(parent.run_config),
        tags=tags,
        code_location=parent.code_location,
        step_selection=_selection(parent, mode, steps),
        parent_run_id=parent.run_id,
        root_run_id=root,
        retry_number=number,
        created_at=now,
        updated_at=now,
        instigator=instigator,
        run_key=run_key,
    )


def _selection(parent: runs.Run, mode: Mode, steps: Sequence[str] | None) -> tuple[str, ...] | None:
    if mode is Mode.STEPS:
        return tuple(steps or ())
    if mode is Mode.FROM_FAILURE:
        return parent.step_selection  # narrowed by the worker to what is not done
    return None


def is_from_failure(run: runs.Run) -> bool:
    return run.tags.get(runs.TAG_REEXECUTION) == Mode.FROM_FAILURE.value
