"""The code location of the soak tests: a one-step job that returns at once, and schedules
generated in a loop, sized by the environment of the process that loads it.

- SOAK_IDLE_SCHEDULES: schedules `idle0`, ... running, daily at 03:00 UTC: the scheduler
  plans every one of them at each pass, and they fire nothing during a test.
- SOAK_BUSY_SCHEDULES: schedules `busy0`, ... running on a per-second cron; `busyI` asks
  for a run at the seconds where `epoch % 10 == I` and skips the others.
"""

from __future__ import annotations

import os

from vigil import (
    Definitions,
    RunRequest,
    ScheduleContext,
    ScheduleDef,
    SkipReason,
    job,
    schedule,
    step,
)

BUSY_PERIOD = 10


@step
def nothing() -> None:
    return None


soak_job = job("soak", [nothing])


def _idle(index: int) -> ScheduleDef:
    def evaluate() -> SkipReason:
        return SkipReason("idle")

    return schedule(cron="0 3 * * *", job=soak_job, name=f"idle{index}", default_status="running")(
        evaluate
    )


def _busy(index: int) -> ScheduleDef:
    def evaluate(context: ScheduleContext) -> RunRequest | SkipReason:
        if int(context.scheduled_time.timestamp()) % BUSY_PERIOD != index:
            return SkipReason("not this second")
        return RunRequest()

    return schedule(
        cron="* * * * * *", job=soak_job, name=f"busy{index}", default_status="running"
    )(evaluate)


defs = Definitions(
    jobs=[soak_job],
    schedules=[
        *(_idle(i) for i in range(int(os.environ.get("SOAK_IDLE_SCHEDULES", "0")))),
        *(_busy(i) for i in range(int(os.environ.get("SOAK_BUSY_SCHEDULES", "0")))),
    ],
)
