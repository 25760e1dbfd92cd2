"""The run queue in the store: claims, the queue listing, flags and queue notices.

Run against SQLite and a real PostgreSQL, like the rest of the store contract.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import pathlib
import socket
from collections.abc import AsyncIterator, Mapping, Sequence

import asyncpg
import pytest
import sqlalchemy as sa

from tests import pg_server, waiting
from vigil import events, runs, storage
from vigil.storage import sql, target, wakeup

S = runs.RunStatus
E = events.EventType


def make_run(run_id: str, **fields: object) -> runs.Run:
    defaults: dict[str, object] = {"job_name": "etl", "status": S.QUEUED, "created_at": 100.0}
    return runs.Run(run_id=run_id, **{**defaults, **fields})


def claiming(run_ids: Sequence[str]) -> storage.Admit:
    """An admit function that chooses these ids, whatever the queue holds."""

    def admit(queued: Sequence[runs.Run], in_flight: Sequence[Mapping[str, str]]) -> list[str]:
        return list(run_ids)

    return admit


async def starting_events(store: storage.Store) -> list[events.Event]:
    return await store.events_after(0, limit=100_000, event_types=[E.RUN_STARTING])


# claims -----------------------------------------------------------------------------
async def test_a_claim_moves_exactly_the_chosen_runs_to_starting(store: sql.SqlStore) -> None:
    queue = [
        make_run("q1", created_at=1.0, tags={"team": "a"}),
        make_run("q3", created_at=2.0),
        make_run("q2", created_at=2.0, tags={"team": "b", "env": "prod"}),
    ]
    others = [
        make_run("s1", status=S.STARTING, tags={"team": "a"}),
        make_run("s2", status=S.STARTED),
        make_run("c1", status=S.CANCELING, tags={"x": "1"}),
        make_run("done", status=S.SUCCESS, tags={"team": "a"}),
        make_run("new", status=S.NOT_STARTED, tags={"team": "a"}),
    ]
    for run in [*queue, *others]:
        await store.add_run(run)
    seen: list[tuple[list[runs.Run], list[Mapping[str, str]]]] = []

    def admit(queued: Sequence[runs.Run], in_flight: Sequence[Mapping[str, str]]) -> list[str]:
        seen.append((list(queued), list(in_flight)))
        return ["q3", "q1"]

    claimed = await store.claim_queued_runs(admit, 50.0, "daemon-1")

    # admit saw the queue first in first out (ties by run id), and each in-flight run's tags
    [(queued, in_flight)] = seen
    assert queued == [queue[0], queue[2], queue[1]]
    assert sorted(in_flight, key=sorted) == sorted(
        [{"team": "a"}, {}, {"x": "1"}], key=lambda tags: sorted(tags)
    )
    # the chosen runs, in admit's order, as stored
    token = claimed[0].launch_token
    assert token is not None
    expected = [
        dataclasses.replace(
            queue[i], status=S.STARTING, updated_at=50.0, launch_token=token, claimed_by="daemon-1"
        )
        for i in (1, 0)
    ]
    assert claimed == expected
    assert [await store.get_run(r.run_id) for r in claimed] == expected
    assert (await store.get_run("q2")).status == S.QUEUED
    recorded = await starting_events(store)
    assert [(e.run_id, e.timestamp, e.message, e.data) for e in recorded] == [
        (run_id, 50.0, "claimed by daemon-1 for launch", {"claimer": "daemon-1"})
        for run_id in ("q3", "q1")
    ]


async def test_a_claim_skips_runs_that_are_not_queued(store: sql.SqlStore) -> None:
    await store.add_run(make_run("q1"))
    await store.add_run(make_run("done", status=S.SUCCESS))
    await store.add_run(make_run("busy", status=S.STARTED))

    claimed = await store.claim_queued_runs(
        claiming(["done", "nope", "q1", "busy", "q1"]), 5.0, "d"
    )

    assert [r.run_id for r in claimed] == ["q1"]
    assert [e.run_id for e in await starting_events(store)] == ["q1"]
    assert (await store.get_run("done")).status == S.SUCCESS
    assert (await store.get_run("busy")).status == S.STARTED


async def test_a_claimed_run_is_not_claimed_again(store: sql.SqlStore) -> None:
    await store.add_run(make_run("q1"))

    first = await store.claim_queued_runs(claiming(["q1"]), 5.0, "d")
    second = await store.claim_queued_runs(claiming(["q1"]), 6.0, "d")

    assert ([r.run_id for r in first], second) == (["q1"], [])
    assert len(await starting_events(store)) == 1


async def test_a_claim_of_nothing_changes_nothing(store: sql.SqlStore) -> None:
    assert await store.claim_queued_runs(claiming(["q1"]), 5.0, "d") == []
    await store.add_run(make_run("q1"))

    assert await store.claim_queued_runs(claiming([]), 5.0, "d") == []
    assert await store.get_run("q1") == make_run("q1")
    assert await starting_events(store) == []


async def test_an_admit_that_raises_claims_nothing(store: sql.SqlStore) -> None:
    await store.add_run(make_run("q1"))

    def admit(queued: Sequence[runs.Run], in_flight: Sequence[Mapping[str, str]]) -> list[str]:
        raise ValueError("bad limits")

    with pytest.raises(ValueError, match="bad limits"):
        await store.claim_queued_runs(admit, 5.0, "d")
    assert (await store.get_run("q1")).status == S.QUEUED


@pytest.mark.postgres
async def test_a_run_canceled_while_admit_decides_is_not_claimed(
    postgres_database: sa.engine.URL,
) -> None:
    # The cancel commits from another connection after the claim read the queue and before
    # it writes: the conditional update must leave that run alone.
    store = await storage.open_store(storage.StoreTarget(postgres_database))
    try:
        await store.add_run(make_run("q1", created_at=1.0))
        await store.add_run(make_run("q2", created_at=2.0))

        def admit(queued: Sequence[runs.Run], in_flight: Sequence[Mapping[str, str]]) -> list[str]:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, cancel_elsewhere(postgres_database, "q1")).result(30)
            return [run.run_id for run in queued]

        claimed = await store.claim_queued_runs(admit, 5.0, "d")

        assert [r.run_id for r in claimed] == ["q2"]
        assert (await store.get_run("q1")).status == S.CANCELED
        assert [e.run_id for e in await starting_events(store)] == ["q2"]
    finally:
        await store.close()


async def cancel_elsewhere(url: sa.engine.URL, run_id: str) -> None:
    conn = await asyncpg.connect(pg_server.asyncpg_dsn(url))
    try:
        await conn.execute("UPDATE runs SET status = 'CANCELED' WHERE run_id = $1", run_id)
    finally:
        await conn.close()


# two dequeuers ------------------------------------------------------------------------
RACE_RUNS = 500
GLOBAL_LIMIT = 20
POOL_LIMIT = 3  # in-flight runs per value of the "pool" tag; 10 pools, so both limits bind


def limited_admit(from_the_back: bool) -> storage.Admit:
    """Admit within the limits, from the front of the queue or the back, after checking that
    the limits held so far. The two dequeuers choose from opposite ends, so that two claims
    deciding on the same view of the queue would choose different runs and break the limits
    together: only the admission lock keeps them apart.
    """

    def admit(queued: Sequence[runs.Run], in_flight: Sequence[Mapping[str, str]]) -> list[str]:
        assert_within_limits(in_flight)
        pools = collections.Counter(tags["pool"] for tags in in_flight)
        chosen: list[str] = []
        for run in reversed(queued) if from_the_back else queued:
            if len(in_flight) + len(chosen) == GLOBAL_LIMIT:
                break
            if pools[run.tags["pool"]] < POOL_LIMIT:
                pools[run.tags["pool"]] += 1
                chosen.append(run.run_id)
        return chosen

    return admit


def assert_within_limits(in_flight: Sequence[Mapping[str, str]]) -> None:
    assert len(in_flight) <= GLOBAL_LIMIT
    pools = collections.Counter(tags["pool"] for tags in in_flight)
    assert max(pools.values(), default=0) <= POOL_LIMIT


async def test_two_dequeuers_claim_each_run_once_within_the_limits(
    store: sql.SqlStore, other_store: sql.SqlStore
) -> None:
    for i in range(RACE_RUNS):
        await store.add_run(make_run(f"r{i:03}", created_at=float(i), tags={"pool": f"p{i % 10}"}))
    claims: list[str] = []

    async def dequeue(dequeuer: storage.Store, name: str, from_the_back: bool) -> None:
        admit = limited_admit(from_the_back)
        while len(claims) < RACE_RUNS:
            claimed = await dequeuer.claim_queued_runs(admit, 1.0, name)
            claims.extend(run.run_id for run in claimed)
            await asyncio.gather(*(run_to_the_end(dequeuer, run.run_id) for run in claimed))

    async def observe(done: asyncio.Event) -> int:
        samples = 0
        while not done.is_set():
            assert_within_limits(await store.in_flight_tags())
            samples += 1
        return samples

    done = asyncio.Event()
    observer = asyncio.create_task(observe(done))
    await asyncio.gather(dequeue(store, "d1", False), dequeue(other_store, "d2", True))
    done.set()

    assert await observer > 0
    assert sorted(claims) == [f"r{i:03}" for i in range(RACE_RUNS)]  # each exactly once
    recorded = await starting_events(store)
    assert sorted(e.run_id for e in recorded) == sorted(claims)
    assert {e.data["claimer"] for e in recorded} == {"d1", "d2"}  # both really dequeued
    assert await store.count_runs_by_status() == {S.SUCCESS: RACE_RUNS}


async def run_to_the_end(store: storage.Store, run_id: str) -> None:
    assert await store.transition_run(run_id, S.STARTING, S.STARTED, 2.0)
    assert await store.transition_run(run_id, S.STARTED, S.SUCCESS, 3.0)


# the queue listing ------------------------------------------------------------------
async def test_the_queue_is_listed_in_order_with_the_in_flight_tags(store: sql.SqlStore) -> None:
    assert (await store.queued_runs(), await store.in_flight_tags()) == ([], [])
    await store.add_run(make_run("b", created_at=2.0, tags={"t": "b"}))
    await store.add_run(make_run("a", created_at=2.0))
    await store.add_run(make_run("z", created_at=1.0))
    await store.add_run(make_run("s", status=S.STARTING, tags={"t": "s", "u": "1"}))
    await store.add_run(make_run("e", status=S.FAILURE, tags={"t": "e"}))

    queued = await store.queued_runs()

    assert [(r.run_id, dict(r.tags)) for r in queued] == [("z", {}), ("a", {}), ("b", {"t": "b"})]
    assert await store.in_flight_tags() == [{"t": "s", "u": "1"}]


# flags ------------------------------------------------------------------------------
async def test_flags_round_trip_and_are_replaced(store: sql.SqlStore) -> None:
    assert await store.get_flag("queue.paused") is None

    await store.set_flag("queue.paused", True, 1.0)
    await store.set_flag("other", {"limits": [1, 2], "note": None}, 1.0)
    assert await store.get_flag("queue.paused") is True
    await store.set_flag("queue.paused", False, 2.0)

    assert await store.get_flag("queue.paused") is False
    assert await store.get_flag("other") == {"limits": [1, 2], "note": None}


# queue notices ----------------------------------------------------------------------
def submitter_for(store: sql.SqlStore, other: sql.SqlStore) -> sql.SqlStore:
    """Who submits for a waiter on `store` to hear it: on SQLite only the store itself."""
    return store if store.target.is_sqlite else other


async def test_a_submission_wakes_a_waiting_task(
    store: sql.SqlStore, other_store: sql.SqlStore
) -> None:
    async with store.queue_wakeups() as wakeups:
        assert not await wakeups.wait(timeout=0)
        waiting_task = asyncio.create_task(wakeups.wait(timeout=30))

        await submitter_for(store, other_store).add_run(make_run("r1"))

        assert await waiting_task


async def test_a_run_that_ends_wakes_a_waiting_task(
    store: sql.SqlStore, other_store: sql.SqlStore
) -> None:
    ender = submitter_for(store, other_store)
    await ender.add_run(make_run("r1", status=S.STARTED))
    async with store.queue_wakeups() as wakeups:
        waiting_task = asyncio.create_task(wakeups.wait(timeout=30))

        assert await ender.transition_run("r1", S.STARTED, S.SUCCESS, 2.0)

        assert await waiting_task


async def test_a_transition_to_queued_wakes_a_waiting_task(
    store: sql.SqlStore, other_store: sql.SqlStore
) -> None:
    submitter = submitter_for(store, other_store)
    await submitter.add_run(make_run("r1", status=S.NOT_STARTED))
    async with store.queue_wakeups() as wakeups:
        waiting_task = asyncio.create_task(wakeups.wait(timeout=30))

        assert await submitter.transition_run("r1", S.NOT_STARTED, S.QUEUED, 2.0)

        assert await waiting_task


async def test_a_flag_set_with_wake_queue_wakes_a_waiting_task_and_others_do_not(
    store: sql.SqlStore, other_store: sql.SqlStore
) -> None:
    setter = submitter_for(store, other_store)
    async with store.queue_wakeups() as wakeups:
        await setter.set_flag("queue.paused", True, 1.0)
        assert not await wakeups.wait(timeout=0.2)
        waiting_task = asyncio.create_task(wakeups.wait(timeout=30))

        await setter.set_flag("queue.paused", False, 2.0, wake_queue=True)

        assert await waiting_task
    assert await store.get_flag("queue.paused") is False


async def test_sqlite_notices_are_kept_until_waited_for_and_only_for_the_queue(
    tmp_path: pathlib.Path,
) -> None:
    url = sa.engine.URL.create("sqlite+aiosqlite", database=f"{tmp_path}/vigil.db")
    store = await storage.open_store(storage.StoreTarget(url))
    other_store = await storage.open_store(storage.StoreTarget(url))
    try:
        async with store.queue_wakeups() as wakeups, store.queue_wakeups() as second:
            await store.add_run(make_run("r1"))
            await store.add_run(make_run("r2"))
            assert await wakeups.wait(timeout=0)  # two notices, kept as one
            assert await second.wait(timeout=0)  # every subscription hears each notice
            assert not await wakeups.wait(timeout=0)

            await store.claim_queued_runs(claiming(["r1"]), 3.0, "d")
            await store.transition_run("r1", S.STARTING, S.STARTED, 4.0)
            await store.add_run(make_run("n1", status=S.NOT_STARTED))
            await other_store.add_run(make_run("r3"))  # another store object: polling finds it
            assert not await wakeups.wait(timeout=0)

            await store.transition_run("r2", S.QUEUED, S.CANCELED, 5.0)
            assert await wakeups.wait(timeout=0)
    finally:
        await other_store.close()
        await store.close()


async def listener_pids(admin: asyncpg.Connection, database: str | None) -> list[int]:
    found = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
        database,
        target.LISTENER_APPLICATION_NAME,
    )
    return [row["pid"] for row in found]


@pytest.fixture
async def admin(postgres_url: sa.engine.URL) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_server.asyncpg_dsn(postgres_url))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_the_listener_reconnects_after_its_connection_is_killed(
    postgres_database: sa.engine.URL, admin: asyncpg.Connection
) -> None:
    store_target = storage.StoreTarget(postgres_database)
    store = await storage.open_store(store_target)
    submitter = await storage.open_store(store_target)
    try:
        async with store.queue_wakeups() as wakeups:
            [first_pid] = await listener_pids(admin, postgres_database.database)
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first_pid)

            # Back: a reconnect counts as a notice, since notices may have been missed.
            assert await wakeups.wait(timeout=30)

            async def replaced() -> bool:
                pids = await listener_pids(admin, postgres_database.database)
                return len(pids) == 1 and first_pid not in pids

            await waiting.eventually(replaced)
            assert not await wakeups.wait(timeout=0)

            waiting_task = asyncio.create_task(wakeups.wait(timeout=30))
            await submitter.add_run(make_run("r1"))
            assert await waiting_task
    finally:
        await submitter.close()
        await store.close()


@pytest.mark.postgres
async def test_the_listener_leaves_no_connection_behind(
    postgres_database: sa.engine.URL, admin: asyncpg.Connection
) -> None:
    store = await storage.open_store(storage.StoreTarget(postgres_database))
    try:
        async with store.queue_wakeups():
            assert len(await listener_pids(admin, postgres_database.database)) == 1
        assert store.engine.pool.checkedout() == 0
    finally:
        await store.close()

    async def listener_gone() -> bool:
        return not await listener_pids(admin, postgres_database.database)

    await waiting.eventually(listener_gone)


@pytest.mark.postgres
async def test_a_listener_that_could_not_connect_at_first_wakes_once_it_does(
    postgres_database: sa.engine.URL,
) -> None:
    attempts = 0

    async def connect_the_second_time() -> asyncpg.Connection:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionRefusedError("the server is not up yet")
        return await asyncpg.connect(pg_server.asyncpg_dsn(postgres_database))

    store = await storage.open_store(storage.StoreTarget(postgres_database))
    try:
        async with wakeup.listen(connect_the_second_time) as wakeups:
            assert await wakeups.wait(timeout=30)  # listening at last: notices may be lost
            assert attempts == 2

            waiting_task = asyncio.create_task(wakeups.wait(timeout=30))
            await store.add_run(make_run("r1"))
            assert await waiting_task
    finally:
        await store.close()


async def test_a_listener_whose_server_is_down_times_out_and_keeps_trying() -> None:
    # Entering does not fail while the database is unreachable: the poll covers the gap.
    url = sa.engine.URL.create(
        "postgresql+asyncpg", username="vigil", host="127.0.0.1", port=closed_port()
    )
    down = storage.StoreTarget(url, connect_timeout=1.0)
    engine = target.create_engine(down)
    store = sql.SqlStore(engine, down)
    try:
        async with store.queue_wakeups() as wakeups:
            assert not await wakeups.wait(timeout=0.05)
    finally:
        await store.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
