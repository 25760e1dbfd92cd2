"""The backfill verbs, on SQLite and PostgreSQL: a chunk of runs and the cursor move
together or not at all, a second submitter of the same chunk writes nothing, and a cancel
ends the backfill and its queued runs in one transaction."""

from __future__ import annotations

import asyncio

import pytest

from vigil import backfills, errors, events, runs
from vigil.storage import sql

S = runs.RunStatus
B = backfills.BackfillStatus
KEYS = [f"2026-01-{day:02d}" for day in range(1, 11)]


def make_backfill(keys: list[str] = KEYS, max_concurrent: int | None = None) -> backfills.Backfill:
    return backfills.new_backfill(
        "etl", "main", keys, 100.0, tags={"team": "data"}, max_concurrent=max_concurrent
    )


async def submit_chunk(store: sql.SqlStore, backfill_id: str, size: int, now: float) -> bool:
    current = await store.get_backfill(backfill_id)
    batch, enqueued = backfills.chunk_runs(current, size, now)
    return await store.submit_backfill_runs(backfill_id, current.cursor, batch, enqueued, now)


async def test_a_backfill_is_stored_with_its_partitions_in_order(store: sql.SqlStore) -> None:
    made = await store.add_backfill(make_backfill(max_concurrent=3))
    found = await store.get_backfill(made.backfill_id)
    assert found == made
    assert found.partitions == tuple(KEYS)
    assert found.tags[runs.TAG_BACKFILL_MAX_CONCURRENT] == "3"
    [listed] = await store.list_backfills()
    assert listed.partitions == ()  # the list leaves the keys out; `total` counts them
    assert (listed.total, listed.status) == (10, B.SUBMITTING)
    assert await store.list_backfills([B.CANCELED]) == []
    with pytest.raises(errors.NotFound, match="no backfill with id 'nope'"):
        await store.get_backfill("nope")


async def test_chunks_submit_each_partition_once_queued_and_in_order(store: sql.SqlStore) -> None:
    made = await store.add_backfill(make_backfill())
    assert await submit_chunk(store, made.backfill_id, 4, 200.0)
    assert (await store.get_backfill(made.backfill_id)).cursor == 4
    assert await submit_chunk(store, made.backfill_id, 4, 201.0)
    assert await submit_chunk(store, made.backfill_id, 4, 202.0)
    done = await store.get_backfill(made.backfill_id)
    assert (done.cursor, done.status) == (10, B.SUBMITTED)
    assert not await submit_chunk(store, made.backfill_id, 4, 203.0)  # nothing left

    queued = await store.queued_runs()
    assert [r.tags[runs.TAG_PARTITION] for r in queued] == KEYS  # first in, first out
    assert all(r.status is S.QUEUED for r in queued)
    assert all(r.tags[runs.TAG_BACKFILL] == made.backfill_id for r in queued)
    assert all(r.tags["team"] == "data" for r in queued)
    assert {r.instigator for r in queued} == {made.instigator}
    assert [r.run_key for r in queued] == KEYS
    first = await store.get_events(queued[0].run_id)
    assert [e.event_type for e in first] == [events.EventType.RUN_ENQUEUED]

    found = await store.backfill_runs(made.backfill_id)
    assert sorted(p.partition for p in found) == KEYS
    assert sorted(p.partition for p in await store.partition_runs("etl")) == KEYS
    assert await store.partition_runs("other") == []


async def test_a_chunk_submitted_from_a_stale_cursor_writes_nothing(
    store: sql.SqlStore, other_store: sql.SqlStore
) -> None:
    made = await store.add_backfill(make_backfill())
    stale = await other_store.get_backfill(made.backfill_id)
    assert await submit_chunk(store, made.backfill_id, 5, 200.0)
    batch, enqueued = backfills.chunk_runs(stale, 5, 201.0)
    assert not await other_store.submit_backfill_runs(
        made.backfill_id, stale.cursor, batch, enqueued, 201.0
    )
    assert len(await store.queued_runs()) == 5
    assert (await store.get_backfill(made.backfill_id)).cursor == 5


async def test_two_submitters_racing_for_every_chunk_submit_each_partition_once(
    store: sql.SqlStore, other_store: sql.SqlStore
) -> None:
    keys = [f"k{i:03d}" for i in range(60)]
    made = await store.add_backfill(make_backfill(keys))

    async def submitter(each: sql.SqlStore) -> None:
        while (current := await each.get_backfill(made.backfill_id)).remaining > 0:
            batch, enqueued = backfills.chunk_runs(current, 7, 300.0)
            await each.submit_backfill_runs(
                made.backfill_id, current.cursor, batch, enqueued, 300.0
            )

    await asyncio.gather(submitter(store), submitter(other_store))
    found = await store.backfill_runs(made.backfill_id)
    assert sorted(p.partition for p in found) == keys  # each once, none missing


async def test_cancel_ends_the_backfill_and_its_queued_runs_together(store: sql.SqlStore) -> None:
    made = await store.add_backfill(make_backfill())
    assert await submit_chunk(store, made.backfill_id, 6, 200.0)
    [first, *_] = await store.queued_runs()
    claimed = await store.claim_run(first.run_id, S.QUEUED, 201.0, "d1")
    assert claimed is not None  # in flight: left to finish

    stored, canceled = await store.cancel_backfill(made.backfill_id, 202.0)
    assert stored.status is B.CANCELED
    assert len(canceled) == 5
    assert first.run_id not in canceled
    assert await store.queued_runs() == []
    run = await store.get_run(canceled[0])
    assert (run.status, run.end_time) == (S.CANCELED, 202.0)
    ends = [e for e in await store.get_events(canceled[0]) if e.event_type.name == "RUN_CANCELED"]
    assert ends
    assert ends[0].data == {"reason": "canceled", "by": "backfill"}
    assert (await store.get_run(first.run_id)).status is S.STARTING

    # No chunk after a cancel; a second cancel changes nothing.
    assert not await submit_chunk(store, made.backfill_id, 6, 203.0)
    again, none = await store.cancel_backfill(made.backfill_id, 204.0)
    assert (again.status, none) == (B.CANCELED, [])
    with pytest.raises(errors.NotFound):
        await store.cancel_backfill("nope", 205.0)
