"""The code location of the crash chaos test: a one-step job, schedules, sensors.

Sized by the daemon's environment (the test process imports it too, with nothing set, and
then only uses the job):

- CHAOS_SCHEDULES: schedules `s0`, `s1`, ... on a per-second cron, default status running,
  catch-up policies in turn `latest`, `all` (3 ticks), `none`. Schedule `sI` asks for one
  run at the seconds where `epoch % CHAOS_SCHEDULES == I` (so all of them together ask for
  one run a second) and skips the others. Every third run is tagged `pool=narrow`.
- CHAOS_SENSORS: sensors `n0`, `n1`, ... every CHAOS_SENSOR_INTERVAL seconds, running; the
  cursor counts evaluations that committed, and every fourth count asks for a run keyed
  `kCOUNT`, so the keys of a sensor's runs leave no gap unless a run was lost.
- CHAOS_EVALUATIONS: a file where every evaluation appends one line
  `INSTIGATOR WHEN DAEMON` (WHEN: the scheduled time, or the cursor read), written with one
  O_APPEND write; DAEMON is the pid of the daemon that started the evaluation process (its
  parent when it imported this file: a process orphaned by a killed daemon keeps it).

The job `chaos` is `jot_first` of the crash tests: its step appends `RUN_ID STEP PID` to
$CRASH_STEP_LOG and returns at once, so a run costs the daemon, not user code.
"""

from __future__ import annotations

import os

from tests.crash.jobs import jot_first
from vigil import (
    Definitions,
    RunRequest,
    ScheduleContext,
    ScheduleDef,
    SensorContext,
    SensorDef,
    SkipReason,
    job,
    schedule,
    sensor,
)

CATCHUPS = ("latest", "all", "none")
MAX_CATCHUP_TICKS = 3
SENSOR_RUN_EVERY = 4
NARROW = {"pool": "narrow"}
_DAEMON = os.getppid()

chaos_job = job("chaos", [jot_first])


def _note(instigator: str, when: str) -> None:
    path = os.environ.get("CHAOS_EVALUATIONS")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{instigator} {when} {_DAEMON}\n".encode())
    finally:
        os.close(fd)


def _count(name: str) -> int:
    return int(os.environ.get(name, "0"))


def tags_for(n: int) -> dict[str, str]:
    return NARROW if n % 3 == 0 else {}


def _schedule(index: int, every: int) -> ScheduleDef:
    def evaluate(context: ScheduleContext) -> RunRequest | SkipReason:
        second = int(context.scheduled_time.timestamp())
        _note(f"schedule:s{index}", str(second))
        if second % every != index:
            return SkipReason("not this second")
        return RunRequest(run_key="run", tags=tags_for(second // every))

    return schedule(
        cron="* * * * * *",
        job=chaos_job,
        name=f"s{index}",
        default_status="running",
        catchup=CATCHUPS[index % len(CATCHUPS)],
        max_catchup_ticks=MAX_CATCHUP_TICKS,
    )(evaluate)


def _sensor(index: int, interval: float) -> SensorDef:
    def evaluate(context: SensorContext) -> RunRequest | SkipReason:
        seen = int(context.cursor or 0)
        _note(f"sensor:n{index}", str(seen))
        context.update_cursor(str(seen + 1))
        if seen % SENSOR_RUN_EVERY:
            return SkipReason(f"count {seen}")
        return RunRequest(run_key=f"k{seen}", tags=tags_for(seen // SENSOR_RUN_EVERY))

    return sensor(
        job=chaos_job, name=f"n{index}", minimum_interval=interval, default_status="running"
    )(evaluate)


_schedules = _count("CHAOS_SCHEDULES")
_interval = float(os.environ.get("CHAOS_SENSOR_INTERVAL", "1"))
defs = Definitions(
    jobs=[chaos_job],
    schedules=[_schedule(i, _schedules) for i in range(_schedules)],
    sensors=[_sensor(i, _interval) for i in range(_count("CHAOS_SENSORS"))],
)
