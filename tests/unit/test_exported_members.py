"""The public API is exactly what `vigil.__all__` says, and each name is importable."""

from __future__ import annotations

import vigil


def test_public_api_is_pinned() -> None:
    assert vigil.__all__ == [
        "Definitions",
        "JobDef",
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
        "job",
        "run_status_sensor",
        "schedule",
        "sensor",
        "step",
    ]
    for name in vigil.__all__:
        assert getattr(vigil, name) is not None
