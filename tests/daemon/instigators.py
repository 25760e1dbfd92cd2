"""Schedules and sensors for the daemon tests; files in $INSTIGATOR_DIR steer them."""

from __future__ import annotations

import os
import pathlib
import threading

from vigil import (
    Definitions,
    RunRequest,
    SensorContext,
    SkipReason,
    job,
    schedule,
    sensor,
    step,
)

DIR = pathlib.Path(os.environ.get("INSTIGATOR_DIR", "."))


@step
def noop() -> None:
    return None


noop_job = job("noop", [noop])


@schedule(cron="*/2 * * * * *", job=noop_job, default_status="running")
def pair() -> list[RunRequest]:
    """Two runs a tick, keyed a and b."""
    return [RunRequest(run_key="a"), RunRequest(run_key="b")]


@schedule(cron="* * * * * *", job=noop_job)
def every_second() -> SkipReason:
    return SkipReason("just looking")


@sensor(job=noop_job, minimum_interval=0.3)
def counting(context: SensorContext) -> RunRequest | SkipReason:
    seen = int(context.cursor or 0)
    context.update_cursor(str(seen + 1))
    if seen % 2:
        return SkipReason(f"odd {seen}")
    return RunRequest(run_key=f"k{seen}")


@sensor(job=noop_job, minimum_interval=0.3)
def raising() -> None:
    raise RuntimeError("sensor exploded")


@sensor(job=noop_job, minimum_interval=0.3, timeout=1)
def hanging() -> None:
    (DIR / "hanging.started").touch()
    threading.Event().wait()  # hangs until its process is killed


defs = Definitions(
    jobs=[noop_job],
    schedules=[pair, every_second],
    sensors=[counting, raising, hanging],
)
