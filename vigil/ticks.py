"""Instigators (schedules and sensors) and their ticks: statuses and frozen records.

An instigator is named `KIND:NAME` everywhere in the store (`schedule:nightly`,
`sensor:new_files`): its state row, its ticks, and the `instigator` of the runs it makes.
"""

from __future__ import annotations

import dataclasses
import enum


class InstigatorKind(enum.StrEnum):
    SCHEDULE = "schedule"
    SENSOR = "sensor"


class InstigatorStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    # No operator said anything yet: the definition's default_status holds.
    DEFAULT = "DEFAULT"


class TickStatus(enum.StrEnum):
    STARTED = "STARTED"  # being evaluated (or the daemon died while it was)
    SUCCESS = "SUCCESS"  # evaluated; its runs (maybe none) were submitted
    SKIPPED = "SKIPPED"  # a SkipReason, or a schedule whose run was still in flight
    FAILED = "FAILED"  # the function raised, timed out, or its code location failed
    MISSED = "MISSED"  # a schedule tick the catch-up policy did not run

    @property
    def is_final(self) -> bool:
        return self is not TickStatus.STARTED


def instigator_id(kind: InstigatorKind, name: str) -> str:
    return f"{kind.value}:{name}"


def split_id(instigator: str) -> tuple[InstigatorKind, str]:
    kind, _, name = instigator.partition(":")
    return InstigatorKind(kind), name


@dataclasses.dataclass(frozen=True, slots=True)
class InstigatorState:
    """What the store keeps of an instigator: its operator status and its cursor."""

    name: str  # KIND:NAME
    kind: InstigatorKind
    status: InstigatorStatus
    cursor: str | None
    updated_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    """One evaluation of an instigator, unique per (instigator, scheduled time)."""

    tick_id: int
    instigator: str
    scheduled_time: float
    status: TickStatus
    run_ids: tuple[str, ...] = ()
    error: str | None = None
    cursor: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class TickOutcome:
    """How a STARTED tick ends; a sensor's `cursor` is committed with a SUCCESS or SKIPPED."""

    tick_id: int
    instigator: str
    status: TickStatus
    run_ids: tuple[str, ...] = ()
    error: str | None = None
    cursor: str | None = None
    commit_cursor: bool = False
