"""Jobs of the crash tests: every execution of a step appends one line to $CRASH_STEP_LOG.

A line is `RUN_ID STEP PID`, written with one O_APPEND write, so the tests can count how
many times each step of each run really ran, whatever the store says.

- jot: two instant steps, jot_first then jot_second.
- slow_jot: one step that writes its line, then waits at the gate: it takes a shared
  lock on the file $CRASH_GATE names, which the test holds exclusively until it lets
  the steps finish (no gate set: it finishes at once).

Lines are written as a step begins, so a step that runs twice is seen even while its
second execution has not finished.
"""

from __future__ import annotations

import fcntl
import os

from vigil import Definitions, StepContext, job, step

STEP_LOG_ENV = "CRASH_STEP_LOG"
GATE_ENV = "CRASH_GATE"


def jot(context: StepContext) -> None:
    line = f"{context.run_id} {context.step} {os.getpid()}\n"
    fd = os.open(os.environ[STEP_LOG_ENV], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@step
def jot_first(context: StepContext) -> None:
    jot(context)


@step
def jot_second(context: StepContext, jot_first: None) -> None:
    jot(context)


@step
def jot_then_wait(context: StepContext) -> None:
    jot(context)
    gate = os.environ.get(GATE_ENV)
    if gate:
        fd = os.open(gate, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # blocks while the test holds the gate
        finally:
            os.close(fd)


defs = Definitions(
    jobs=[
        job("jot", [jot_first, jot_second]),
        job("slow_jot", [jot_then_wait]),
    ]
)
