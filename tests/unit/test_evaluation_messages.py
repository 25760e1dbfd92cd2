"""The evaluation pipe's messages: each codec round-trips; a malformed line names its fault."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from vigil import runs
from vigil.evaluation import messages

ITEM = messages.RunStatusItem(
    run_id="r1",
    job_name="counted",
    status=runs.RunStatus.FAILURE,
    tags={"team": "data"},
    event_id=7,
    timestamp=1767225600.0,
    message="failed",
)
RUN = messages.RequestedRun("counted", {"steps": {"count": {"rows": 2}}}, {"a": "b"}, "k1")
SCHEDULE = {"name": "nightly", "cron": "0 3 * * *", "timezone": "UTC"}


def wire(data: dict[str, Any]) -> Any:
    """As the other end of the pipe reads it."""
    return json.loads(json.dumps(data))


@pytest.mark.parametrize(
    "message",
    [
        messages.Catalog("good", (SCHEDULE,), ({"name": "files", "jobs": ["other"]},)),
        messages.Catalog("empty"),
        messages.LoadFailure("Traceback ...\nImportError: nope"),
        messages.ScheduleRequest("nightly", 1767225600.5),
        messages.SensorRequest("files", "4", "file-3", 1767225600.0),
        messages.SensorRequest("files"),
        messages.RunStatusRequest("on_failure", (ITEM,), "7"),
        ITEM,
        RUN,
        messages.RequestedRun("counted"),
        messages.Answer((RUN,), None, "5", True),
        messages.Answer(skip="nothing today"),
        messages.Answer.failed("Traceback ...\nRuntimeError: boom"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_each_message_round_trips_through_json(message: Any) -> None:
    assert type(message).from_json(wire(message.to_json())) == message


def test_the_wire_keeps_its_keys() -> None:
    answer = messages.Answer((RUN,), "ignored by nobody", "5", True).to_json()

    assert answer == {
        "ok": True,
        "requests": [
            {
                "job": "counted",
                "run_config": {"steps": {"count": {"rows": 2}}},
                "tags": {"a": "b"},
                "run_key": "k1",
            }
        ],
        "skip": "ignored by nobody",
        "cursor": "5",
        "cursor_updated": True,
    }
    assert messages.Answer.failed("boom").to_json() == {"ok": False, "error": "boom"}
    assert messages.ScheduleRequest("n", 1.0).to_json() == {
        "kind": "schedule",
        "name": "n",
        "scheduled_time": 1.0,
    }


def test_requests_and_first_lines_are_read_by_their_tag() -> None:
    for request in [
        messages.ScheduleRequest("nightly", 1.0),
        messages.SensorRequest("files", "4"),
        messages.RunStatusRequest("on_failure", (ITEM,)),
    ]:
        assert messages.request_from_json(wire(request.to_json())) == request
    catalog = messages.Catalog("good", (SCHEDULE,))
    failure = messages.LoadFailure("nope")
    assert messages.loaded_from_json(wire(catalog.to_json())) == catalog
    assert messages.loaded_from_json(wire(failure.to_json())) == failure


@pytest.mark.parametrize(
    ("decode", "data", "named"),
    [
        (messages.Answer.from_json, [], "answer: expected a JSON object, got list"),
        (messages.Answer.from_json, {"requests": []}, "answer: missing field 'ok'"),
        (messages.Answer.from_json, {"ok": False}, "answer: missing field 'error'"),
        (
            messages.Answer.from_json,
            {"ok": True, "requests": [], "skip": None, "cursor": None, "cursor_updated": "yes"},
            "answer: field 'cursor_updated' has the wrong type ('yes')",
        ),
        (
            messages.Answer.from_json,
            {"ok": True, "requests": [{"job": "j"}], "skip": None},
            "requested run: missing field 'run_config'",
        ),
        (
            messages.RequestedRun.from_json,
            {"job": "j", "run_config": {}, "tags": {"n": 1}, "run_key": None},
            "requested run: field 'tags' must map strings to strings",
        ),
        (
            messages.request_from_json,
            {"kind": "cron", "name": "x"},
            "request: field 'kind' is not one of",
        ),
        (
            messages.request_from_json,
            {"kind": "schedule", "name": "x", "scheduled_time": True},
            "schedule request: field 'scheduled_time' has the wrong type (True)",
        ),
        (
            messages.RunStatusItem.from_json,
            {**ITEM.to_json(), "status": "EXPLODED"},
            "run status item: field 'status' is not a run status ('EXPLODED')",
        ),
        (
            messages.RunStatusRequest.from_json,
            {"kind": "run_status", "name": "s", "items": [3], "new_cursor": None},
            "run status request: items[0]: expected a JSON object, got int",
        ),
        (
            messages.Catalog.from_json,
            {"ok": True, "location": "good", "schedules": {}, "sensors": []},
            "catalog: field 'schedules' has the wrong type ({})",
        ),
        (messages.Catalog.from_json, {"ok": False, "error": "x"}, "catalog: field 'ok' is false"),
        (messages.loaded_from_json, {"ok": 1}, "first line: field 'ok' has the wrong type (1)"),
    ],
)
def test_a_malformed_message_is_a_value_error_naming_the_field(
    decode: Any, data: Any, named: str
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(named)):
        decode(data)


JOB = messages.JobInfo(
    "counted",
    (messages.StepInfo("load"), messages.StepInfo("count", ("load",))),
    "counts rows",
    {"team": "data"},
)
PARTITIONED = messages.JobInfo(
    "daily",
    (messages.StepInfo("load"),),
    partitions={"type": "static", "keys": ["eu", "us"]},
)


@pytest.mark.parametrize(
    "message",
    [
        messages.Catalog("jobs", jobs=(JOB, messages.JobInfo("bare"), PARTITIONED)),
        JOB,
        PARTITIONED,
        messages.RunCheckRequest("counted", {"steps": {"count": {"rows": 2}}}, {"a": "b"}),
        messages.RunCheckRequest("counted"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_the_clis_messages_round_trip(message: Any) -> None:
    assert type(message).from_json(wire(message.to_json())) == message


def test_a_job_info_carries_its_partitions_and_reads_older_catalogs() -> None:
    again = messages.JobInfo.from_json(wire(PARTITIONED.to_json()))
    made = again.partitions_def()
    assert made is not None
    assert made.keys(0) == ["eu", "us"]
    older = {k: v for k, v in JOB.to_json().items() if k != "partitions"}
    assert messages.JobInfo.from_json(older).partitions_def() is None
    with pytest.raises(ValueError, match="job: field 'partitions' has the wrong type"):
        messages.JobInfo.from_json({**JOB.to_json(), "partitions": "daily"})


def test_a_run_check_is_a_request_and_a_step_names_its_inputs() -> None:
    request = messages.RunCheckRequest("counted", {}, {"a": "b"})

    assert messages.request_from_json(wire(request.to_json())) == request
    assert JOB.step_names == ("load", "count")
    with pytest.raises(ValueError, match=r"^step: field 'inputs' must list strings"):
        messages.StepInfo.from_json({"name": "s", "inputs": [1]})
    with pytest.raises(ValueError, match=r"^catalog: missing field 'jobs'"):
        messages.Catalog.from_json({"ok": True, "location": "x", "schedules": [], "sensors": []})
