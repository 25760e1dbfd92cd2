"""The store's retention verbs, on SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from vigil import backfills, errors, events, retention, runs
from vigil.storage import sql
from vigil.storage import store as store_mod

S = runs.RunStatus
E = events.EventType
DAY = 86400.0
NOW = 100 * DAY
ENDED = (S.SUCCESS, S.FAILURE, S.CANCELED)


def rule(before: float = NOW - 30 * DAY, batch: int = 500, spare: bool = False) -> retention.Rule:
    return retention.Rule(dict.fromkeys(ENDED, before), batch, spare_retries=spare)


def ended(
    run_id: str,
    status: S = S.SUCCESS,
    at: float = 10 * DAY,
    tags: dict[str, str] | None = None,
    parent: str | None = None,
) -> runs.Run:
    return runs.Run(
        run_id=run_id,
        job_name="etl",
        status=status,
        created_at=at,
        updated_at=at,
        tags=tags or {},
        parent_run_id=parent,
        root_run_id=parent,
    )


def event(run_id: str, kind: E = E.ENGINE) -> events.NewEvent:
    return events.NewEvent(run_id=run_id, event_type=kind, timestamp=1.0, message="m")


async def add(store: sql.SqlStore, *batch: runs.Run, each: int = 2) -> None:
    for run in batch:
        await store.add_run(run)
        await store.append_events([event(run.run_id) for _ in range(each)])


async def ids(store: sql.SqlStore) -> set[str]:
    return {run.run_id for run in await store.list_runs()}


async def test_old_ended_runs_go_with_their_events_and_tags(store: sql.SqlStore) -> None:
    await add(store, ended("old", tags={"team": "a"}), ended("new", at=NOW - DAY))

    assert await store.count_purgeable(rule()) == retention.Purged(runs=1, events=2)
    batch = await store.purge_runs(rule(), NOW)

    assert (tuple(batch.run_ids), batch.events) == (("old",), 2)
    assert await ids(store) == {"new"}
    assert await store.get_events("old") == []
    assert len(await store.get_events("new")) == 2
    with pytest.raises(errors.UnknownRun):
        await store.get_run("old")
    assert await store.list_runs(store_mod.RunFilter(tags={"team": "a"})) == []
    assert await store.purged_files_pending(10) == ["old"]


async def test_runs_not_ended_are_never_purged(store: sql.SqlStore) -> None:
    for status in (S.NOT_STARTED, S.QUEUED, S.STARTING, S.STARTED, S.CANCELING):
        await store.add_run(ended(f"r-{status.value}", status))
    assert await store.count_purgeable(rule(NOW)) == retention.Purged()
    assert (await store.purge_runs(rule(NOW), NOW)).run_ids == ()
    assert len(await ids(store)) == 5


async def test_each_status_has_its_own_age(store: sql.SqlStore) -> None:
    await add(store, ended("ok"), ended("bad", S.FAILURE), ended("stop", S.CANCELED))
    only_success = retention.Rule({S.SUCCESS: NOW}, spare_retries=False)
    assert (await store.purge_runs(only_success, NOW)).run_ids == ("ok",)
    assert await ids(store) == {"bad", "stop"}


async def test_batches_are_bounded_oldest_first(store: sql.SqlStore) -> None:
    await add(store, *(ended(f"r{i}", at=float(i)) for i in range(5)), each=1)
    first = await store.purge_runs(rule(batch=2), NOW)
    second = await store.purge_runs(rule(batch=2), NOW)
    third = await store.purge_runs(rule(batch=2), NOW)

    assert [first.run_ids, second.run_ids, third.run_ids] == [("r0", "r1"), ("r2", "r3"), ("r4",)]
    assert (await store.purge_runs(rule(batch=2), NOW)).run_ids == ()


async def test_a_lineage_goes_only_when_all_of_it_may(store: sql.SqlStore) -> None:
    await add(store, ended("root", S.FAILURE))
    child = ended("child", S.QUEUED, parent="root")
    await add(store, child)

    assert (await store.purge_runs(rule(), NOW)).run_ids == ()
    await store.transition_run("child", S.QUEUED, S.CANCELED, now=11 * DAY)

    gone = await store.purge_runs(rule(), NOW)
    assert set(gone.run_ids) == {"root", "child"}


async def test_a_recent_reexecution_keeps_its_old_parent(store: sql.SqlStore) -> None:
    await add(store, ended("root", S.FAILURE))
    await add(store, ended("redo", parent="root", at=NOW - DAY))
    assert await store.count_purgeable(rule()) == retention.Purged()
    assert await ids(store) == {"root", "redo"}


async def test_failures_the_retries_loop_has_not_passed_are_kept(store: sql.SqlStore) -> None:
    for run_id in ("seen", "unseen"):
        await store.add_run(ended(run_id, S.FAILURE))
        await store.append_events([event(run_id, E.RUN_FAILURE)])
    [seen_end] = await store.get_events("seen")
    await store.set_flag(sql.retention_rows.RETRIES_CURSOR_FLAG, seen_end.event_id, NOW)

    assert (await store.purge_runs(rule(spare=True), NOW)).run_ids == ("seen",)
    assert await ids(store) == {"unseen"}
    assert (await store.purge_runs(rule(spare=False), NOW)).run_ids == ("unseen",)


async def test_runs_of_a_backfill_still_submitting_are_kept(store: sql.SqlStore) -> None:
    fill = backfills.new_backfill("etl", None, ["a", "b"], now=1.0)
    await store.add_backfill(fill)
    await add(store, ended("part", tags={runs.TAG_BACKFILL: fill.backfill_id}))
    assert (await store.purge_runs(rule(), NOW)).run_ids == ()

    await store.cancel_backfill(fill.backfill_id, now=2.0)
    assert (await store.purge_runs(rule(), NOW)).run_ids == ("part",)


async def test_the_journal_lists_purged_runs_until_forgotten(store: sql.SqlStore) -> None:
    await add(store, *(ended(f"r{i}", at=float(i)) for i in range(3)), each=0)
    await store.purge_runs(rule(), NOW)

    assert await store.purged_files_pending(2) == ["r0", "r1"]
    await store.forget_purged(["r0", "r1"])
    assert await store.purged_files_pending(10) == ["r2"]
    await store.forget_purged(["r2", "never-there"])
    assert await store.purged_files_pending(10) == []


async def test_two_purgers_never_both_take_a_run(
    store: sql.SqlStore, other_store: sql.SqlStore
) -> None:
    await add(store, *(ended(f"r{i}", at=float(i)) for i in range(20)), each=1)
    first, second = await asyncio.gather(
        store.purge_runs(rule(batch=15), NOW), other_store.purge_runs(rule(batch=15), NOW)
    )
    rest = await store.purge_runs(rule(batch=15), NOW)

    taken = [*first.run_ids, *second.run_ids, *rest.run_ids]
    assert sorted(taken) == sorted(f"r{i}" for i in range(20))  # each exactly once
    assert first.events + second.events + rest.events == 20
    assert len(await store.purged_files_pending(100)) == 20
