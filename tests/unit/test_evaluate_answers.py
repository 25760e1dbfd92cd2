"""A schedule's or sensor's wrong answer is one line naming it; a user's error shows the
user's frames, not vigil's."""

from __future__ import annotations

from typing import Any

import pytest

from vigil import Definitions, RunRequest, SkipReason, job, schedule, sensor, step
from vigil.evaluation import evaluate, messages


@step
def hello() -> int:
    return 1


hello_job = job("hello", [hello])


def _helper() -> None:
    raise ValueError("the user's own error")


@sensor(job=hello_job)
def returns_42() -> Any:
    return 42


@sensor(job=hello_job)
def returns_dict() -> Any:
    return {"job": "hello"}


@sensor(job=hello_job)
def bad_tags() -> Any:
    return RunRequest(run_key="k", tags={"a": 1})  # type: ignore[dict-item]


@sensor(job=hello_job)
def bad_config() -> Any:
    return RunRequest(run_key="k", run_config={"nope": {}})


@sensor(job=hello_job)
def other_job() -> Any:
    return RunRequest(run_key="k", job="elsewhere")


@sensor(job=hello_job)
def skip_not_text() -> Any:
    return [SkipReason(0)]  # type: ignore[arg-type]


@sensor(job=hello_job)
def raises() -> Any:
    _helper()


@sensor(job=hello_job)
def raises_while_iterated() -> Any:
    yield RunRequest(run_key="a")
    _helper()


@schedule(cron="* * * * *", job=hello_job)
def schedule_42() -> Any:
    return 42


DEFS = Definitions(
    jobs=[hello_job],
    sensors=[
        returns_42,
        returns_dict,
        bad_tags,
        bad_config,
        other_job,
        skip_not_text,
        raises,
        raises_while_iterated,
    ],
    schedules=[schedule_42],
)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            messages.SensorRequest("returns_42"),
            "sensor 'returns_42' returned 42: expected a RunRequest, a list of them, "
            "a SkipReason or None",
        ),
        (
            messages.SensorRequest("returns_dict"),
            "sensor 'returns_dict' returned {'job': 'hello'}: expected a RunRequest, a list of "
            "them, a SkipReason or None",
        ),
        (
            messages.SensorRequest("bad_tags"),
            "sensor 'bad_tags': run request tags must be strings (bad: ['a'])",
        ),
        (
            messages.SensorRequest("bad_config"),
            "sensor 'bad_config' asked for job 'hello' with a bad run config: "
            "unknown key 'nope' (expected: steps)",
        ),
        (
            messages.SensorRequest("other_job"),
            "sensor 'other_job' asked for job 'elsewhere', not one of its jobs ('hello',)",
        ),
        (
            messages.ScheduleRequest("schedule_42", 0.0),
            "schedule 'schedule_42' returned 42: expected a RunRequest, a list of them, "
            "a SkipReason or None",
        ),
        (
            messages.SensorRequest("skip_not_text"),
            "sensor 'skip_not_text' returned SkipReason(message=0): a skip reason is a string",
        ),
        (messages.SensorRequest("missing"), "this code location has no sensor named 'missing'"),
    ],
)
def test_a_wrong_answer_is_one_line(request_: messages.Request, expected: str) -> None:
    answer = evaluate.handle(DEFS, request_)
    assert answer.error == expected


@pytest.mark.parametrize("name", ["raises", "raises_while_iterated"])
def test_a_user_error_shows_the_users_frames_only(name: str) -> None:
    answer = evaluate.handle(DEFS, messages.SensorRequest(name))
    assert answer.error is not None
    lines = answer.error.splitlines()
    assert lines[0] == f"sensor '{name}' raised ValueError: the user's own error"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: the user's own error"
    assert __file__ in lines[2]
    assert "vigil/evaluation" not in answer.error
    assert "_helper" in answer.error


def test_a_long_wrong_answer_is_cut() -> None:
    @sensor(job=hello_job)
    def huge() -> Any:
        return "x" * 10_000

    answer = evaluate.handle(
        Definitions(jobs=[hello_job], sensors=[huge]), messages.SensorRequest("huge")
    )
    assert answer.error is not None
    assert len(answer.error) < 400
