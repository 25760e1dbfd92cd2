"""The store contract, run against SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg
import pytest
import sqlalchemy as sa

from tests import pg_server
from vigil import errors, events, runs, storage
from vigil.storage import sql

S = runs.RunStatus
E = events.EventType


def make_run(run_id: str, **fields: object) -> runs.Run:
    defaults: dict[str, object] = {"job_name": "etl", "status": S.QUEUED, "created_at": 100.0}
    return runs.Run(run_id=run_id, **{**defaults, **fields})


def event(run_id: str, event_type: events.EventType = E.LOG, **fields: object) -> events.NewEvent:
    return events.NewEvent(run_id=run_id, event_type=event_type, timestamp=1.0, **fields)


# runs -------------------------------------------------------------------------------
async def test_a_run_round_trips_every_field(store: sql.SqlStore) -> None:
    run = runs.Run(
        run_id="r1",
        job_name="etl",
        status=S.NOT_STARTED,
        run_config={"ops": {"load": {"config": {"rows": [1, 2], "deep": {"x": None}}}}},
        tags={"team": "data", "vigil/priority": "3"},
        code_location="pipelines",
        step_selection=("extract", "load"),
        parent_run_id="r0",
        root_run_id="r0",
        retry_number=2,
        created_at=1700000000.25,
        updated_at=1700000001.5,
        start_time=1700000002.0,
        end_time=None,
        worker_host="box",
        worker_pid=4242,
        launcher_info={"kind": "subprocess", "pid": 4242},
        launch_token="t1",
        claimed_by="d1",
        launched_at=1700000001.75,
        resume_attempt=1,
        not_before=1700000000.5,
    )
    stored = await store.add_run(run)

    # A re-execution takes the next number of its lineage (r0 has none in this store).
    numbered = dataclasses.replace(
        run, retry_number=1, tags={**run.tags, runs.TAG_RETRY_NUMBER: "1"}
    )
    assert stored == numbered
    assert await store.get_run("r1") == numbered


async def test_a_minimal_run_keeps_its_defaults(store: sql.SqlStore) -> None:
    await store.add_run(make_run("r1"))

    assert await store.get_run("r1") == make_run("r1")


async def test_add_run_appends_its_first_event(store: sql.SqlStore) -> None:
    await store.add_run(make_run("r1"), event("r1", E.RUN_ENQUEUED))

    assert [e.event_type for e in await store.get_events("r1")] == [E.RUN_ENQUEUED]


async def test_a_duplicate_run_id_is_refused_and_changes_nothing(store: sql.SqlStore) -> None:
    await store.add_run(make_run("r1", tags={"a": "1"}))

    with pytest.raises(errors.DuplicateRun, match="r1"):
        await store.add_run(make_run("r1", job_name="other", tags={"b": "2"}), event("r1"))

    assert await store.get_run("r1") == make_run("r1", tags={"a": "1"})
    assert await store.get_events("r1") == []


async def test_a_run_key_is_submitted_once_per_instigator(store: sql.SqlStore) -> None:
    keyed = dataclasses.replace(make_run("r1"), instigator="nightly", run_key="2026-11-24")
    await store.add_run(keyed)
    # Another instigator may use the same key; runs without a key never collide.
    await store.add_run(dataclasses.replace(keyed, run_id="r2", instigator="hourly"))
    await store.add_run(make_run("r3"))
    await store.add_run(make_run("r4"))

    with pytest.raises(errors.DuplicateRunKey, match=r"'nightly'.*'2026-11-24'"):
        await store.add_run(dataclasses.replace(keyed, run_id="r5"), event("r5"))

    assert await store.get_run("r1") == keyed
    assert {r.run_id for r in await store.list_runs()} == {"r1", "r2", "r3", "r4"}
    assert await store.get_events("r5") == []


async def test_an_unknown_run_is_reported(store: sql.SqlStore) -> None:
    with pytest.raises(errors.UnknownRun, match="nope"):
        await store.get_run("nope")


async def test_runs_are_listed_newest_first_with_their_tags(store: sql.SqlStore) -> None:
    await store.add_run(make_run("old", created_at=1.0, tags={"t": "old"}))
    await store.add_run(make_run("new", created_at=3.0))
    await store.add_run(make_run("mid", created_at=2.0, tags={"t": "mid", "u": "x"}))

    listed = await store.list_runs()

    assert [r.run_id for r in listed] == ["new", "mid", "old"]
    assert [dict(r.tags) for r in listed] == [{}, {"t": "mid", "u": "x"}, {"t": "old"}]


async def test_runs_filter_by_status_job_tags_and_limit(store: sql.SqlStore) -> None:
    await store.add_run(make_run("a", created_at=1.0, tags={"team": "x", "env": "prod"}))
    await store.add_run(make_run("b", created_at=2.0, status=S.STARTED, tags={"team": "x"}))
    await store.add_run(make_run("c", created_at=3.0, job_name="other", tags={"team": "y"}))

    async def ids(**kwargs: object) -> list[str]:
        return [r.run_id for r in await store.list_runs(storage.RunFilter(**kwargs))]

    assert await ids(statuses=[S.QUEUED]) == ["c", "a"]
    assert await ids(statuses=[S.QUEUED, S.STARTED]) == ["c", "b", "a"]
    assert await ids(job_name="etl") == ["b", "a"]
    assert await ids(tags={"team": "x"}) == ["b", "a"]
    assert await ids(tags={"team": "x", "env": "prod"}) == ["a"]
    assert await ids(tags={"team": "x", "env": "dev"}) == []
    assert await ids(limit=2) == ["c", "b"]
    assert await ids(job_name="etl", statuses=[S.QUEUED], tags={"team": "x"}) == ["a"]


async def test_runs_filter_by_lineage(store: sql.SqlStore) -> None:
    await store.add_run(make_run("root", created_at=1.0, root_run_id="root"))
    await store.add_run(
        make_run("retry", created_at=2.0, root_run_id="root", parent_run_id="root", retry_number=1)
    )
    await store.add_run(make_run("other", created_at=3.0, root_run_id="other"))
    lineage = await store.list_runs(storage.RunFilter(root_run_id="root"))
    assert [(r.run_id, r.retry_number) for r in lineage] == [("retry", 1), ("root", 0)]
    assert await store.list_runs(storage.RunFilter(root_run_id="none")) == []


async def test_runs_are_counted_by_status(store: sql.SqlStore) -> None:
    assert await store.count_runs_by_status() == {}
    for run_id, status in [("a", S.QUEUED), ("b", S.QUEUED), ("c", S.SUCCESS)]:
        await store.add_run(make_run(run_id, status=status))

    assert await store.count_runs_by_status() == {S.QUEUED: 2, S.SUCCESS: 1}


# transitions --------------------------------------------------------------------------
async def test_a_won_transition_writes_status_update_and_event(store: sql.SqlStore) -> None:
    await store.add_run(make_run("r1", worker_host="kept"))
    update = storage.RunUpdate(start_time=5.0, worker_pid=77, launcher_info={"pid": 77})

    won = await store.transition_run(
        "r1", S.QUEUED, S.STARTING, 9.0, update, event("r1", E.RUN_STARTING)
    )

    assert won is True
    run = await store.get_run("r1")
    assert (run.status, run.updated_at, run.start_time) == (S.STARTING, 9.0, 5.0)
    assert (run.worker_pid, run.worker_host, dict(run.launcher_info)) == (77, "kept", {"pid": 77})
    assert [e.event_type for e in await store.get_events("r1")] == [E.RUN_STARTING]


async def test_a_lost_transition_changes_nothing_and_appends_no_event(store: sql.SqlStore) -> None:
    await store.add_run(make_run("r1", status=S.STARTED))

    won = await store.transition_run(
        "r1", S.QUEUED, S.STARTING, 9.0, storage.RunUpdate(worker_pid=1), event("r1")
    )

    assert won is False
    assert await store.get_run("r1") == make_run("r1", status=S.STARTED)
    assert await store.get_events("r1") == []


async def test_any_of_several_expected_statuses_may_be_left(store: sql.SqlStore) -> None:
    await store.add_run(make_run("r1", status=S.STARTING))

    assert await store.transition_run("r1", [S.QUEUED, S.STARTING], S.FAILURE, 2.0)
    assert (await store.get_run("r1")).status == S.FAILURE


async def test_a_forbidden_transition_raises_and_changes_nothing(store: sql.SqlStore) -> None:
    await store.add_run(make_run("r1"))

    with pytest.raises(errors.InvalidTransition):
        await store.transition_run("r1", S.QUEUED, S.SUCCESS, 2.0)
    with pytest.raises(errors.InvalidTransition):
        await store.transition_run("r1", [S.QUEUED, S.STARTED], S.STARTING, 2.0)

    assert (await store.get_run("r1")).status == S.QUEUED


async def test_a_terminal_status_never_changes(store: sql.SqlStore) -> None:
    await store.add_run(make_run("r1", status=S.SUCCESS))

    with pytest.raises(errors.InvalidTransition):
        await store.transition_run("r1", S.SUCCESS, S.FAILURE, 2.0)
    every_live_status = [s for s in S if not s.is_terminal]
    assert not await store.transition_run("r1", every_live_status, S.CANCELED, 2.0)
    assert (await store.get_run("r1")).status == S.SUCCESS


async def test_transitioning_an_unknown_run_is_reported(store: sql.SqlStore) -> None:
    with pytest.raises(errors.UnknownRun):
        await store.transition_run("nope", S.QUEUED, S.STARTING, 1.0)


async def test_a_won_transition_appends_a_batch_of_events_in_order(store: sql.SqlStore) -> None:
    await store.add_run(make_run("r1", status=S.STARTED))
    batch = [
        event("r1", message="first"),
        event("r1", message="second"),
        event("r1", E.RUN_SUCCESS),
    ]

    assert await store.transition_run("r1", S.STARTED, S.SUCCESS, 2.0, event=batch)

    stored = await store.get_events("r1")
    assert [(e.event_type, e.message) for e in stored] == [
        (E.LOG, "first"),
        (E.LOG, "second"),
        (E.RUN_SUCCESS, ""),
    ]


async def test_a_lost_transition_appends_none_of_its_batch(store: sql.SqlStore) -> None:
    await store.add_run(make_run("r1", status=S.CANCELING))

    batch = [event("r1", message="step"), event("r1", E.RUN_SUCCESS)]
    assert not await store.transition_run("r1", S.STARTED, S.SUCCESS, 2.0, event=batch)

    assert await store.get_events("r1") == []


async def test_start_run_moves_a_starting_run_and_returns_it_with_its_tags(
    store: sql.SqlStore,
) -> None:
    await store.add_run(make_run("r1", status=S.STARTING, tags={"team": "data"}))
    update = storage.RunUpdate(start_time=5.0, worker_host="box", worker_pid=42)

    started = await store.start_run("r1", 9.0, update, event("r1", E.RUN_START))

    assert started is not None
    assert started == await store.get_run("r1")
    assert (started.status, started.updated_at, started.start_time) == (S.STARTED, 9.0, 5.0)
    assert (started.worker_host, started.worker_pid, started.tags) == ("box", 42, {"team": "data"})
    assert [e.event_type for e in await store.get_events("r1")] == [E.RUN_START]


async def test_start_run_leaves_a_run_that_is_not_starting_as_it_is(store: sql.SqlStore) -> None:
    for run_id, status in [("queued", S.QUEUED), ("canceling", S.CANCELING), ("done", S.SUCCESS)]:
        await store.add_run(make_run(run_id, status=status))

        assert (
            await store.start_run(run_id, 9.0, storage.RunUpdate(worker_pid=1), event(run_id))
            is None
        )

        assert await store.get_run(run_id) == make_run(run_id, status=status)
        assert await store.get_events(run_id) == []


async def test_starting_an_unknown_run_is_reported(store: sql.SqlStore) -> None:
    with pytest.raises(errors.UnknownRun):
        await store.start_run("nope", 1.0)


async def test_exactly_one_of_twenty_racing_claims_wins(store_target: storage.StoreTarget) -> None:
    # One connection per claimant, so the race happens in the database, not in the pool.
    racing = await storage.open_store(
        dataclasses.replace(store_target, pool_size=20, max_overflow=0)
    )
    try:
        await racing.add_run(make_run("r1"))

        results = await asyncio.gather(
            *(
                racing.transition_run(
                    "r1", S.QUEUED, S.STARTING, 2.0, event=event("r1", E.RUN_STARTING)
                )
                for _ in range(20)
            )
        )

        assert results.count(True) == 1
        assert racing.engine.pool.checkedin() > 1  # the claims really used separate connections
        assert len(await racing.get_events("r1")) == 1
        assert (await racing.get_run("r1")).status == S.STARTING
    finally:
        await racing.close()


async def test_launches_are_recorded_for_many_runs_at_once(store: sql.SqlStore) -> None:
    for run_id in ("r1", "r2", "r3"):
        await store.add_run(make_run(run_id, status=S.STARTING, launch_token=f"t-{run_id}"))
    await store.add_run(make_run("old", status=S.STARTING))  # claimed by a vigil without tokens

    await store.record_launches([], 5.0)
    await store.record_launches(
        [
            storage.Launch("r1", "t-r1", {"pid": 1}),
            storage.Launch("r2", "t-r2", {"pid": 2, "host": "h"}),
            storage.Launch("gone", "t", {}),
            storage.Launch("old", None, {"pid": 4}),
        ],
        5.0,
    )

    found = {
        r.run_id: (r.status, dict(r.launcher_info), r.launched_at) for r in await store.list_runs()
    }
    assert found == {
        "r1": (S.STARTING, {"pid": 1}, 5.0),
        "r2": (S.STARTING, {"pid": 2, "host": "h"}, 5.0),
        "r3": (S.STARTING, {}, None),
        "old": (S.STARTING, {"pid": 4}, 5.0),
    }


# events -------------------------------------------------------------------------------
async def test_events_come_back_in_order_with_increasing_ids(store: sql.SqlStore) -> None:
    batch = [
        event(
            "r1",
            E.STEP_START,
            step="load",
            level="INFO",
            message=f"m{i}",
            data={"i": i, "n": {"x": [i]}},
        )
        for i in range(5)
    ]
    await store.append_events(batch)
    await store.append_events([event("other")])

    stored = await store.get_events("r1")

    assert [e.message for e in stored] == ["m0", "m1", "m2", "m3", "m4"]
    assert [e.event_id for e in stored] == sorted({e.event_id for e in stored})
    assert stored[3] == events.Event(
        event_id=stored[3].event_id,
        run_id="r1",
        event_type=E.STEP_START,
        timestamp=1.0,
        step="load",
        level="INFO",
        message="m3",
        data={"i": 3, "n": {"x": [3]}},
    )


async def test_events_follow_a_cursor_a_limit_and_a_type_filter(store: sql.SqlStore) -> None:
    types = [E.RUN_START, E.LOG, E.STEP_START, E.LOG, E.RUN_SUCCESS]
    await store.append_events([event("r1", t, message=str(i)) for i, t in enumerate(types)])
    stored = await store.get_events("r1")

    after_second = await store.get_events("r1", after_id=stored[1].event_id)
    assert [e.message for e in after_second] == ["2", "3", "4"]
    assert [e.message for e in await store.get_events("r1", limit=2)] == ["0", "1"]
    logs = await store.get_events("r1", event_types=[E.LOG])
    assert [e.message for e in logs] == ["1", "3"]
    ends = await store.get_events(
        "r1", after_id=stored[0].event_id, event_types=[E.RUN_START, E.RUN_SUCCESS]
    )
    assert [e.message for e in ends] == ["4"]


async def test_events_after_pages_through_every_run(store: sql.SqlStore) -> None:
    await store.append_events([event("a", message="a0"), event("b", message="b0")])
    await store.append_events([event("a", E.RUN_FAILURE, message="a1"), event("c", message="c0")])

    seen, cursor = [], 0
    while page := await store.events_after(cursor, limit=3):
        seen += [e.message for e in page]
        cursor = page[-1].event_id

    assert seen == ["a0", "b0", "a1", "c0"]
    failures = await store.events_after(0, limit=10, event_types=[E.RUN_FAILURE])
    assert [e.message for e in failures] == ["a1"]


async def test_an_empty_batch_appends_nothing(store: sql.SqlStore) -> None:
    await store.append_events([])

    assert await store.events_after(0, limit=10) == []


async def test_a_cursor_reader_misses_no_event_of_concurrent_writers(
    store_target: storage.StoreTarget,
) -> None:
    writers, batches, size = 8, 10, 20
    busy = await storage.open_store(dataclasses.replace(store_target, pool_size=writers + 1))
    try:

        async def write(w: int) -> None:
            for b in range(batches):
                await busy.append_events(
                    [event(f"w{w}", message=f"{w}.{b}.{i}") for i in range(size)]
                )

        async def follow(done: asyncio.Event) -> list[str]:
            seen: list[str] = []
            cursor = 0
            while True:
                finished = done.is_set()  # read before the page: then no write is pending
                page = await busy.events_after(cursor, limit=500)
                if finished and not page:
                    return seen
                seen += [e.message for e in page]
                cursor = page[-1].event_id if page else cursor

        done = asyncio.Event()
        reader = asyncio.create_task(follow(done))
        await asyncio.gather(*(write(w) for w in range(writers)))
        done.set()
        seen = await reader

        assert len(seen) == len(set(seen)) == writers * batches * size
    finally:
        await busy.close()


# daemon -------------------------------------------------------------------------------
async def test_heartbeats_are_upserted_per_daemon_and_loop(store: sql.SqlStore) -> None:
    first = storage.Heartbeat("d1", "scheduler", "host", 10, 1.0, {"ticks": 1})
    await store.write_heartbeat(first)
    await store.write_heartbeat(storage.Heartbeat("d1", "sensors", "host", 10, 1.5))
    newer = dataclasses.replace(first, last_heartbeat=2.0, pid=11, info={"ticks": 2, "err": None})
    await store.write_heartbeat(newer)

    assert await store.list_heartbeats() == [
        newer,
        storage.Heartbeat("d1", "sensors", "host", 10, 1.5, {}),
    ]


async def test_heartbeats_older_than_a_moment_are_pruned(store: sql.SqlStore) -> None:
    await store.write_heartbeat(storage.Heartbeat("old", "supervisor", "h", 1, 10.0))
    await store.write_heartbeat(storage.Heartbeat("old", "queue", "h", 1, 11.0))
    kept = storage.Heartbeat("new", "supervisor", "h", 2, 20.0)
    await store.write_heartbeat(kept)

    assert await store.prune_heartbeats(before=20.0) == 2

    assert await store.list_heartbeats() == [kept]
    assert await store.prune_heartbeats(before=20.0) == 0


# connections --------------------------------------------------------------------------
async def test_no_connection_leaks(
    store_target: storage.StoreTarget, request: pytest.FixtureRequest
) -> None:
    opened = await storage.open_store(store_target)
    await opened.add_run(make_run("r1"))
    with pytest.raises(errors.DuplicateRun):
        await opened.add_run(make_run("r1"))
    with pytest.raises(errors.UnknownRun):
        await opened.transition_run("nope", S.QUEUED, S.STARTING, 1.0)
    with pytest.raises(errors.InvalidTransition):
        await opened.transition_run("r1", S.QUEUED, S.SUCCESS, 1.0)
    await asyncio.gather(*(opened.get_run("r1") for _ in range(8)), opened.list_runs())

    assert opened.engine.pool.checkedout() == 0
    await opened.close()

    if not store_target.is_sqlite:
        admin = request.getfixturevalue("postgres_url")
        assert await _backends_on(admin, store_target.url.database) == 0


async def _backends_on(
    admin_url: sa.engine.URL, database: str | None, deadline: float = 10.0
) -> int:
    """Backends connected to `database`, waiting (by querying) for closed ones to exit."""
    conn = await asyncpg.connect(pg_server.asyncpg_dsn(admin_url))
    try:
        give_up = time.monotonic() + deadline
        while True:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
            )
            if count == 0 or time.monotonic() > give_up:
                return count
    finally:
        await conn.close()


async def test_a_store_at_head_reports_its_schema_current(store: storage.Store) -> None:
    assert await store.schema_is_current()


async def test_a_reachable_store_answers_a_ping_and_is_unchanged(store: storage.Store) -> None:
    await store.ping()
    await store.ping()
    assert await store.list_runs() == []


async def test_a_store_moved_to_another_schema_reports_it(store: sql.SqlStore) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    assert not await store.schema_is_current()
