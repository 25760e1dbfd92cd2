"""The read commands' glance (`storage.glance`, plain SQL on the bare driver) answers every
verb it has exactly as the store does, on SQLite and a real PostgreSQL; and it opens only a
store it is sure of, so the command falls back to the full store otherwise."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from tests.daemon import process
from vigil import errors, events, runs, storage
from vigil.config import quick
from vigil.storage import glance, sql, target
from vigil.storage import store as store_mod

S = runs.RunStatus
E = events.EventType
IDS = ["abcd-0001", "abcd-0002", "abce-0001", "ABCD-0003", "a_cd-0001", "a%cd-0001", "b"]


def where_of(target: storage.StoreTarget) -> quick.Sqlite | quick.Postgres:
    url = target.url
    if target.is_sqlite:
        return quick.Sqlite(pathlib.Path(str(url.database)), busy_timeout=5.0)
    return quick.Postgres(
        host=str(url.host),
        port=int(url.port or 5432),
        user=str(url.username),
        database=str(url.database),
        password=url.password if url.password is None else str(url.password),
        connect_timeout=10.0,
    )


@pytest.fixture
async def looked(
    store: sql.SqlStore, store_target: storage.StoreTarget
) -> AsyncIterator[glance.Glance]:
    async with glance.opened(where_of(store_target)) as opened:
        yield opened


def run(run_id: str, n: int, **fields: object) -> runs.Run:
    values: dict[str, object] = {
        "job_name": "etl" if n % 2 else "report",
        "status": S.QUEUED,
        "created_at": 100.0 + n % 3,  # ties: ordered by run id
        "updated_at": 100.0 + n,
        "tags": {"team": "data", "n": str(n)} if n % 3 else {},
        "run_config": {"ops": {"load": {"rows": n, "names": ["é", None]}}},
        **fields,
    }
    return runs.Run(run_id=run_id, **values)  # type: ignore[arg-type]


async def seed(store: sql.SqlStore) -> None:
    for n, run_id in enumerate(IDS):
        await store.add_run(run(run_id, n))
    root = await store.add_run(
        run("root-0001", 7, status=S.FAILURE, start_time=101.5, end_time=102.25, worker_pid=42)
    )
    await store.add_run(
        run(
            "child-0001",
            8,
            status=S.QUEUED,
            parent_run_id=root.run_id,
            root_run_id=root.run_id,
            step_selection=("load", "report"),
            launcher_info={"pid": 7, "host": "h"},
        )
    )
    await store.append_events(
        [
            events.NewEvent("root-0001", E.RUN_START, 101.5, message="go"),
            events.NewEvent("root-0001", E.STEP_SUCCESS, 101.75, step="load", data={"s": 1.5}),
            events.NewEvent("root-0001", E.STEP_FAILURE, 102.0, step="report", level="ERROR"),
            events.NewEvent("root-0001", E.RUN_FAILURE, 102.25, message="report failed"),
            events.NewEvent("b", E.RUN_START, 103.0),
        ]
    )
    for loop in ("queue", "supervisor"):
        beat = store_mod.Heartbeat("d1", loop, "host", 9, 104.0, {"state": "idle", "n": [1, 2]})
        await store.write_heartbeat(beat)


FILTERS = [
    store_mod.RunFilter(),
    store_mod.RunFilter(limit=3),
    store_mod.RunFilter(statuses=(S.FAILURE, S.QUEUED), job_name="etl"),
    store_mod.RunFilter(root_run_id="root-0001"),
    store_mod.RunFilter(tags={"team": "data"}),
    store_mod.RunFilter(tags={"team": "data", "n": "4"}, limit=1),
    store_mod.RunFilter(statuses=(S.SUCCESS,)),
]


@pytest.mark.parametrize("run_filter", FILTERS)
async def test_runs_are_listed_as_the_store_lists_them(
    store: sql.SqlStore, looked: glance.Glance, run_filter: store_mod.RunFilter
) -> None:
    await seed(store)
    expected = await store.list_runs(run_filter)
    assert await looked.list_runs(run_filter) == expected
    assert expected or run_filter.statuses == (S.SUCCESS,)  # every other filter finds runs


async def test_each_run_reads_back_as_the_store_reads_it(
    store: sql.SqlStore, looked: glance.Glance
) -> None:
    await seed(store)
    for stored in await store.list_runs():
        assert await looked.get_run(stored.run_id) == await store.get_run(stored.run_id)
    child = await looked.get_run("child-0001")
    assert child.step_selection == ("load", "report")
    assert child.launcher_info == {"pid": 7, "host": "h"}
    with pytest.raises(errors.UnknownRun, match="no run with id 'nope'"):
        await looked.get_run("nope")


@pytest.mark.parametrize("prefix", ["abcd", "abc", "ABCD", "a_cd", "a%cd", "abcd-0002", "zz", ""])
async def test_ids_by_prefix_as_the_store_finds_them(
    store: sql.SqlStore, looked: glance.Glance, prefix: str
) -> None:
    await seed(store)
    for limit in (1, 5):
        expected = await store.run_ids_with_prefix(prefix, limit)
        assert await looked.run_ids_with_prefix(prefix, limit) == expected


async def test_events_are_read_as_the_store_reads_them(
    store: sql.SqlStore, looked: glance.Glance
) -> None:
    await seed(store)
    everything = await store.get_events("root-0001")
    assert len(everything) == 4
    cases: list[dict[str, object]] = [
        {},
        {"after_id": everything[1].event_id},
        {"limit": 2},
        {"event_types": (E.STEP_SUCCESS, E.STEP_FAILURE)},
    ]
    for case in cases:
        expected = await store.get_events("root-0001", **case)  # type: ignore[arg-type]
        assert await looked.get_events("root-0001", **case) == expected  # type: ignore[arg-type]
    assert (await looked.get_events("root-0001"))[1].data == {"s": 1.5}


async def test_heartbeats_are_read_as_the_store_reads_them(
    store: sql.SqlStore, looked: glance.Glance
) -> None:
    await seed(store)
    expected = await store.list_heartbeats()
    assert [beat.loop for beat in expected] == ["queue", "supervisor"]
    assert await looked.list_heartbeats() == expected


async def test_a_store_behind_this_vigils_schema_is_not_glanced(
    store: sql.SqlStore, store_target: storage.StoreTarget
) -> None:
    engine = target.create_engine(store_target)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    finally:
        await engine.dispose()
    with pytest.raises(glance.Unsure, match="schema"):
        async with glance.opened(where_of(store_target)):
            pass


async def test_a_missing_sqlite_database_is_not_made(tmp_path: pathlib.Path) -> None:
    where = quick.Sqlite(tmp_path / "none.db", busy_timeout=1.0)
    with pytest.raises(glance.Unsure, match="no database"):
        async with glance.opened(where):
            pass
    assert not (tmp_path / "none.db").exists()


async def test_an_unmigrated_sqlite_database_is_not_glanced(tmp_path: pathlib.Path) -> None:
    (tmp_path / "empty.db").touch()
    with pytest.raises(glance.Unsure):
        async with glance.opened(quick.Sqlite(tmp_path / "empty.db", busy_timeout=1.0)):
            pass


@pytest.mark.postgres
async def test_an_unreachable_postgres_is_not_glanced() -> None:
    where = quick.Postgres("127.0.0.1", process.free_port(), "vigil", "vigil", None, 2.0)
    with pytest.raises(glance.Unsure):
        async with glance.opened(where):
            pass


async def test_the_queue_is_read_as_the_store_reads_it(
    store: sql.SqlStore, looked: glance.Glance
) -> None:
    await seed(store)
    await store.transition_run("b", S.QUEUED, S.STARTING, 105.0)
    await store.transition_run("abce-0001", S.QUEUED, S.STARTING, 105.0)
    assert [r.run_id for r in await looked.queued_runs()] == [
        r.run_id for r in await store.queued_runs()
    ]
    assert await looked.queued_runs() == await store.queued_runs()
    in_flight = await store.in_flight_tags()
    assert len(in_flight) == 2  # one without tags, one with
    assert sorted(map(sorted, (t.items() for t in await looked.in_flight_tags()))) == sorted(
        map(sorted, (t.items() for t in in_flight))
    )
    assert await looked.get_flag("queue.paused") is None
    await store.set_flag("queue.paused", True, 106.0)
    assert await looked.get_flag("queue.paused") is True
    await store.set_flag("queue.paused", {"nested": [1, None]}, 107.0)
    assert await looked.get_flag("queue.paused") == await store.get_flag("queue.paused")
