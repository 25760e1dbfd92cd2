"""Schedules and sensors of partitioned jobs, answered as the evaluation process does: each
run targets a partition (by default the last complete one at the tick), named in its tag
and in its run key."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

import pytest

from vigil import (
    Definitions,
    RunRequest,
    ScheduleContext,
    daily_partitions,
    hourly_partitions,
    job,
    schedule,
    sensor,
    static_partitions,
    step,
)
from vigil.evaluation import evaluate, messages

TAG = "vigil/partition"
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


@step
def work() -> int:
    return 1


daily = job("daily", [work], partitions=daily_partitions("2026-01-01", timezone="Europe/Berlin"))
hourly = job(
    "hourly", [work], partitions=hourly_partitions("2026-03-29-00:00", timezone="Europe/Berlin")
)
regional = job("regional", [work], partitions=static_partitions(["eu", "us"]))
plain = job("plain", [work])
SEEN: list[str | None] = []


@schedule(cron="0 0 * * *", job=daily, timezone="Europe/Berlin")
def nightly(context: ScheduleContext) -> None:
    SEEN.append(context.partition_key)


@schedule(cron="30 * * * *", job=hourly, timezone="Europe/Berlin")
def every_hour() -> None:
    return None


@schedule(cron="0 6 * * *", job=daily, timezone="Europe/Berlin")
def two_days_back(context: ScheduleContext) -> list[RunRequest]:
    return [
        RunRequest(tags={TAG: "2026-03-01"}),
        RunRequest(run_key="again", tags={TAG: "2026-03-02"}),
        RunRequest(run_key="default"),
    ]


@schedule(cron="0 6 * * *", job=daily, timezone="Europe/Berlin")
def asks_for_tomorrow(context: ScheduleContext) -> RunRequest:
    return RunRequest(tags={TAG: "2026-12-31"})


@schedule(cron="0 6 * * *", job=regional)
def regions_unnamed() -> RunRequest:
    return RunRequest()


@schedule(cron="0 6 * * *", job=regional)
def regions() -> list[RunRequest]:
    return [RunRequest(tags={TAG: region}) for region in ("eu", "us")]


@schedule(cron="0 6 * * *", job=plain)
def plain_with_a_partition() -> RunRequest:
    return RunRequest(tags={TAG: "eu"})


@sensor(job=regional)
def region_sensor() -> RunRequest:
    return RunRequest(run_key="k")


DEFS = Definitions(
    jobs=[daily, hourly, regional, plain],
    schedules=[
        nightly,
        every_hour,
        two_days_back,
        asks_for_tomorrow,
        regions_unnamed,
        regions,
        plain_with_a_partition,
    ],
    sensors=[region_sensor],
)


def tick(name: str, local: str) -> messages.Answer:
    when = datetime.datetime.fromisoformat(local).replace(tzinfo=BERLIN)
    return evaluate.handle(DEFS, messages.ScheduleRequest(name, when.timestamp()))


def targets(answer: messages.Answer) -> list[tuple[str | None, str | None]]:
    assert answer.error is None, answer.error
    return [(r.tags.get(TAG), r.run_key) for r in answer.requests]


def test_a_daily_schedule_at_midnight_targets_yesterday() -> None:
    SEEN.clear()
    assert targets(tick("nightly", "2026-03-30T00:00")) == [("2026-03-29", "2026-03-29")]
    assert SEEN == ["2026-03-29"]


def test_a_tick_before_any_partition_is_complete_skips_saying_why() -> None:
    SEEN.clear()
    answer = tick("nightly", "2026-01-01T00:00")
    assert answer.error is None
    assert answer.requests == ()
    assert answer.skip == ("no partition of job 'daily' is complete at 2026-01-01 00:00:00+01:00")
    assert SEEN == [None]


def test_an_hourly_schedule_across_the_spring_forward_hour() -> None:
    # 03:30 CEST on the spring-forward day: the hour before is 01:00 (02:00 has no key).
    assert targets(tick("every_hour", "2026-03-29T03:30")) == [
        ("2026-03-29-01:00", "2026-03-29-01:00")
    ]
    assert targets(tick("every_hour", "2026-03-29T04:30")) == [
        ("2026-03-29-03:00", "2026-03-29-03:00")
    ]


def test_requests_may_name_their_partition_and_keep_their_run_key() -> None:
    assert targets(tick("two_days_back", "2026-03-10T06:00")) == [
        ("2026-03-01", "2026-03-01"),
        ("2026-03-02", "again:2026-03-02"),
        ("2026-03-09", "default:2026-03-09"),
    ]


@pytest.mark.parametrize(
    ("name", "error"),
    [
        (
            "asks_for_tomorrow",
            "schedule 'asks_for_tomorrow' asked for job 'daily': partition '2026-12-31' is not "
            "a key of daily partitions from 2026-01-01 (Europe/Berlin): not complete yet",
        ),
        (
            "regions_unnamed",
            "schedule 'regions_unnamed': job 'regional' has static partitions: name one in "
            "RunRequest(tags={'vigil/partition': KEY})",
        ),
        (
            "plain_with_a_partition",
            "schedule 'plain_with_a_partition' asked for partition 'eu' of job 'plain', "
            "which has no partitions",
        ),
    ],
)
def test_a_bad_partition_is_a_one_line_failed_answer(name: str, error: str) -> None:
    answer = tick(name, "2026-03-10T06:00")
    assert answer.error is not None
    assert answer.error.startswith(error)
    assert "\n" not in answer.error


def test_static_partitions_named_by_the_schedule() -> None:
    assert targets(tick("regions", "2026-03-10T06:00")) == [("eu", "eu"), ("us", "us")]


def test_a_sensor_of_a_partitioned_job_must_name_the_partition() -> None:
    answer: Any = evaluate.handle(DEFS, messages.SensorRequest("region_sensor", None, None, None))
    assert answer.error == (
        "sensor 'region_sensor' asked for partitioned job 'regional' without a partition: "
        "name one in RunRequest(tags={'vigil/partition': KEY})"
    )
