"""A code location that prints 20 MB on import, then defines one schedule."""

from __future__ import annotations

import sys

from vigil import Definitions, job, schedule, step


@step
def noop() -> None:
    return None


flooded = job("flooded", [noop])


@schedule(cron="* * * * *", job=flooded)
def flood_schedule() -> None:
    return None


sys.stdout.write(("x" * 99 + "\n") * 200_000)
sys.stdout.flush()
sys.stderr.write("y" * 5_000_000)  # one line far past the line bound
sys.stderr.flush()

defs = Definitions(jobs=[flooded], schedules=[flood_schedule])
