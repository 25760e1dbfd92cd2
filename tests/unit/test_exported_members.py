"""The public API is exactly what `vigil.__all__` says, and each name is importable."""

from __future__ import annotations

import vigil


def test_public_api_is_pinned() -> None:
    assert vigil.__all__ == [
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
    for name in vigil.__all__:
        assert getattr(vigil, name) is not None
