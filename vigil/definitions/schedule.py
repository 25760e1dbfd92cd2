"""Schedules: a function called at each tick of a cron expression in a time zone.

The function takes no parameter or the `ScheduleContext`; it returns a `RunRequest`, a list
(or generator) of them, a `SkipReason`, or nothing, which asks for one run with the job's
default config. The cron expression and the time zone are checked when the code loads.
"""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo
from collections.abc import Callable
from typing import Any

from vigil import errors, ticks
from vigil.definitions import requests
from vigil.scheduling import cron as cron_mod
from vigil.scheduling import ticks as tick_times

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_CATCHUP_TICKS = 5


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleContext:
    """What a schedule function is told: its name, the tick's scheduled time (local) and,
    when its job is partitioned by time, the partition a run targets unless it names one in
    its tags: the last complete at the scheduled time (None when none is complete yet)."""

    schedule_name: str
    scheduled_time: datetime.datetime
    partition_key: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleDef:
    name: str
    fn: requests.InstigatorFn
    cron: cron_mod.Cron
    zone: zoneinfo.ZoneInfo
    job: str
    default_status: ticks.InstigatorStatus
    catchup: tick_times.Catchup
    max_catchup_ticks: int
    overlap: tick_times.Overlap
    timeout: float
    wants_context: bool
    description: str | None = None

    @property
    def instigator(self) -> str:
        return ticks.instigator_id(ticks.InstigatorKind.SCHEDULE, self.name)

    @property
    def timezone(self) -> str:
        return self.zone.key

    def describe(self) -> dict[str, Any]:
        """What the daemon needs to know without importing the code (JSON-able)."""
        return {
            "name": self.name,
            "cron": self.cron.expression,
            "timezone": self.timezone,
            "job": self.job,
            "default_status": self.default_status.value,
            "catchup": self.catchup.value,
            "max_catchup_ticks": self.max_catchup_ticks,
            "overlap": self.overlap.value,
            "timeout": self.timeout,
        }


def schedule(
    *,
    cron: str,
    job: Any,
    name: str | None = None,
    timezone: str = "UTC",
    default_status: str = "stopped",
    catchup: str = "latest",
    max_catchup_ticks: int = DEFAULT_MAX_CATCHUP_TICKS,
    overlap: str = "allow",
    timeout: float = DEFAULT_TIMEOUT,
    description: str | None = None,
) -> Callable[[requests.InstigatorFn], ScheduleDef]:
    """Declare a schedule; a bad cron, zone or policy raises DefinitionError naming it."""

    def decorate(fn: requests.InstigatorFn) -> ScheduleDef:
        label = requests.check_name("schedule", name or str(getattr(fn, "__name__", "")))
        where = f"schedule '{label}'"
        return ScheduleDef(
            name=label,
            fn=fn,
            cron=_checked(where, cron_mod.parse_cron, cron),
            zone=_checked(where, cron_mod.parse_zone, timezone),
            job=requests.job_name("schedule", label, job),
            default_status=parse_status(where, default_status),
            catchup=_choice(where, "catchup", tick_times.Catchup, catchup),
            max_catchup_ticks=_count(where, max_catchup_ticks),
            overlap=_choice(where, "overlap", tick_times.Overlap, overlap),
            timeout=requests.check_timeout("schedule", label, timeout),
            wants_context=requests.wants_context("schedule", label, fn),
            description=description if description is not None else fn.__doc__,
        )

    return decorate


def _checked(where: str, parse: Callable[[str], Any], value: str) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        raise errors.DefinitionError(f"{where}: {exc}") from None


def _choice(where: str, key: str, enum_type: Any, value: str) -> Any:
    try:
        return enum_type(str(value).lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum_type)
        raise errors.DefinitionError(f"{where}: {key} {value!r} is not one of {allowed}") from None


def _count(where: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise errors.DefinitionError(
            f"{where}: max_catchup_ticks must be a positive integer (got {value!r})"
        )
    return value


def parse_status(where: str, value: str) -> ticks.InstigatorStatus:
    text = str(value).upper()
    if text not in (ticks.InstigatorStatus.RUNNING, ticks.InstigatorStatus.STOPPED):
        raise errors.DefinitionError(
            f"{where}: default_status {value!r} is not one of running, stopped"
        )
    return ticks.InstigatorStatus(text)
