"""A chatty schedule and two jobs for the daemon log tests; $INSTIGATOR_DIR/enough stops it."""

from __future__ import annotations

import os
import pathlib
import sys

from vigil import Definitions, RunRequest, SkipReason, job, schedule, step

DIR = pathlib.Path(os.environ.get("INSTIGATOR_DIR", "."))


@step
def hello() -> None:
    print("hello from a step")  # the worker's log file, never the daemon's stream


@step
def explode() -> None:
    raise RuntimeError("step exploded")


hello_job = job("hello", [hello])
exploding_job = job("exploding", [explode], tags={"vigil/max_retries": "1"})


@schedule(cron="* * * * * *", job=hello_job, default_status="running")
def chatty() -> RunRequest | SkipReason:
    """Prints on both streams each tick; a run a tick until told it is enough."""
    print("chatty on stdout")
    print("chatty on stderr", file=sys.stderr)
    if (DIR / "enough").exists():
        return SkipReason("enough runs")
    return RunRequest()


defs = Definitions(jobs=[hello_job, exploding_job], schedules=[chatty])
