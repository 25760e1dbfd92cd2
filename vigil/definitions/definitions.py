"""Definitions: everything one code location exposes (jobs, schedules, sensors)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from vigil import errors
from vigil.definitions import job as job_mod


@dataclasses.dataclass(frozen=True)
class Definitions:
    """The jobs, schedules and sensors of a code location; job names are unique."""

    jobs: Sequence[job_mod.JobDef] = ()
    schedules: Sequence[Any] = ()
    sensors: Sequence[Any] = ()
    _jobs_by_name: dict[str, job_mod.JobDef] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "jobs", tuple(self.jobs))
        object.__setattr__(self, "schedules", tuple(self.schedules))
        object.__setattr__(self, "sensors", tuple(self.sensors))
        object.__setattr__(self, "_jobs_by_name", _index(self.jobs))

    @property
    def job_names(self) -> tuple[str, ...]:
        return tuple(self._jobs_by_name)

    def get_job(self, name: str) -> job_mod.JobDef:
        try:
            return self._jobs_by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._jobs_by_name)) or "none"
            raise errors.UnknownJob(f"no job named '{name}' (known jobs: {known})") from None


def _index(jobs: Sequence[job_mod.JobDef]) -> dict[str, job_mod.JobDef]:
    by_name: dict[str, job_mod.JobDef] = {}
    for job in jobs:
        if not isinstance(job, job_mod.JobDef):
            raise errors.DefinitionError(f"Definitions: {job!r} is not a job (build it with job())")
        if job.name in by_name:
            raise errors.DefinitionError(f"Definitions: two jobs are named '{job.name}'")
        by_name[job.name] = job
    return by_name
