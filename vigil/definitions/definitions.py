"""Definitions: everything one code location exposes (jobs, schedules, sensors)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from vigil import errors
from vigil.definitions import job as job_mod
from vigil.definitions import schedule as schedule_mod
from vigil.definitions import sensor as sensor_mod


@dataclasses.dataclass(frozen=True)
class Definitions:
    """The jobs, schedules and sensors of a code location.

    Job names are unique; so are schedule and sensor names; each job a schedule or sensor
    names must be one of these jobs.
    """

    jobs: Sequence[job_mod.JobDef] = ()
    schedules: Sequence[schedule_mod.ScheduleDef] = ()
    sensors: Sequence[sensor_mod.SensorDef] = ()
    _jobs_by_name: dict[str, job_mod.JobDef] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "jobs", tuple(self.jobs))
        object.__setattr__(self, "schedules", tuple(self.schedules))
        object.__setattr__(self, "sensors", tuple(self.sensors))
        object.__setattr__(self, "_jobs_by_name", _index(self.jobs))
        _check_instigators(self)

    @property
    def job_names(self) -> tuple[str, ...]:
        return tuple(self._jobs_by_name)

    def get_job(self, name: str) -> job_mod.JobDef:
        try:
            return self._jobs_by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._jobs_by_name)) or "none"
            raise errors.UnknownJob(f"no job named '{name}' (known jobs: {known})") from None

    def get_schedule(self, name: str) -> schedule_mod.ScheduleDef | None:
        return next((s for s in self.schedules if s.name == name), None)

    def get_sensor(self, name: str) -> sensor_mod.SensorDef | None:
        return next((s for s in self.sensors if s.name == name), None)


def _index(jobs: Sequence[job_mod.JobDef]) -> dict[str, job_mod.JobDef]:
    by_name: dict[str, job_mod.JobDef] = {}
    for job in jobs:
        if not isinstance(job, job_mod.JobDef):
            raise errors.DefinitionError(f"Definitions: {job!r} is not a job (build it with job())")
        if job.name in by_name:
            raise errors.DefinitionError(f"Definitions: two jobs are named '{job.name}'")
        by_name[job.name] = job
    return by_name


def _check_instigators(defs: Definitions) -> None:
    seen: set[tuple[str, str]] = set()
    pairs: list[tuple[str, object, type]] = [
        ("schedule", s, schedule_mod.ScheduleDef) for s in defs.schedules
    ]
    pairs += [("sensor", s, sensor_mod.SensorDef) for s in defs.sensors]
    for kind, item, cls in pairs:
        if not isinstance(item, cls):
            raise errors.DefinitionError(
                f"Definitions: {item!r} is not a {kind} (decorate it with @{kind})"
            )
        name = getattr(item, "name", "")
        if (kind, name) in seen:
            raise errors.DefinitionError(f"Definitions: two {kind}s are named '{name}'")
        seen.add((kind, name))
    for s in defs.schedules:
        _check_jobs(defs, f"schedule '{s.name}'", (s.job,))
    for sensor in defs.sensors:
        _check_jobs(defs, f"sensor '{sensor.name}'", (*sensor.jobs, *sensor.monitored_jobs))


def _check_jobs(defs: Definitions, where: str, names: Sequence[str]) -> None:
    for name in names:
        if name not in defs._jobs_by_name:
            known = ", ".join(sorted(defs._jobs_by_name)) or "none"
            raise errors.DefinitionError(
                f"{where}: no job named '{name}' in these Definitions (known jobs: {known})"
            )
