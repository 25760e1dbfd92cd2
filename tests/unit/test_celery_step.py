"""The celery executor's messages (StepRequest, StepReport) survive their JSON codec, as
they do crossing a broker; step tags; the lost-worker count of a started step task."""

from __future__ import annotations

import json
import types

from vigil import events, step
from vigil.celery import step as step_mod
from vigil.executors import attempt
from vigil.executors import celery as celery_executor


def through_json(data: object) -> object:
    return json.loads(json.dumps(data))


def test_a_step_request_survives_json() -> None:
    request = step_mod.StepRequest(
        run_id="r1",
        code_location="steps",
        job_name="diamond",
        step="join",
        attempt=2,
        config={"rows": 3, "when": "2026-01-01T00:00:00Z"},
        inputs={"left": ("r1", "sha256:aa"), "right": ("r0", "sha256:bb")},
        partition_key="2026-01-01",
        terminate_grace=1.5,
    )

    decoded = through_json(request.to_json())

    assert isinstance(decoded, dict)
    assert step_mod.StepRequest.from_json(decoded) == request


def test_a_step_report_survives_json_with_events_and_either_outcome() -> None:
    log = events.NewEvent("r1", events.EventType.LOG, 12.5, "join", "INFO", "hi", {"n": 1})
    outcomes: list[attempt.Outcome | None] = [
        attempt.Success("/shared/r1/join", "int", "sha256:cc"),
        attempt.Failure("ValueError", "bad", "Traceback...", {"signal": "SIGKILL"}),
        None,
    ]
    for outcome in outcomes:
        report = step_mod.StepReport("host", 42, -9, (log,), outcome)

        decoded = through_json(report.to_json())

        assert isinstance(decoded, dict)
        assert step_mod.StepReport.from_json(decoded, "r1", "join") == report


def test_a_step_keeps_its_tags_read_only() -> None:
    @step(tags={"vigil/celery_queue": "gpu"})
    def tagged() -> int:
        return 1

    assert dict(tagged.tags) == {"vigil/celery_queue": "gpu"}
    assert isinstance(tagged.tags, types.MappingProxyType)

    @step
    def untagged() -> int:
        return 1

    assert dict(untagged.tags) == {}


def test_a_started_step_is_lost_only_after_enough_unanswered_pings_in_a_row() -> None:
    watch = celery_executor.Watch(interval=10.0, lost_after=3)

    heard = [watch.lost(answered) for answered in (False, False, True, False, False, False)]

    assert heard == [False, False, False, False, False, True]
