"""The retention loop against a real store (SQLite and PostgreSQL) and real run directories,
on a manual clock: what it purges, what it keeps, what a stopped purge leaves, and a store
of 100,000 runs purged in batches while other store work goes on between them."""

from __future__ import annotations

import pathlib

import anyio
import anyio.lowlevel
import pytest
import sqlalchemy as sa

from tests.daemon.fakes import ManualClock
from tests.integration import test_retries
from vigil import blobs, events, purge, retention, runs
from vigil.config import settings as settings_mod
from vigil.daemon import precedence as precedence_mod
from vigil.daemon.loops import retention as retention_loop
from vigil.storage import sql
from vigil.storage import store as store_mod

S = runs.RunStatus
E = events.EventType
DAY = 86400.0
NOW = 1_000 * DAY


def loop_for(
    store: sql.SqlStore,
    roots: tuple[pathlib.Path, ...],
    clock: ManualClock,
    batch_size: int = 500,
    spare_retries: bool = False,
    precedence: precedence_mod.Precedence | None = None,
) -> retention_loop.RetentionLoop:
    config = {"success_days": 30, "failure_days": 60, "canceled_days": 30}
    settings = settings_mod.RunRetentionSettings.model_validate(
        {**config, "batch_size": batch_size}
    )
    purger = purge.Purger(store, tuple(map(blobs.LocalRoot, roots)))
    return retention_loop.RetentionLoop(purger, clock, settings, spare_retries, precedence)


def roots_in(tmp_path: pathlib.Path) -> tuple[pathlib.Path, ...]:
    return (tmp_path / "logs", tmp_path / "storage")


def with_files(roots: tuple[pathlib.Path, ...], run_id: str) -> None:
    """What a worker leaves: a step's logs and its output under each root."""
    for root in roots:
        (root / run_id / "step").mkdir(parents=True)
        (root / run_id / "step" / "out").write_text("x")


async def add_ended(
    store: sql.SqlStore, run_id: str, status: S, ended_at: float, root: str | None = None
) -> None:
    run = runs.Run(
        run_id=run_id,
        job_name="etl",
        status=status,
        created_at=ended_at,
        updated_at=ended_at,
        parent_run_id=root,
        root_run_id=root,
    )
    await store.add_run(run, events.NewEvent(run_id, E.ENGINE, ended_at, message="m"))


async def run_ids(store: sql.SqlStore) -> set[str]:
    return {run.run_id for run in await store.list_runs()}


async def drain(loop: retention_loop.RetentionLoop) -> int:
    """Iterate as the runner does while the loop asks for more; how many iterations."""
    iterations = 1
    await loop.iterate()
    while loop.due_sooner() is not None:
        await loop.iterate()
        iterations += 1
    return iterations


async def test_old_runs_go_with_their_files_recent_ones_stay(
    store: sql.SqlStore, tmp_path: pathlib.Path
) -> None:
    roots = roots_in(tmp_path)
    ages = {"ok-old": (S.SUCCESS, 31), "ok-new": (S.SUCCESS, 29), "bad-mid": (S.FAILURE, 45)}
    ages |= {"bad-old": (S.FAILURE, 61), "running": (S.STARTED, 400)}
    for run_id, (status, days) in ages.items():
        await add_ended(store, run_id, status, NOW - days * DAY)
        with_files(roots, run_id)
    loop = loop_for(store, roots, ManualClock(NOW))

    await drain(loop)

    assert await run_ids(store) == {"ok-new", "bad-mid", "running"}
    for root in roots:
        assert sorted(p.name for p in root.iterdir()) == ["bad-mid", "ok-new", "running"]
    assert loop.statistics() == retention_loop.RetentionStatistics(runs=2, events=2, files=4)
    assert await store.purged_files_pending(10) == []


async def test_files_a_stopped_purge_left_are_removed_next_time(
    store: sql.SqlStore, tmp_path: pathlib.Path
) -> None:
    roots = roots_in(tmp_path)
    await add_ended(store, "gone", S.SUCCESS, NOW - 90 * DAY)
    with_files(roots, "gone")
    rule = retention.Rule({S.SUCCESS: NOW - 30 * DAY}, spare_retries=False)
    # A purge that stopped after its transaction: the rows are gone, the files not yet.
    assert (await store.purge_runs(rule, NOW)).run_ids == ("gone",)
    (roots[1] / "gone").rename(roots[1] / "elsewhere")  # and one directory already gone

    loop = loop_for(store, roots, ManualClock(NOW))
    await drain(loop)

    assert not (roots[0] / "gone").exists()
    assert (roots[1] / "elsewhere").is_dir()  # nothing but run directories is touched
    assert loop.statistics().files == 1
    assert await store.purged_files_pending(10) == []


