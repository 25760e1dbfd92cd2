"""A partitioned job whose step returns what its context says of the partition."""

from __future__ import annotations

from vigil import Definitions, StepContext, daily_partitions, job, static_partitions, step


@step
def seen(context: StepContext) -> tuple[str | None, str | None, str | None]:
    window = context.partition_window
    if window is None:
        return (context.partition_key, None, None)
    return (context.partition_key, window[0].isoformat(), window[1].isoformat())


defs = Definitions(
    jobs=[
        job(
            "daily", [seen], partitions=daily_partitions("2024-01-01", timezone="America/New_York")
        ),
        job("regional", [seen], partitions=static_partitions(["eu", "us"])),
        job("plain", [seen]),
    ]
)
