"""vigil: deploy and operate Python data pipelines.

The public API for user code: steps, jobs, their retry policy and context, schedules,
sensors, the run requests they return, partitions, Definitions.
The names load on first use (PEP 562), so that commands which never touch user code,
such as `vigil daemon status`, do not pay for importing the definitions API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vigil.definitions.definitions import Definitions
    from vigil.definitions.job import JobDef, job
    from vigil.definitions.requests import RunRequest, SkipReason
    from vigil.definitions.schedule import ScheduleContext, ScheduleDef, schedule
    from vigil.definitions.sensor import (
        RunStatusSensorContext,
        SensorContext,
        SensorDef,
        run_status_sensor,
        sensor,
    )
    from vigil.definitions.step import RetryPolicy, StepDef, step
    from vigil.executors.context import StepContext
    from vigil.partitions import (
        PartitionsDef,
        daily_partitions,
        hourly_partitions,
        monthly_partitions,
        static_partitions,
        weekly_partitions,
    )

__all__ = [
    "Definitions",
    "JobDef",
    "PartitionsDef",
    "RetryPolicy",
    "RunRequest",
    "RunStatusSensorContext",
    "ScheduleContext",
    "ScheduleDef",
    "SensorContext",
    "SensorDef",
    "SkipReason",
    "StepContext",
    "StepDef",
    "daily_partitions",
    "hourly_partitions",
    "job",
    "monthly_partitions",
    "run_status_sensor",
    "schedule",
    "sensor",
    "static_partitions",
    "step",
    "weekly_partitions",
]

_HOMES = {
    "Definitions": "vigil.definitions.definitions",
    "JobDef": "vigil.definitions.job",
    "job": "vigil.definitions.job",
    "RetryPolicy": "vigil.definitions.step",
    "StepDef": "vigil.definitions.step",
    "step": "vigil.definitions.step",
    "StepContext": "vigil.executors.context",
    "RunRequest": "vigil.definitions.requests",
    "SkipReason": "vigil.definitions.requests",
    "ScheduleContext": "vigil.definitions.schedule",
    "ScheduleDef": "vigil.definitions.schedule",
    "schedule": "vigil.definitions.schedule",
    "RunStatusSensorContext": "vigil.definitions.sensor",
    "SensorContext": "vigil.definitions.sensor",
    "SensorDef": "vigil.definitions.sensor",
    "run_status_sensor": "vigil.definitions.sensor",
    "sensor": "vigil.definitions.sensor",
    "PartitionsDef": "vigil.partitions",
    "daily_partitions": "vigil.partitions",
    "hourly_partitions": "vigil.partitions",
    "monthly_partitions": "vigil.partitions",
    "static_partitions": "vigil.partitions",
    "weekly_partitions": "vigil.partitions",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'vigil' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