async def test_a_failure_is_kept_until_its_retry_is_decided_and_done(
    store: sql.SqlStore, tmp_path: pathlib.Path
) -> None:
    clock = ManualClock(test_retries.T0)
    failed = await test_retries.ended_run(store)
    retrier = test_retries.loop_for(store, clock, max_age=3650 * DAY)
    clock.advance(100 * DAY)
    loop = loop_for(store, roots_in(tmp_path), clock, spare_retries=True)

    await drain(loop)  # the retries loop has not seen the failure yet
    assert await run_ids(store) == {failed.run_id}

    await retrier.iterate()  # it submits the retry, QUEUED: its lineage stays
    [_, child] = await test_retries.lineage(store, failed.run_id)
    await drain(loop)
    assert await run_ids(store) == {failed.run_id, child.run_id}

    await store.request_cancel(child.run_id, test_retries.T0 + DAY)
    await drain(loop)  # the child's end, too, waits for the retries loop
    assert await run_ids(store) == {failed.run_id, child.run_id}

    await retrier.iterate()
    await drain(loop)
    assert await run_ids(store) == set()


async def test_a_lineage_goes_together(store: sql.SqlStore, tmp_path: pathlib.Path) -> None:
    await add_ended(store, "root", S.FAILURE, NOW - 90 * DAY)
    await add_ended(store, "redo", S.SUCCESS, NOW - 10 * DAY, root="root")
    loop = loop_for(store, roots_in(tmp_path), ManualClock(NOW))

    await drain(loop)
    assert await run_ids(store) == {"root", "redo"}

    loop = loop_for(store, roots_in(tmp_path), ManualClock(NOW + 30 * DAY))
    await drain(loop)
    assert await run_ids(store) == set()


# 100,000 runs -------------------------------------------------------------------------------
MANY = 100_000
BATCH = 2_000


# Numbers 0..MANY-1 in SQL (both databases), so a bulk insert sends no rows over the wire.
NUMBERS = f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {MANY - 1}) "
INSERT_RUNS = NUMBERS + (
    "INSERT INTO runs (run_id, job_name, status, run_config, retry_number, created_at, "
    "updated_at, launcher_info, resume_attempt) "
    "SELECT 'run-' || (i + 100000), 'etl', 'SUCCESS', '{}', 0, :at - i, :at - i, '{}', 0 FROM n"
)
INSERT_EVENTS = (
    "INSERT INTO event_log (run_id, event_type, timestamp, message, data) "
    "SELECT run_id, :kind, updated_at, 'm', '{}' FROM runs ORDER BY run_id"
)


async def insert_many(store: sql.SqlStore) -> None:
    """MANY ended runs, 40 days old or more, each with two events, inserted in bulk."""
    async with store.engine.begin() as conn:
        await conn.execute(sa.text(INSERT_RUNS), {"at": NOW - 40 * DAY})
        for kind in (E.ENGINE, E.RUN_SUCCESS):
            await conn.execute(sa.text(INSERT_EVENTS), {"kind": kind.value})
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("ANALYZE"))  # as a store grown over time has statistics
    assert await remaining(store) == MANY


async def remaining(store: sql.SqlStore) -> int:
    return sum((await store.count_runs_by_status()).values())


@pytest.mark.timeout(600)
async def test_a_store_of_100000_runs_is_purged_in_batches_between_other_work(
    store: sql.SqlStore, tmp_path: pathlib.Path
) -> None:
    await insert_many(store)
    precedence = precedence_mod.Precedence()
    loop = loop_for(store, roots_in(tmp_path), ManualClock(NOW), BATCH, precedence=precedence)
    seen: list[int] = []  # runs left, read right after each heartbeat another loop wrote
    done = anyio.Event()

    async def other_loop() -> None:
        beat = 0
        while not done.is_set():
            async with precedence.prompt():  # as the scheduler marks its iterations
                beat += 1
                await store.write_heartbeat(store_mod.Heartbeat("d", "other", "h", 1, beat))
                seen.append(await remaining(store))
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(other_loop)
        iterations = await drain(loop)
        done.set()

    assert await remaining(store) == 0
    assert await store.events_after(0, 1) == []
    assert loop.statistics() == retention_loop.RetentionStatistics(MANY, 2 * MANY, 0)
    # Several iterations of bounded batches, each batch one transaction: the other loop's
    # writes completed between them and only ever saw whole batches gone.
    assert iterations >= MANY // BATCH // retention_loop.BATCHES_PER_ITERATION
    between = [left for left in seen if 0 < left < MANY]
    assert len(set(between)) >= 2
    assert all(left % BATCH == 0 for left in seen)
