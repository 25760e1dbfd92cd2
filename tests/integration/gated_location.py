"""A code location whose schedule answers only once a test lets it: it reads the named
pipe VIGIL_TEST_GATE, which blocks until the test opens it for writing."""

from __future__ import annotations

import os
import pathlib

from vigil import Definitions, job, schedule, step


@step
def noop() -> None:
    pass


nothing = job("nothing", [noop])


@schedule(cron="0 0 * * *", job=nothing)
def gated() -> None:
    pathlib.Path(os.environ["VIGIL_TEST_GATE"]).read_text()


defs = Definitions(jobs=[nothing], schedules=[gated])
