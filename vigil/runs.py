"""Runs: their statuses, the state machine between them, and the frozen run record."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from vigil import errors


class RunStatus(enum.StrEnum):
    NOT_STARTED = "NOT_STARTED"
    QUEUED = "QUEUED"
    STARTING = "STARTING"
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


class EndReason(enum.StrEnum):
    """Why a run ended FAILURE or CANCELED; kept as `data["reason"]` of its end event."""

    STEP_FAILURE = "step_failure"  # a step failed (the worker ended the run)
    ERROR = "error"  # the worker could not plan or execute the run
    LAUNCH_FAILED = "launch_failed"
    WORKER_DIED = "worker_died"
    START_TIMEOUT = "start_timeout"
    MAX_RUNTIME = "max_runtime"
    CANCELED = "canceled"  # a user's cancel
    CANCEL_TIMEOUT = "cancel_timeout"  # a user's cancel the worker did not obey in time


# Tags vigil reads (a job's tags are copied to its runs, so a job may set them too).
TAG_MAX_RUNTIME = "vigil/max_runtime"  # seconds
TAG_MAX_RETRIES = "vigil/max_retries"
TAG_RETRY_STRATEGY = "vigil/retry_strategy"  # from_failure | all_steps
TAG_PARTITION = "vigil/partition"  # the partition key of a partitioned job's run
TAG_CELERY_QUEUE = "vigil/celery_queue"  # the Celery queue of the run's task (Celery launcher)
# Tags vigil writes on a backfill's runs: the backfill, and its concurrency limit (the queue
# holds the backfill's runs beyond it).
TAG_BACKFILL = "vigil/backfill"
TAG_BACKFILL_MAX_CONCURRENT = "vigil/backfill_max_concurrent"
# Tags vigil writes on a re-execution (a retry or `vigil run reexecute`).
TAG_RETRY_NUMBER = "vigil/retry_number"
TAG_PARENT_RUN = "vigil/parent_run_id"
TAG_ROOT_RUN = "vigil/root_run_id"
TAG_REEXECUTION = "vigil/reexecution"  # from_failure | all_steps | steps


TERMINAL_STATUSES = frozenset({RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED})
IN_FLIGHT_STATUSES = frozenset({RunStatus.STARTING, RunStatus.STARTED, RunStatus.CANCELING})

_S = RunStatus
ALLOWED_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    _S.NOT_STARTED: frozenset({_S.QUEUED, _S.STARTING, _S.FAILURE, _S.CANCELING, _S.CANCELED}),
    _S.QUEUED: frozenset({_S.STARTING, _S.FAILURE, _S.CANCELING, _S.CANCELED}),
    # STARTING -> QUEUED: a claim given back, its launcher's service unavailable (nothing sent).
    _S.STARTING: frozenset({_S.QUEUED, _S.STARTED, _S.FAILURE, _S.CANCELING, _S.CANCELED}),
    _S.STARTED: frozenset({_S.SUCCESS, _S.FAILURE, _S.CANCELING, _S.CANCELED}),
    _S.CANCELING: frozenset({_S.CANCELED, _S.FAILURE}),
    _S.SUCCESS: frozenset(),
    _S.FAILURE: frozenset(),
    _S.CANCELED: frozenset(),
}


@dataclasses.dataclass(frozen=True, slots=True)
class RunEnd:
    """How a run ends: its terminal status, why, what to tell, and who ended it.

    The one description of an end that every part passes to the store's `end_run`, which
    writes the end event from it (`data = {"reason": ..., "by": ...}`), so every end event
    carries its reason the same way.
    """

    status: RunStatus
    message: str
    reason: EndReason | None = None
    by: str | None = None  # "worker", "monitor", "coordinator", ...

    def __post_init__(self) -> None:
        if not self.status.is_terminal:
            raise errors.InvalidTransition(f"{self.status} is not an end")


def check_transition(current: RunStatus, new: RunStatus) -> None:
    """Raise InvalidTransition unless the state machine allows current -> new."""
    if new not in ALLOWED_TRANSITIONS[current]:
        raise errors.InvalidTransition(f"a run cannot go from {current} to {new}")


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """One execution of a job, as stored."""

    run_id: str
    job_name: str
    status: RunStatus
    run_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    code_location: str | None = None
    step_selection: tuple[str, ...] | None = None
    parent_run_id: str | None = None
    root_run_id: str | None = None
    retry_number: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    start_time: float | None = None
    end_time: float | None = None
    worker_host: str | None = None
    worker_pid: int | None = None
    launcher_info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Set together or not at all: what submitted the run and its key, unique per instigator.
    instigator: str | None = None
    run_key: str | None = None
    # The current launch: its token, its claimer, when it was recorded (None: not yet).
    launch_token: str | None = None
    claimed_by: str | None = None
    launched_at: float | None = None
    resume_attempt: int = 0  # how many times the monitor gave the run a new worker
    not_before: float | None = None  # not claimed before this time (a waiting retry)
    worker_heartbeat: float | None = None  # when its worker last proved it is alive
