"""A partitioned job whose step returns what its context says of the partition."""

from __future__ import annotations

from vigil import (
    Definitions,
    ScheduleContext,
    StepContext,
    daily_partitions,
    job,
    schedule,
    static_partitions,
    step,
)


@step
def seen(context: StepContext) -> tuple[str | None, str | None, str | None]:
    window = context.partition_window
    if window is None:
        return (context.partition_key, None, None)
    return (context.partition_key, window[0].isoformat(), window[1].isoformat())


daily = job("daily", [seen], partitions=daily_partitions("2025-12-30", timezone="America/New_York"))


@schedule(cron="0 0 * * *", job=daily, timezone="America/New_York")
def nightly(context: ScheduleContext) -> None:
    """One run a night, of the day that just ended (the default)."""


defs = Definitions(
    jobs=[
        daily,
        job("regional", [seen], partitions=static_partitions(["eu", "us"])),
        job("plain", [seen]),
    ],
    schedules=[nightly],
)
