"""The backfill statements of the SQL store, each inside the caller's transaction.

`SqlStore` owns the transactions and calls these; they only read and write rows. The cursor
moves only from the value the submitter read, and only while the backfill is SUBMITTING:
a chunk is submitted once, whoever tries it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from vigil import backfills, errors, runs
from vigil.storage import schema

B = schema.backfills
_SUBMITTING = backfills.BackfillStatus.SUBMITTING.value
_OPEN = (_SUBMITTING, backfills.BackfillStatus.SUBMITTED.value)
_LIGHT = [c for c in B.c if c.name != "partitions"]
_CHUNK = 1000  # run ids per IN (...)


def values(backfill: backfills.Backfill) -> dict[str, Any]:
    return {
        "backfill_id": backfill.backfill_id,
        "job_name": backfill.job_name,
        "code_location": backfill.code_location,
        "status": backfill.status.value,
        "partitions": list(backfill.partitions),
        "total": backfill.total,
        "cursor": backfill.cursor,
        "run_config": dict(backfill.run_config),
        "tags": dict(backfill.tags),
        "max_concurrent": backfill.max_concurrent,
        "rerun_of": backfill.rerun_of,
        "created_at": backfill.created_at,
        "updated_at": backfill.updated_at,
    }


def from_row(row: sa.Row[Any], partitions: tuple[str, ...] = ()) -> backfills.Backfill:
    return backfills.Backfill(
        backfill_id=row.backfill_id,
        job_name=row.job_name,
        code_location=row.code_location,
        status=backfills.BackfillStatus(row.status),
        partitions=partitions,
        total=row.total,
        cursor=row.cursor,
        run_config=row.run_config or {},
        tags=row.tags or {},
        max_concurrent=row.max_concurrent,
        rerun_of=row.rerun_of,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def read(conn: sa_asyncio.AsyncConnection, backfill_id: str) -> backfills.Backfill:
    row = (await conn.execute(sa.select(B).where(B.c.backfill_id == backfill_id))).one_or_none()
    if row is None:
        raise errors.NotFound(f"no backfill with id {backfill_id!r}")
    return from_row(row, tuple(row.partitions))


async def read_all(
    conn: sa_asyncio.AsyncConnection, statuses: Collection[backfills.BackfillStatus] | None
) -> list[backfills.Backfill]:
    query = sa.select(*_LIGHT).order_by(B.c.created_at, B.c.backfill_id)
    if statuses is not None:
        query = query.where(B.c.status.in_(sorted(s.value for s in statuses)))
    return [from_row(row) for row in await conn.execute(query)]


async def advance(
    conn: sa_asyncio.AsyncConnection, backfill_id: str, cursor: int, count: int, now: float
) -> bool:
    """Move a SUBMITTING backfill's cursor from `cursor` by `count` (SUBMITTED at its end)."""
    moved = cursor + count
    done = sa.case(
        (B.c.total <= moved, backfills.BackfillStatus.SUBMITTED.value), else_=_SUBMITTING
    )
    statement = (
        sa.update(B)
        .where(B.c.backfill_id == backfill_id, B.c.cursor == cursor, B.c.status == _SUBMITTING)
        .values(cursor=moved, status=done, updated_at=now)
    )
    return bool((await conn.execute(statement)).rowcount)


async def close(conn: sa_asyncio.AsyncConnection, backfill_id: str, now: float) -> bool:
    """Cancel an open backfill; False when it had ended already (or does not exist)."""
    statement = (
        sa.update(B)
        .where(B.c.backfill_id == backfill_id, B.c.status.in_(_OPEN))
        .values(status=backfills.BackfillStatus.CANCELED.value, updated_at=now)
    )
    return bool((await conn.execute(statement)).rowcount)


def _tagged(key: str) -> sa.Select[Any]:
    """Runs with tag `key`: id, status, created, and the tag's value."""
    tags = schema.run_tags
    return (
        sa.select(
            schema.runs.c.run_id, schema.runs.c.status, schema.runs.c.created_at, tags.c.value
        )
        .select_from(schema.runs.join(tags, tags.c.run_id == schema.runs.c.run_id))
        .where(tags.c.key == key)
    )


def _partition_run(row: sa.Row[Any], partition: str) -> backfills.PartitionRun:
    return backfills.PartitionRun(
        partition=partition,
        run_id=row.run_id,
        status=runs.RunStatus(row.status),
        created_at=row.created_at,
    )


async def job_partition_runs(
    conn: sa_asyncio.AsyncConnection, job_name: str
) -> list[backfills.PartitionRun]:
    query = _tagged(runs.TAG_PARTITION).where(schema.runs.c.job_name == job_name)
    return [_partition_run(row, row.value) for row in await conn.execute(query)]


async def backfill_partition_runs(
    conn: sa_asyncio.AsyncConnection, backfill_id: str
) -> list[backfills.PartitionRun]:
    """A backfill's runs (its tag names it) with their partition tag."""
    query = _tagged(runs.TAG_BACKFILL).where(schema.run_tags.c.value == backfill_id)
    found = {row.run_id: row for row in await conn.execute(query)}
    partitions: dict[str, str] = {}
    tags = schema.run_tags
    ids = sorted(found)
    for start in range(0, len(ids), _CHUNK):
        lookup = sa.select(tags.c.run_id, tags.c.value).where(
            tags.c.key == runs.TAG_PARTITION, tags.c.run_id.in_(ids[start : start + _CHUNK])
        )
        partitions.update({row.run_id: row.value for row in await conn.execute(lookup)})
    return [_partition_run(found[i], partitions[i]) for i in ids if i in partitions]


async def queued_run_ids(conn: sa_asyncio.AsyncConnection, backfill_id: str) -> list[str]:
    query = (
        _tagged(runs.TAG_BACKFILL)
        .where(schema.run_tags.c.value == backfill_id)
        .where(schema.runs.c.status == runs.RunStatus.QUEUED.value)
    )
    return [row.run_id for row in await conn.execute(query)]
