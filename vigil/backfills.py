"""Backfills: one run per partition of a job over a range, submitted in chunks, exactly once.

A backfill is a stored row holding the partition keys it covers, in order, and a cursor
(how many of them have their run). The daemon's backfill loop submits the next chunk of
runs and moves the cursor in one transaction, conditional on the cursor it read, so a
daemon killed at any point neither skips nor repeats a partition; each run also carries
the run key `PARTITION` under the instigator `backfill:ID`, which the store keeps unique.
Runs go to the queue (QUEUED), tagged `vigil/backfill` and `vigil/partition`, and, with a
per-backfill limit, `vigil/backfill_max_concurrent`, which the queue's admission enforces.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from vigil import events, runs

INSTIGATOR_PREFIX = "backfill:"
# Within a chunk, each partition's run is created this much after the previous one, so the
# queue (first in, first out within a priority) launches a backfill's partitions in order.
ORDER_STEP = 1e-6


class BackfillStatus(enum.StrEnum):
    SUBMITTING = "SUBMITTING"  # the daemon is submitting its runs
    SUBMITTED = "SUBMITTED"  # every partition has its run; the runs go their way
    CANCELED = "CANCELED"  # no more runs submitted; its queued runs were canceled


@dataclasses.dataclass(frozen=True, slots=True)
class Backfill:
    """A stored backfill. `partitions` is empty when read by `list_backfills` (use `total`)."""

    backfill_id: str
    job_name: str
    code_location: str | None
    status: BackfillStatus
    partitions: tuple[str, ...]
    total: int
    cursor: int  # partitions[:cursor] have their run
    run_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)  # every run's tags
    max_concurrent: int | None = None
    rerun_of: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def instigator(self) -> str:
        return instigator_of(self.backfill_id)

    @property
    def remaining(self) -> int:
        return self.total - self.cursor


def instigator_of(backfill_id: str) -> str:
    return f"{INSTIGATOR_PREFIX}{backfill_id}"


def new_backfill(
    job_name: str,
    code_location: str | None,
    partitions: Sequence[str],
    now: float,
    *,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    max_concurrent: int | None = None,
    rerun_of: str | None = None,
) -> Backfill:
    """A SUBMITTING backfill over these partitions (in this order), none submitted yet."""
    if not partitions:
        raise ValueError("a backfill needs at least one partition")
    if len(set(partitions)) != len(partitions):
        raise ValueError("a backfill names each partition once")
    all_tags = dict(tags or {})
    if max_concurrent is not None:
        all_tags[runs.TAG_BACKFILL_MAX_CONCURRENT] = str(max_concurrent)
    return Backfill(
        backfill_id=str(uuid.uuid4()),
        job_name=job_name,
        code_location=code_location,
        status=BackfillStatus.SUBMITTING,
        partitions=tuple(partitions),
        total=len(partitions),
        cursor=0,
        run_config=dict(run_config or {}),
        tags=all_tags,
        max_concurrent=max_concurrent,
        rerun_of=rerun_of,
        created_at=now,
        updated_at=now,
    )


def chunk_runs(
    backfill: Backfill, size: int, now: float
) -> tuple[list[runs.Run], list[events.NewEvent]]:
    """The QUEUED runs of the next `size` partitions after the cursor, and their events."""
    batch: list[runs.Run] = []
    enqueued: list[events.NewEvent] = []
    keys = backfill.partitions[backfill.cursor : backfill.cursor + size]
    for index, key in enumerate(keys):
        run_id = str(uuid.uuid4())
        created = now + index * ORDER_STEP
        tags = {
            **backfill.tags,
            runs.TAG_BACKFILL: backfill.backfill_id,
            runs.TAG_PARTITION: key,
        }
        batch.append(
            runs.Run(
                run_id=run_id,
                job_name=backfill.job_name,
                status=runs.RunStatus.QUEUED,
                run_config=dict(backfill.run_config),
                tags=tags,
                code_location=backfill.code_location,
                root_run_id=run_id,
                created_at=created,
                updated_at=created,
                instigator=backfill.instigator,
                run_key=key,
            )
        )
        enqueued.append(
            events.NewEvent(
                run_id,
                events.EventType.RUN_ENQUEUED,
                created,
                message=f"queued by backfill {backfill.backfill_id} (partition {key})",
            )
        )
    return batch, enqueued


@dataclasses.dataclass(frozen=True, slots=True)
class PartitionRun:
    """The latest run of one partition (of a backfill, or of a job)."""

    partition: str
    run_id: str
    status: runs.RunStatus
    created_at: float


def latest_by_partition(found: Sequence[PartitionRun]) -> dict[str, PartitionRun]:
    """Each partition's latest run (a retry of a partition's run carries its partition)."""
    latest: dict[str, PartitionRun] = {}
    for each in found:
        current = latest.get(each.partition)
        if current is None or (each.created_at, each.run_id) > (
            current.created_at,
            current.run_id,
        ):
            latest[each.partition] = each
    return latest


def counts(backfill: Backfill, latest: Mapping[str, PartitionRun]) -> dict[str, int]:
    """Partitions by the status of their latest run; `NOT_SUBMITTED` for the rest."""
    result: dict[str, int] = {}
    for each in latest.values():
        result[each.status.value] = result.get(each.status.value, 0) + 1
    unsubmitted = backfill.total - len(latest)
    if unsubmitted > 0:
        result["NOT_SUBMITTED"] = unsubmitted
    return result
