"""Run retry decisions and child runs, pure."""

from __future__ import annotations

import pytest

from vigil import errors, reexecution, retrying, runs
from vigil.config import settings as settings_mod

S = runs.RunStatus
R = runs.EndReason
T0 = 1_000_000.0


def settings(**values: object) -> settings_mod.RunRetriesSettings:
    return settings_mod.RunRetriesSettings.model_validate(
        {"max_retries": 2, "delay": {"initial": 10, "factor": 2, "max": 30, "jitter": 0}, **values}
    )


def failed(retry_number: int = 0, **tags: str) -> runs.Run:
    return runs.Run(
        run_id=f"r{retry_number}",
        job_name="j",
        status=S.FAILURE,
        tags=tags,
        root_run_id="r0",
        retry_number=retry_number,
        code_location="loc",
        run_config={"steps": {"a": {"n": 1}}},
        step_selection=("a", "b"),
    )


def ending(
    status: runs.RunStatus = S.FAILURE, reason: runs.EndReason | None = R.STEP_FAILURE
) -> retrying.Ending:
    return retrying.Ending(status, reason.value if reason else None, T0)


def decide(
    run: runs.Run, end: retrying.Ending, **values: object
) -> retrying.Retry | retrying.NoRetry:
    config = settings(**values)
    policy = retrying.policy_for(run.tags, config)
    return retrying.decide(run, end, policy, config, lambda: 0.5, T0 + 1)


def test_retries_until_max_retries_with_growing_delays() -> None:
    assert decide(failed(0), ending()) == retrying.Retry(1, T0 + 10, retrying.Strategy.FROM_FAILURE)
    assert decide(failed(1), ending()) == retrying.Retry(2, T0 + 20, retrying.Strategy.FROM_FAILURE)
    assert decide(failed(2), ending()) == retrying.NoRetry("retries exhausted (2 of 2)")


def test_the_delay_is_capped_and_jittered() -> None:
    delay = settings_mod.RetryDelaySettings(initial=10, factor=10, max=30, jitter=0.5)
    assert retrying.delay(3, delay, lambda: 0.5) == 30
    assert retrying.delay(3, delay, lambda: 0.0) == 15
    assert retrying.delay(3, delay, lambda: 1.0) == 45


def test_tags_override_the_settings() -> None:
    tagged = failed(0, **{runs.TAG_MAX_RETRIES: "0"})
    assert decide(tagged, ending()) == retrying.NoRetry("retries exhausted (0 of 0)")
    all_steps = failed(0, **{runs.TAG_RETRY_STRATEGY: "all_steps"})
    retry = decide(all_steps, ending())
    assert isinstance(retry, retrying.Retry)
    assert retry.strategy is retrying.Strategy.ALL_STEPS


@pytest.mark.parametrize(
    ("tag", "value", "message"),
    [
        (runs.TAG_MAX_RETRIES, "three", "max_retries='three' is not a whole number from 0 to 1000"),
        (runs.TAG_MAX_RETRIES, "-1", "vigil/max_retries='-1'"),
        (runs.TAG_MAX_RETRIES, "\u00b2", "vigil/max_retries='\u00b2' is not a whole number"),
        (runs.TAG_MAX_RETRIES, "1" * 5000, "is not a whole number from 0 to 1000"),
        (runs.TAG_MAX_RETRIES, "1001", "vigil/max_retries='1001' is not a whole number"),
        (runs.TAG_RETRY_STRATEGY, "sometimes", "'sometimes' is not from_failure or all_steps"),
    ],
)
def test_a_bad_tag_is_a_clear_error(tag: str, value: str, message: str) -> None:
    with pytest.raises(errors.TagError, match=message):
        retrying.policy_for({tag: value}, settings())


def test_no_retry_for_success_cancel_max_runtime_unless_configured() -> None:
    assert isinstance(decide(failed(0), ending(S.SUCCESS, None)), retrying.NoRetry)
    canceled = ending(S.CANCELED, R.CANCELED)
    assert "canceled" in decide(failed(0), canceled).why  # type: ignore[union-attr]
    assert isinstance(decide(failed(0), canceled, retry_canceled=True), retrying.Retry)
    runtime = ending(S.FAILURE, R.MAX_RUNTIME)
    assert "max runtime" in decide(failed(0), runtime).why  # type: ignore[union-attr]
    assert isinstance(decide(failed(0), runtime, retry_max_runtime=True), retrying.Retry)


def test_step_failures_may_be_left_alone_while_crashes_are_retried() -> None:
    off = {"retry_on_step_failure": False}
    assert isinstance(decide(failed(0), ending(), **off), retrying.NoRetry)
    assert isinstance(decide(failed(0), ending(reason=R.WORKER_DIED), **off), retrying.Retry)


def test_a_child_run_names_its_lineage() -> None:
    parent = failed(1, team="data", **{runs.TAG_RETRY_NUMBER: "1"})
    key = retrying.run_key("r1")
    child = reexecution.child_run(
        parent, reexecution.Mode.FROM_FAILURE, T0, instigator=retrying.INSTIGATOR, run_key=key
    )
    assert child.status is S.NOT_STARTED
    assert (child.parent_run_id, child.root_run_id, child.retry_number) == ("r1", "r0", 2)
    assert (child.instigator, child.run_key) == ("vigil/retries", "retry-of:r1")
    assert child.tags == {
        "team": "data",
        runs.TAG_RETRY_NUMBER: "2",
        runs.TAG_PARENT_RUN: "r1",
        runs.TAG_ROOT_RUN: "r0",
        runs.TAG_REEXECUTION: "from_failure",
    }
    assert child.run_config == parent.run_config
    assert child.step_selection == ("a", "b")
    assert reexecution.is_from_failure(child)
    every = reexecution.child_run(parent, reexecution.Mode.ALL_STEPS, T0)
    assert every.step_selection is None
    chosen = reexecution.child_run(parent, reexecution.Mode.STEPS, T0, steps=["b"])
    assert chosen.step_selection == ("b",)


def test_only_an_ended_run_is_re_executed() -> None:
    running = runs.Run(run_id="x", job_name="j", status=S.STARTED)
    with pytest.raises(errors.ReexecutionError, match="x is STARTED"):
        reexecution.child_run(running, reexecution.Mode.ALL_STEPS, T0)


def test_an_old_failure_is_not_retried() -> None:
    config = settings(max_age=3600)
    policy = retrying.policy_for({}, config)
    fresh = retrying.decide(failed(0), ending(), policy, config, lambda: 0.5, T0 + 3600)
    assert isinstance(fresh, retrying.Retry)
    old = retrying.decide(failed(0), ending(), policy, config, lambda: 0.5, T0 + 3601)
    assert old == retrying.NoRetry("it ended more than 3600 s ago (run_retries.max_age)")
