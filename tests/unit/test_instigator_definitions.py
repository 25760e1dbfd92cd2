"""@schedule, @sensor and @run_status_sensor: what they record and what loading refuses."""

from __future__ import annotations

from typing import Any

import pytest

import vigil
from vigil import errors, runs, ticks
from vigil.definitions import definitions, job, step
from vigil.scheduling import ticks as tick_times


@step.step
def hello() -> int:
    return 1


HELLO = job.job("hello", [hello])
OTHER = job.job("other", [hello])


def nightly_fn() -> None:
    """Every night."""


def test_a_schedule_records_its_settings_with_defaults() -> None:
    nightly = vigil.schedule(cron="0 3 * * *", job=HELLO, timezone="Europe/Berlin")(nightly_fn)

    assert nightly.name == "nightly_fn"
    assert nightly.instigator == "schedule:nightly_fn"
    assert nightly.job == "hello"
    assert nightly.timezone == "Europe/Berlin"
    assert nightly.default_status is ticks.InstigatorStatus.STOPPED
    assert nightly.catchup is tick_times.Catchup.LATEST
    assert nightly.max_catchup_ticks == 5
    assert nightly.overlap is tick_times.Overlap.ALLOW
    assert nightly.timeout == 60.0
    assert nightly.description == "Every night."
    assert not nightly.wants_context


def test_a_schedule_takes_its_policies_and_a_context() -> None:
    @vigil.schedule(
        cron="*/5 * * * * *",
        job="hello",
        name="often",
        default_status="running",
        catchup="all",
        max_catchup_ticks=3,
        overlap="skip",
        timeout=5,
    )
    def often(context: vigil.ScheduleContext) -> vigil.RunRequest:
        return vigil.RunRequest(run_key=str(context.scheduled_time))

    assert often.name == "often"
    assert often.cron.has_seconds
    assert often.default_status is ticks.InstigatorStatus.RUNNING
    assert (often.catchup, often.max_catchup_ticks) == (tick_times.Catchup.ALL, 3)
    assert often.overlap is tick_times.Overlap.SKIP
    assert often.timeout == 5.0
    assert often.wants_context


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "61 * * * *"}, "schedule 'nightly_fn': cron '61 \\* \\* \\* \\*' is not valid"),
        ({"cron": "* * *"}, "schedule 'nightly_fn': cron .* has 3 fields"),
        ({"timezone": "Mars/Base"}, "schedule 'nightly_fn': unknown time zone 'Mars/Base'"),
        ({"catchup": "some"}, "schedule 'nightly_fn': catchup 'some' is not one of"),
        ({"overlap": "queue"}, "schedule 'nightly_fn': overlap 'queue' is not one of"),
        ({"default_status": "on"}, "schedule 'nightly_fn': default_status 'on'"),
        ({"max_catchup_ticks": 0}, "schedule 'nightly_fn': max_catchup_ticks"),
        ({"timeout": 0}, "schedule 'nightly_fn': timeout must be a positive"),
    ],
)
def test_a_bad_schedule_is_refused_naming_it(options: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.DefinitionError, match=message):
        vigil.schedule(**{"cron": "0 3 * * *", "job": HELLO, **options})(nightly_fn)


def test_a_schedule_function_takes_at_most_the_context() -> None:
    def two(context: Any, more: Any) -> None: ...

    with pytest.raises(errors.DefinitionError, match="schedule 'two': the function takes at most"):
        vigil.schedule(cron="0 3 * * *", job=HELLO)(two)


def test_definitions_refuse_a_schedule_of_an_unknown_job() -> None:
    nightly = vigil.schedule(cron="0 3 * * *", job="nope")(nightly_fn)

    with pytest.raises(errors.DefinitionError, match="schedule 'nightly_fn': no job named 'nope'"):
        definitions.Definitions(jobs=[HELLO], schedules=[nightly])


def test_definitions_refuse_two_schedules_of_one_name() -> None:
    nightly = vigil.schedule(cron="0 3 * * *", job=HELLO)(nightly_fn)

    with pytest.raises(errors.DefinitionError, match="two schedules are named 'nightly_fn'"):
        definitions.Definitions(jobs=[HELLO], schedules=[nightly, nightly])


def test_definitions_refuse_what_is_not_a_schedule() -> None:
    with pytest.raises(errors.DefinitionError, match="is not a schedule"):
        definitions.Definitions(jobs=[HELLO], schedules=[nightly_fn])  # type: ignore[list-item]


# sensors ------------------------------------------------------------------------------------
def test_a_sensor_records_its_jobs_interval_and_timeout() -> None:
    @vigil.sensor(jobs=[HELLO, "other"], minimum_interval=5, timeout=2, default_status="running")
    def files(context: vigil.SensorContext) -> None:
        context.update_cursor("x")

    assert files.instigator == "sensor:files"
    assert files.jobs == ("hello", "other")
    assert (files.minimum_interval, files.timeout) == (5.0, 2.0)
    assert files.default_status is ticks.InstigatorStatus.RUNNING
    assert files.run_status is None
    defs = definitions.Definitions(jobs=[HELLO, OTHER], sensors=[files])
    assert defs.get_sensor("files") is files


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "sensor 'files': name the job"),
        ({"job": HELLO, "jobs": [HELLO]}, "sensor 'files': give job= or jobs=, not both"),
        ({"job": HELLO, "minimum_interval": 0}, "sensor 'files': minimum_interval"),
        ({"job": HELLO, "timeout": -1}, "sensor 'files': timeout"),
        ({"job": HELLO, "default_status": "paused"}, "sensor 'files': default_status"),
    ],
)
def test_a_bad_sensor_is_refused_naming_it(options: dict[str, Any], message: str) -> None:
    def files() -> None: ...

    with pytest.raises(errors.DefinitionError, match=message):
        vigil.sensor(**options)(files)


def test_definitions_refuse_a_sensor_of_an_unknown_job() -> None:
    files = vigil.sensor(job="nope")(nightly_fn)

    with pytest.raises(errors.DefinitionError, match="sensor 'nightly_fn': no job named 'nope'"):
        definitions.Definitions(jobs=[HELLO], sensors=[files])


def test_a_run_status_sensor_records_the_status_and_the_watched_jobs() -> None:
    @vigil.run_status_sensor(status="failure", jobs=[HELLO], request_job=OTHER)
    def on_failure(context: vigil.RunStatusSensorContext) -> None: ...

    assert on_failure.run_status is runs.RunStatus.FAILURE
    assert on_failure.monitored_jobs == ("hello",)
    assert on_failure.jobs == ("other",)
    definitions.Definitions(jobs=[HELLO, OTHER], sensors=[on_failure])


def test_a_run_status_sensor_watches_only_ending_statuses() -> None:
    with pytest.raises(errors.DefinitionError, match="sensor 'nightly_fn': status 'QUEUED'"):
        vigil.run_status_sensor(status="QUEUED")(nightly_fn)


def test_a_schedule_and_a_sensor_may_share_a_name() -> None:
    nightly = vigil.schedule(cron="0 3 * * *", job=HELLO)(nightly_fn)
    sensing = vigil.sensor(job=HELLO)(nightly_fn)

    defs = definitions.Definitions(jobs=[HELLO], schedules=[nightly], sensors=[sensing])
    assert defs.get_schedule("nightly_fn") is nightly
    assert defs.get_sensor("nightly_fn") is sensing
