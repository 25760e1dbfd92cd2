"""Schedules and sensors for the evaluation tests: each behaves in one way."""

from __future__ import annotations

import threading

import pydantic

from vigil import (
    Definitions,
    RunRequest,
    RunStatusSensorContext,
    ScheduleContext,
    SensorContext,
    SkipReason,
    job,
    run_status_sensor,
    schedule,
    sensor,
    step,
)


class Rows(pydantic.BaseModel):
    rows: int = 1


@step
def count(config: Rows) -> int:
    return config.rows


counted = job("counted", [count], tags={"team": "data"})
other = job("other", [count])


@schedule(cron="* * * * *", job=counted, timezone="Europe/Berlin")
def every_minute(context: ScheduleContext) -> RunRequest:
    return RunRequest(
        run_config={"steps": {"count": {"rows": 2}}},
        tags={"local": context.scheduled_time.isoformat()},
    )


@schedule(cron="0 0 * * *", job=counted)
def defaults() -> None:
    """Nothing returned: one run with the default config."""


@schedule(cron="0 0 * * *", job=counted)
def skipper() -> SkipReason:
    return SkipReason("nothing today")


@schedule(cron="0 0 * * *", job=counted)
def raiser() -> None:
    raise RuntimeError("schedule exploded")


@schedule(cron="0 0 * * *", job=counted, timeout=0.5)
def hanger() -> None:
    threading.Event().wait()  # hangs until its process is killed


@schedule(cron="0 0 * * *", job=counted)
def chatty() -> list[RunRequest]:
    print("noise on stdout")  # must not reach the protocol pipe
    return [RunRequest(run_key="a"), RunRequest(run_key="b")]


@schedule(cron="0 0 * * *", job=counted)
def bad_config() -> RunRequest:
    return RunRequest(run_config={"steps": {"count": {"rows": "many"}}})


@schedule(cron="0 0 * * *", job=counted)
def odd_answer() -> int:
    return 42


@sensor(jobs=[counted, other], minimum_interval=1)
def files(context: SensorContext) -> RunRequest:
    seen = int(context.cursor or 0)
    context.update_cursor(str(seen + 1))
    return RunRequest(run_key=f"file-{seen}", job="other")


@sensor(jobs=[counted, other])
def no_job_named(context: SensorContext) -> RunRequest:
    return RunRequest()


@run_status_sensor(status="FAILURE", jobs=[counted], request_job=other)
def on_failure(context: RunStatusSensorContext) -> RunRequest | None:
    if context.tags.get("ignore") == "yes":
        return None
    return RunRequest(tags={"failed_run": context.run_id})


# catch-up and overlap policies: hourly, all stopped until a test starts one ----------------
@schedule(cron="0 * * * *", job=counted, catchup="all", max_catchup_ticks=3)
def hourly_all() -> None: ...


@schedule(cron="0 * * * *", job=counted)
def hourly_latest() -> None: ...


@schedule(cron="0 * * * *", job=counted, catchup="none")
def hourly_none() -> None: ...


@schedule(cron="0 * * * *", job=counted, overlap="skip")
def hourly_skip() -> None: ...


policy_defs = [hourly_all, hourly_latest, hourly_none, hourly_skip]


defs = Definitions(
    jobs=[counted, other],
    schedules=[
        every_minute,
        defaults,
        skipper,
        raiser,
        hanger,
        chatty,
        bad_config,
        odd_answer,
        *policy_defs,
    ],
    sensors=[files, no_job_named, on_failure],
)
