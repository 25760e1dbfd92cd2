"""Run events: the append-only log of everything that happened in a run."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any


class EventType(enum.StrEnum):
    RUN_ENQUEUED = "RUN_ENQUEUED"
    RUN_STARTING = "RUN_STARTING"
    RUN_START = "RUN_START"
    RUN_SUCCESS = "RUN_SUCCESS"
    RUN_FAILURE = "RUN_FAILURE"
    RUN_CANCELING = "RUN_CANCELING"
    RUN_CANCELED = "RUN_CANCELED"
    STEP_START = "STEP_START"
    STEP_OUTPUT = "STEP_OUTPUT"
    STEP_SUCCESS = "STEP_SUCCESS"
    STEP_FAILURE = "STEP_FAILURE"
    STEP_RETRY = "STEP_RETRY"
    STEP_SKIPPED = "STEP_SKIPPED"
    LOG = "LOG"
    ENGINE = "ENGINE"


@dataclasses.dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended; the store gives it its id."""

    run_id: str
    event_type: EventType
    timestamp: float
    step: str | None = None
    level: str | None = None
    message: str = ""
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """A stored event; ids increase monotonically across the whole log."""

    event_id: int
    run_id: str
    event_type: EventType
    timestamp: float
    step: str | None
    level: str | None
    message: str
    data: Mapping[str, Any]
