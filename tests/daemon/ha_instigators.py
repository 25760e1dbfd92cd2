"""Schedules and sensors that many daemons share (tests/daemon/test_daemon_ha.py).

Each evaluation's process is a child of the daemon that asked for it, so `os.getppid()`
names the daemon: the sensors write it into their cursors, and the gated sensor marks
which daemon is waiting at its gate. Files in $INSTIGATOR_DIR steer them.
"""

from __future__ import annotations

import os
import pathlib
import time

from vigil import (
    Definitions,
    RunRequest,
    ScheduleDef,
    SensorContext,
    job,
    schedule,
    sensor,
    step,
)

DIR = pathlib.Path(os.environ.get("INSTIGATOR_DIR", "."))
SCHEDULES = 12


@step
def noop() -> None:
    return None


noop_job = job("noop", [noop])


def _every_second(n: int) -> ScheduleDef:
    @schedule(
        cron="* * * * * *",
        job=noop_job,
        name=f"s{n}",
        default_status="running",
        catchup="all",
        max_catchup_ticks=600,
    )
    def tick() -> RunRequest:
        return RunRequest(run_key="only")

    return tick


@sensor(job=noop_job, minimum_interval=0.2, default_status="running")
def counting(context: SensorContext) -> RunRequest:
    """A run per tick, keyed by its count; the cursor names the daemon that moved it."""
    seen = int((context.cursor or "0:0").split(":")[1])
    context.update_cursor(f"{os.getppid()}:{seen + 1}")
    return RunRequest(run_key=f"k{seen}")


@sensor(job=noop_job, minimum_interval=0.2, default_status="running", timeout=600)
def gated(context: SensorContext) -> RunRequest:
    """While `gate.on` exists, each evaluation waits until `gate.open` does."""
    seen = int((context.cursor or "0:0").split(":")[1])
    if (DIR / "gate.on").exists():
        (DIR / f"waiting.{os.getppid()}").touch()
        while not (DIR / "gate.open").exists():
            time.sleep(0.05)
    context.update_cursor(f"{os.getppid()}:{seen + 1}")
    return RunRequest(run_key=f"g{seen}")


defs = Definitions(
    jobs=[noop_job],
    schedules=[_every_second(n) for n in range(SCHEDULES)],
    sensors=[counting, gated],
)
