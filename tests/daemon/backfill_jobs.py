"""Partitioned jobs for the backfill tests.

Each run of `regions` appends its partition key, with its start and end times, to the file
named by BACKFILL_LOG; partition `c` always fails. With BACKFILL_GATE set, a run first
waits for a shared lock on that file (`tests.crash.harness.Gate`: the test holds runs in
flight while it holds the exclusive one). `plain` has no partitions.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import time

from vigil import Definitions, StepContext, job, static_partitions, step

KEYS = ["a", "b", "c", "d", "e", "f"]


def _note(context: StepContext, what: str) -> None:
    with pathlib.Path(os.environ["BACKFILL_LOG"]).open("a") as out:
        out.write(f"{context.partition_key} {what} {time.time()}\n")


@step
def work(context: StepContext) -> None:
    _note(context, "start")
    gate = os.environ.get("BACKFILL_GATE")
    if gate is not None:
        fd = os.open(gate, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits while the test holds the gate
        os.close(fd)
    _note(context, "end")
    if context.partition_key == "c":
        raise RuntimeError("partition c is broken")


@step
def noop() -> None:
    return None


regions = job("regions", [work], partitions=static_partitions(KEYS))
plain = job("plain", [noop])

defs = Definitions(jobs=[regions, plain])
