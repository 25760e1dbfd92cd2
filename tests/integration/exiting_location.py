"""A code location whose schedule functions end their own process, as hostile code may."""

import os
import sys

from vigil import Definitions, job, schedule, step


@step
def noop() -> None:
    return None


exit_job = job("exit_job", [noop])


@schedule(cron="0 * * * *", job=exit_job)
def exits_zero() -> None:
    os._exit(0)


@schedule(cron="0 * * * *", job=exit_job)
def exits_three() -> None:
    sys.exit(3)


defs = Definitions(jobs=[exit_job], schedules=[exits_zero, exits_three])
