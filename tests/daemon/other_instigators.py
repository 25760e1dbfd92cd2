"""A second code location with one sensor; the tests break this file on purpose."""

from __future__ import annotations

from vigil import Definitions, SkipReason, job, sensor, step


@step
def other_noop() -> None:
    return None


other_job = job("other_noop", [other_noop])


@sensor(job=other_job, minimum_interval=0.3)
def elsewhere() -> SkipReason:
    return SkipReason("quiet")


defs = Definitions(jobs=[other_job], sensors=[elsewhere])
