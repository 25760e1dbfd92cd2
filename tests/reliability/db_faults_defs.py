"""The database-fault tests' schedule: every second, running from the start, no runs."""

from __future__ import annotations

from vigil import Definitions, SkipReason, job, schedule, step


@step
def nothing() -> None:
    return None


nothing_job = job("nothing", [nothing])


@schedule(cron="* * * * * *", job=nothing_job, default_status="running")
def every_second() -> SkipReason:
    return SkipReason("ticking through the fault")


defs = Definitions(jobs=[nothing_job], schedules=[every_second])
