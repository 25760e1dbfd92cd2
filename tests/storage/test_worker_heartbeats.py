"""A run worker's heartbeat, on SQLite and PostgreSQL: one guarded UPDATE (the run in flight,
the worker's launch token), alone or in the transaction of a batch of its events."""

from __future__ import annotations

import pytest

from tests.storage.test_launch_verbs import claimed, note
from vigil import errors, events, runs, storage
from vigil.storage import sql

S = runs.RunStatus
E = events.EventType


async def started(store: sql.SqlStore) -> runs.Run:
    run = await claimed(store)
    update = storage.RunUpdate(start_time=3.0, worker_pid=7, worker_heartbeat=3.0)
    taken = await store.start_run("r1", 3.0, update, token=run.launch_token)
    assert taken is not None
    return taken


async def test_a_start_is_the_first_heartbeat_and_a_beat_moves_it(store: sql.SqlStore) -> None:
    run = await started(store)
    assert run.worker_heartbeat == 3.0

    assert await store.record_worker_heartbeat("r1", run.launch_token, 8.0)

    stored = await store.get_run("r1")
    assert (stored.worker_heartbeat, stored.updated_at) == (8.0, 3.0)  # updated_at untouched


async def test_a_beat_with_events_writes_both(store: sql.SqlStore) -> None:
    run = await started(store)
    batch = [note("r1", "step log 1"), note("r1", "step log 2")]

    assert await store.record_worker_heartbeat("r1", run.launch_token, 9.0, batch)

    assert (await store.get_run("r1")).worker_heartbeat == 9.0
    messages = [e.message for e in await store.get_events("r1", event_types=[E.ENGINE])]
    assert messages == ["step log 1", "step log 2"]


async def test_a_stale_token_beats_nothing_but_its_events_are_kept(store: sql.SqlStore) -> None:
    run = await started(store)
    resumed = await store.resume_run("r1", S.STARTED, 1, 4.0, "d2", note("r1", "resume"))
    assert resumed is not None
    assert resumed.worker_heartbeat is None  # the new launch has not beaten yet

    assert not await store.record_worker_heartbeat("r1", run.launch_token, 5.0, [note("r1", "x")])

    assert (await store.get_run("r1")).worker_heartbeat is None
    assert "x" in [e.message for e in await store.get_events("r1")]
    assert await store.record_worker_heartbeat("r1", resumed.launch_token, 6.0)
    assert (await store.get_run("r1")).worker_heartbeat == 6.0


async def test_only_a_run_in_flight_beats(store: sql.SqlStore) -> None:
    run = await claimed(store)
    assert not await store.record_worker_heartbeat("r1", run.launch_token, 2.5)  # STARTING
    await store.start_run("r1", 3.0, token=run.launch_token)
    await store.request_cancel("r1", 4.0)
    assert await store.record_worker_heartbeat("r1", run.launch_token, 5.0)  # CANCELING
    end = runs.RunEnd(S.CANCELED, "stopped")
    assert await store.end_run("r1", S.CANCELING, end, 6.0, token=run.launch_token)

    assert not await store.record_worker_heartbeat("r1", run.launch_token, 7.0)
    assert (await store.get_run("r1")).worker_heartbeat == 5.0


async def test_a_worker_without_a_token_beats_while_in_flight(store: sql.SqlStore) -> None:
    await started(store)
    assert await store.record_worker_heartbeat("r1", None, 4.0)
    assert (await store.get_run("r1")).worker_heartbeat == 4.0


async def test_a_beat_of_an_unknown_run_is_an_error(store: sql.SqlStore) -> None:
    with pytest.raises(errors.UnknownRun):
        await store.record_worker_heartbeat("nope", None, 1.0)
