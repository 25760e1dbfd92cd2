"""Sensors: a function polled every `minimum_interval` seconds that may ask for runs.

`@sensor` functions take no parameter or the `SensorContext` (the cursor, the last run key,
`update_cursor`); they return run requests, a `SkipReason`, or nothing. A new cursor set
with `context.update_cursor` is stored only when the tick succeeds.

`@run_status_sensor(status=..., jobs=[...])` functions are called once for every run of
those jobs (every job when none are named) that reaches the status, in event log order,
with a `RunStatusSensorContext`; the sensor's cursor is its place in the event log.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vigil import errors, runs, ticks
from vigil.definitions import requests
from vigil.definitions import schedule as schedule_mod

DEFAULT_MINIMUM_INTERVAL = 30.0
RUN_STATUSES = (runs.RunStatus.SUCCESS, runs.RunStatus.FAILURE, runs.RunStatus.CANCELED)


class SensorContext:
    """What a sensor function is told, and where it leaves its new cursor."""

    def __init__(
        self,
        sensor_name: str,
        cursor: str | None,
        last_run_key: str | None,
        last_tick_time: float | None,
    ) -> None:
        self.sensor_name = sensor_name
        self.cursor = cursor
        self.last_run_key = last_run_key
        self.last_tick_time = last_tick_time
        self.cursor_updated = False

    def update_cursor(self, cursor: str | None) -> None:
        """Store this cursor with the tick, if the tick succeeds."""
        if cursor is not None and not isinstance(cursor, str):
            raise TypeError(f"a cursor is a string or None (got {type(cursor).__name__})")
        self.cursor = cursor
        self.cursor_updated = True


@dataclasses.dataclass(frozen=True, slots=True)
class RunStatusSensorContext:
    """One run that reached the watched status, and the event that said so."""

    sensor_name: str
    run_id: str
    job_name: str
    status: runs.RunStatus
    tags: Mapping[str, str]
    event_id: int
    event_time: datetime.datetime
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class SensorDef:
    name: str
    fn: requests.InstigatorFn
    jobs: tuple[str, ...]
    minimum_interval: float
    default_status: ticks.InstigatorStatus
    timeout: float
    wants_context: bool
    description: str | None = None
    # Set for a run status sensor: the status it watches and the jobs whose runs it watches.
    run_status: runs.RunStatus | None = None
    monitored_jobs: tuple[str, ...] = ()

    @property
    def instigator(self) -> str:
        return ticks.instigator_id(ticks.InstigatorKind.SENSOR, self.name)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "jobs": list(self.jobs),
            "minimum_interval": self.minimum_interval,
            "default_status": self.default_status.value,
            "timeout": self.timeout,
            "run_status": self.run_status.value if self.run_status else None,
            "monitored_jobs": list(self.monitored_jobs),
        }


def sensor(
    *,
    job: Any = None,
    jobs: Sequence[Any] = (),
    name: str | None = None,
    minimum_interval: float = DEFAULT_MINIMUM_INTERVAL,
    default_status: str = "stopped",
    timeout: float = schedule_mod.DEFAULT_TIMEOUT,
    description: str | None = None,
) -> Callable[[requests.InstigatorFn], SensorDef]:
    """Declare a sensor of one job (`job=`) or several (`jobs=[...]`)."""

    def decorate(fn: requests.InstigatorFn) -> SensorDef:
        label = _label(fn, name)
        launched = _jobs(label, job, jobs, required=True)
        common = _common(label, fn, minimum_interval, default_status, timeout, description)
        return SensorDef(name=label, fn=fn, jobs=launched, **common)

    return decorate


def run_status_sensor(
    *,
    status: str | runs.RunStatus,
    jobs: Sequence[Any] = (),
    request_job: Any = None,
    name: str | None = None,
    minimum_interval: float = DEFAULT_MINIMUM_INTERVAL,
    default_status: str = "stopped",
    timeout: float = schedule_mod.DEFAULT_TIMEOUT,
    description: str | None = None,
) -> Callable[[requests.InstigatorFn], SensorDef]:
    """Declare a sensor called for each run of `jobs` that reaches `status`."""

    def decorate(fn: requests.InstigatorFn) -> SensorDef:
        label = _label(fn, name)
        return SensorDef(
            name=label,
            fn=fn,
            jobs=_jobs(label, request_job, (), required=False),
            run_status=_run_status(label, status),
            monitored_jobs=tuple(requests.job_name("sensor", label, j) for j in jobs),
            **_common(label, fn, minimum_interval, default_status, timeout, description),
        )

    return decorate


def _label(fn: requests.InstigatorFn, name: str | None) -> str:
    return requests.check_name("sensor", name or str(getattr(fn, "__name__", "")))


def _common(
    label: str,
    fn: requests.InstigatorFn,
    minimum_interval: float,
    default_status: str,
    timeout: float,
    description: str | None,
) -> dict[str, Any]:
    """The checked fields every kind of sensor has."""
    return {
        "minimum_interval": _interval(label, minimum_interval),
        "default_status": schedule_mod.parse_status(f"sensor '{label}'", default_status),
        "timeout": requests.check_timeout("sensor", label, timeout),
        "wants_context": requests.wants_context("sensor", label, fn),
        "description": description if description is not None else fn.__doc__,
    }


def _jobs(label: str, job: Any, jobs: Sequence[Any], *, required: bool) -> tuple[str, ...]:
    if job is not None and jobs:
        raise errors.DefinitionError(f"sensor '{label}': give job= or jobs=, not both")
    named = [job] if job is not None else list(jobs)
    if required and not named:
        raise errors.DefinitionError(f"sensor '{label}': name the job it launches (job=...)")
    return tuple(requests.job_name("sensor", label, j) for j in named)


def _interval(label: str, value: float) -> float:
    if not isinstance(value, int | float) or value <= 0:
        raise errors.DefinitionError(
            f"sensor '{label}': minimum_interval must be a positive number of seconds "
            f"(got {value!r})"
        )
    return float(value)


def _run_status(label: str, status: str | runs.RunStatus) -> runs.RunStatus:
    try:
        found = runs.RunStatus(str(status).upper())
    except ValueError:
        found = None
    if found not in RUN_STATUSES:
        allowed = ", ".join(s.value for s in RUN_STATUSES)
        raise errors.DefinitionError(f"sensor '{label}': status {status!r} is not one of {allowed}")
    assert found is not None
    return found
