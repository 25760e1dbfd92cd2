"""Turning a user's request into a run record, and waiting for a run to end.

`checked_run` makes the run from what a code location's evaluation process checked (the
CLI's way: user code stays out of its process); `new_run` checks it in this process, for
`vigil job execute`, which loads the code location itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from vigil import runs
from vigil.definitions import workspace as workspace_mod
from vigil.evaluation import messages
from vigil.storage import store as store_mod

POLL_FIRST = 0.005
POLL_MAX = 0.05


def checked_run(checked: messages.RequestedRun, location: str, now: float) -> runs.Run:
    """A NOT_STARTED run of what an evaluation process checked (its tags already merged)."""
    run_id = str(uuid.uuid4())
    return runs.Run(
        run_id=run_id,
        job_name=checked.job,
        status=runs.RunStatus.NOT_STARTED,
        run_config=dict(checked.run_config),
        tags=dict(checked.tags),
        code_location=location,
        root_run_id=run_id,
        created_at=now,
        updated_at=now,
    )


def new_run(
    workspace: workspace_mod.Workspace,
    job_name: str,
    run_config: Mapping[str, Any],
    tags: Mapping[str, str],
    now: float,
) -> runs.Run:
    """A NOT_STARTED run of a known job whose config validates (else UnknownJob/RunConfigError)."""
    location, job = workspace.find_job(job_name)
    job.validate_run_config(run_config)
    run_id = str(uuid.uuid4())
    return runs.Run(
        run_id=run_id,
        job_name=job.name,
        status=runs.RunStatus.NOT_STARTED,
        run_config=dict(run_config),
        tags={**job.tags, **tags},
        code_location=location.name,
        root_run_id=run_id,
        created_at=now,
        updated_at=now,
    )


async def wait_for_end(
    store: store_mod.RunReader,
    run_id: str,
    on_poll: Callable[[runs.Run], None] | None = None,
) -> runs.Run:
    """Poll the store until the run reaches a terminal status, backing off to POLL_MAX."""
    delay = POLL_FIRST
    while True:
        run = await store.get_run(run_id)
        if on_poll is not None:
            on_poll(run)
        if run.status.is_terminal:
            return run
        await anyio.sleep(delay)
        delay = min(delay * 1.25, POLL_MAX)
