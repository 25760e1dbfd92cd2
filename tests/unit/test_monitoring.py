"""The run monitor's pure decisions, with explicit times (no clock, no sleep)."""

from __future__ import annotations

import dataclasses

import pytest

from vigil import errors, monitoring, runs
from vigil.launchers import base as launchers

S = runs.RunStatus
R = runs.EndReason
K = monitoring.Kind
H = launchers.WorkerHealth
LIMITS = monitoring.Limits(
    start_timeout=120, cancel_timeout=60, max_resume_attempts=1, unknown_grace=30, poll_interval=10
)
T0 = 1_000_000.0


def run(status: runs.RunStatus, **changes: object) -> runs.Run:
    base = runs.Run(
        run_id="r1",
        job_name="j",
        status=status,
        updated_at=T0,
        start_time=T0,
        launcher_info={"pid": 42},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def check(health: launchers.WorkerHealth, detail: str = "") -> launchers.HealthCheck:
    return launchers.HealthCheck(health, detail)


def test_starting_past_the_start_timeout_fails() -> None:
    assert monitoring.deadline_action(run(S.STARTING), T0 + 119.9, LIMITS, None) is None
    action = monitoring.deadline_action(run(S.STARTING), T0 + 120, LIMITS, None)
    assert action is not None
    assert (action.kind, action.reason) == (K.FAIL, R.START_TIMEOUT)
    assert "start timeout of 120 s" in action.message


def test_max_runtime_from_the_tag_or_the_default() -> None:
    tagged = run(S.STARTED, tags={runs.TAG_MAX_RUNTIME: "5"})
    assert monitoring.max_runtime(tagged, None) == 5.0
    assert monitoring.max_runtime(run(S.STARTED), 7.5) == 7.5
    assert monitoring.max_runtime(run(S.STARTED), None) is None
    assert monitoring.deadline_action(tagged, T0 + 4.9, LIMITS, 5.0) is None
    action = monitoring.deadline_action(tagged, T0 + 5, LIMITS, 5.0)
    assert action is not None
    assert (action.kind, action.reason) == (K.FAIL, R.MAX_RUNTIME)
    assert action.message == "exceeded max runtime of 5 s"


@pytest.mark.parametrize("raw", ["soon", "0", "-3", "inf", ""])
def test_a_bad_max_runtime_tag_is_a_clear_error(raw: str) -> None:
    with pytest.raises(errors.TagError, match=r"vigil/max_runtime=.* seconds greater than 0"):
        monitoring.max_runtime(run(S.STARTED, tags={runs.TAG_MAX_RUNTIME: raw}), None)


def test_canceling_past_the_cancel_timeout_is_killed_and_canceled() -> None:
    assert monitoring.deadline_action(run(S.CANCELING), T0 + 59, LIMITS, None) is None
    action = monitoring.deadline_action(run(S.CANCELING), T0 + 60, LIMITS, None)
    assert action is not None
    assert (action.kind, action.reason, action.kill) == (K.CANCEL, R.CANCEL_TIMEOUT, True)


def test_a_running_worker_needs_nothing() -> None:
    action = monitoring.health_action(run(S.STARTED), check(H.RUNNING), T0, LIMITS, None, True)
    assert action == monitoring.KEEP


def test_a_dead_worker_is_resumed_then_failed_once_attempts_run_out() -> None:
    dead = check(H.DEAD, "worker pid 42 was killed by signal SIGKILL")
    first = monitoring.health_action(run(S.STARTED), dead, T0, LIMITS, None, True)
    assert (first.kind, first.resume_attempt) == (K.RESUME, 1)
    resumed = run(S.STARTED, launcher_info={"pid": 43}, resume_attempt=1)
    second = monitoring.health_action(resumed, dead, T0, LIMITS, None, True)
    assert (second.kind, second.reason) == (K.FAIL, R.WORKER_DIED)
    assert "SIGKILL" in second.message
    assert "no resume attempts left (1 of 1 used)" in second.message


def test_a_dead_worker_of_a_launcher_that_cannot_resume_fails() -> None:
    action = monitoring.health_action(
        run(S.STARTED), check(H.DEAD, "gone"), T0, LIMITS, None, False
    )
    assert action.kind is K.FAIL
    assert "cannot resume" in action.message


def test_dead_while_starting_is_launched_again_and_while_canceling_cancels() -> None:
    dead = check(H.DEAD, "gone")
    starting = monitoring.health_action(run(S.STARTING), dead, T0, LIMITS, None, False)
    assert (starting.kind, starting.resume_attempt) == (K.RESUME, 1)
    assert "died before it started (gone); launching again (attempt 1 of 1)" in starting.message
    again = monitoring.health_action(
        run(S.STARTING, resume_attempt=1), dead, T0, LIMITS, None, True
    )
    assert (again.kind, again.reason) == (K.FAIL, R.WORKER_DIED)
    assert "no launch attempts left (1 of 1 used)" in again.message
    canceling = monitoring.health_action(run(S.CANCELING), dead, T0, LIMITS, None, True)
    assert (canceling.kind, canceling.kill) == (K.CANCEL, False)


def test_unknown_is_rechecked_with_backoff_and_dead_only_after_the_grace() -> None:
    unknown = check(H.UNKNOWN, "no permission")
    first = monitoring.health_action(run(S.STARTED), unknown, T0, LIMITS, None, True)
    assert first.kind is K.KEEP
    assert first.suspicion == monitoring.Suspicion(since=T0, checks=1, next_check=T0 + 10)
    assert not monitoring.wants_check(run(S.STARTED), T0 + 9, first.suspicion)
    assert monitoring.wants_check(run(S.STARTED), T0 + 10, first.suspicion)
    second = monitoring.health_action(
        run(S.STARTED), unknown, T0 + 10, LIMITS, first.suspicion, True
    )
    assert second.suspicion == monitoring.Suspicion(since=T0, checks=2, next_check=T0 + 30)
    third = monitoring.health_action(
        run(S.STARTED), unknown, T0 + 30, LIMITS, second.suspicion, True
    )
    assert third.kind is K.RESUME
    assert "health unknown for 30 s (no permission)" in third.message


def test_a_run_still_being_launched_is_not_checked() -> None:
    assert not monitoring.wants_check(run(S.STARTING, launcher_info={}), T0, None)
    assert monitoring.wants_check(run(S.STARTING), T0, None)
