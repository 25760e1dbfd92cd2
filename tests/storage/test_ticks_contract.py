"""The store's instigator and tick verbs, on SQLite and a real PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest

from vigil import errors, events, runs, ticks
from vigil.storage import sql

K = ticks.InstigatorKind
St = ticks.InstigatorStatus
T = ticks.TickStatus
NIGHTLY = "schedule:nightly"
FILES = "sensor:files"


def keyed(run_id: str, instigator: str, key: str, status: runs.RunStatus) -> runs.Run:
    return runs.Run(
        run_id=run_id,
        job_name="etl",
        status=status,
        created_at=float(len(run_id)),
        instigator=instigator,
        run_key=key,
    )


# instigator state -------------------------------------------------------------------------
async def test_an_unknown_instigator_has_no_state(store: sql.SqlStore) -> None:
    assert await store.list_instigators() == []
    assert await store.list_instigators([NIGHTLY]) == []


async def test_ensure_creates_default_rows_once(store: sql.SqlStore) -> None:
    await store.ensure_instigators([(NIGHTLY, K.SCHEDULE)], now=10.0)
    await store.ensure_instigators([(NIGHTLY, K.SCHEDULE), (FILES, K.SENSOR)], now=20.0)

    assert await store.list_instigators() == [
        ticks.InstigatorState(NIGHTLY, K.SCHEDULE, St.DEFAULT, None, 10.0),
        ticks.InstigatorState(FILES, K.SENSOR, St.DEFAULT, None, 20.0),
    ]


async def test_status_and_cursor_are_set_independently(store: sql.SqlStore) -> None:
    await store.set_instigator_cursor(FILES, K.SENSOR, "c1", now=1.0)
    await store.set_instigator_status(FILES, K.SENSOR, St.RUNNING, now=2.0)
    await store.set_instigator_cursor(FILES, K.SENSOR, "c2", now=3.0)
    await store.set_instigator_status(NIGHTLY, K.SCHEDULE, St.STOPPED, now=4.0)

    by_name = {s.name: s for s in await store.list_instigators()}
    assert by_name[FILES] == ticks.InstigatorState(FILES, K.SENSOR, St.RUNNING, "c2", 3.0)
    assert by_name[NIGHTLY] == ticks.InstigatorState(NIGHTLY, K.SCHEDULE, St.STOPPED, None, 4.0)
    assert [s.name for s in await store.list_instigators([FILES])] == [FILES]


async def test_ensure_never_overwrites_an_operators_status(store: sql.SqlStore) -> None:
    await store.set_instigator_status(NIGHTLY, K.SCHEDULE, St.STOPPED, now=4.0)
    await store.ensure_instigators([(NIGHTLY, K.SCHEDULE)], now=9.0)

    [state] = await store.list_instigators()
    assert (state.status, state.updated_at) == (St.STOPPED, 4.0)


# ticks ------------------------------------------------------------------------------------
async def test_a_tick_is_unique_per_instigator_and_scheduled_time(store: sql.SqlStore) -> None:
    [first] = await store.add_ticks([(NIGHTLY, 60.0)], T.STARTED, now=61.0)
    again = await store.add_ticks([(NIGHTLY, 60.0), (FILES, 60.0)], T.MISSED, now=99.0)

    assert again[0] == first
    assert (first.status, first.created_at, first.run_ids) == (T.STARTED, 61.0, ())
    assert (again[1].instigator, again[1].status) == (FILES, T.MISSED)
    assert len(await store.list_ticks()) == 2


async def test_many_ticks_are_added_in_one_call_in_the_order_given(store: sql.SqlStore) -> None:
    keys = [(f"schedule:s{i}", 120.0) for i in range(1200)] + [(NIGHTLY, 60.0)]
    added = await store.add_ticks(keys, T.STARTED, now=121.0)

    assert [(t.instigator, t.scheduled_time) for t in added] == keys
    assert len({t.tick_id for t in added}) == len(keys)


async def test_a_plan_writes_its_missed_and_started_ticks_together(store: sql.SqlStore) -> None:
    started = await store.plan_ticks(
        [(NIGHTLY, 180.0)], [(NIGHTLY, 60.0), (NIGHTLY, 120.0)], 181.0, "missed by policy"
    )
    again = await store.plan_ticks([(NIGHTLY, 180.0)], [], 200.0, "unused")

    assert [(t.scheduled_time, t.status) for t in started] == [(180.0, T.STARTED)]
    assert again == started
    stored = sorted(await store.list_ticks(NIGHTLY), key=lambda t: t.scheduled_time)
    assert [(t.scheduled_time, t.status, t.error) for t in stored] == [
        (60.0, T.MISSED, "missed by policy"),
        (120.0, T.MISSED, "missed by policy"),
        (180.0, T.STARTED, None),
    ]
    assert await store.plan_ticks([], [], 300.0, "nothing") == []


async def test_a_finished_tick_keeps_its_outcome(store: sql.SqlStore) -> None:
    [tick] = await store.add_ticks([(NIGHTLY, 60.0)], T.STARTED, now=61.0)
    outcome = ticks.TickOutcome(tick.tick_id, NIGHTLY, T.SUCCESS, run_ids=("r1", "r2"))
    await store.finish_ticks([outcome], now=62.0)

    [stored] = await store.list_ticks(NIGHTLY)
    assert (stored.status, stored.run_ids, stored.updated_at) == (T.SUCCESS, ("r1", "r2"), 62.0)


async def test_only_a_started_tick_finishes(store: sql.SqlStore) -> None:
    [tick] = await store.add_ticks([(NIGHTLY, 60.0)], T.STARTED, now=61.0)
    await store.finish_ticks([ticks.TickOutcome(tick.tick_id, NIGHTLY, T.SKIPPED)], now=62.0)
    await store.finish_ticks(
        [ticks.TickOutcome(tick.tick_id, NIGHTLY, T.FAILED, error="late")], now=63.0
    )

    [stored] = await store.list_ticks(NIGHTLY)
    assert (stored.status, stored.error, stored.updated_at) == (T.SKIPPED, None, 62.0)


async def test_a_cursor_is_committed_with_its_tick_and_only_once(store: sql.SqlStore) -> None:
    await store.set_instigator_status(FILES, K.SENSOR, St.RUNNING, now=1.0)
    [tick] = await store.add_ticks([(FILES, 60.0)], T.STARTED, now=61.0)
    won = ticks.TickOutcome(tick.tick_id, FILES, T.SUCCESS, cursor="c1", commit_cursor=True)
    lost = dataclasses.replace(won, cursor="c2")
    await store.finish_ticks([won], now=62.0)
    await store.finish_ticks([lost], now=63.0)

    [state] = await store.list_instigators([FILES])
    assert (state.status, state.cursor) == (St.RUNNING, "c1")
    assert (await store.list_ticks(FILES))[0].cursor == "c1"


async def test_a_failed_tick_leaves_the_cursor_alone(store: sql.SqlStore) -> None:
    await store.set_instigator_cursor(FILES, K.SENSOR, "c0", now=1.0)
    [tick] = await store.add_ticks([(FILES, 60.0)], T.STARTED, now=61.0)
    await store.finish_ticks(
        [ticks.TickOutcome(tick.tick_id, FILES, T.FAILED, error="boom", cursor="c1")], now=62.0
    )

    [state] = await store.list_instigators([FILES])
    assert state.cursor == "c0"


async def test_ticks_list_newest_first_by_instigator_status_and_limit(store: sql.SqlStore) -> None:
    await store.add_ticks([(NIGHTLY, t) for t in (60.0, 120.0, 180.0)], T.MISSED, now=200.0)
    await store.add_ticks([(NIGHTLY, 240.0), (FILES, 250.0)], T.STARTED, now=250.0)

    assert [t.scheduled_time for t in await store.list_ticks(NIGHTLY)] == [
        240.0,
        180.0,
        120.0,
        60.0,
    ]
    assert [t.scheduled_time for t in await store.list_ticks(NIGHTLY, limit=2)] == [240.0, 180.0]
    started = await store.list_ticks(statuses=[T.STARTED])
    assert [(t.instigator, t.scheduled_time) for t in started] == [(FILES, 250.0), (NIGHTLY, 240.0)]


async def test_latest_ticks_gives_each_instigators_newest(store: sql.SqlStore) -> None:
    assert await store.latest_ticks() == {}
    await store.add_ticks([(NIGHTLY, 60.0), (NIGHTLY, 120.0), (FILES, 30.0)], T.MISSED, now=1.0)

    latest = await store.latest_ticks()
    assert {name: t.scheduled_time for name, t in latest.items()} == {NIGHTLY: 120.0, FILES: 30.0}


async def test_purge_deletes_old_ticks_of_the_given_statuses_never_started_ones(
    store: sql.SqlStore,
) -> None:
    await store.add_ticks([(NIGHTLY, 10.0), (NIGHTLY, 500.0)], T.SKIPPED, now=1.0)
    await store.add_ticks([(NIGHTLY, 20.0)], T.MISSED, now=1.0)
    await store.add_ticks([(NIGHTLY, 30.0)], T.STARTED, now=1.0)

    assert await store.purge_ticks(100.0, [T.SKIPPED, T.STARTED]) == 1
    left = {(t.scheduled_time, t.status) for t in await store.list_ticks()}
    assert left == {(500.0, T.SKIPPED), (20.0, T.MISSED), (30.0, T.STARTED)}


# runs by instigator -------------------------------------------------------------------------
async def test_runs_are_found_by_instigator_and_run_key(store: sql.SqlStore) -> None:
    await store.add_run(keyed("r1", NIGHTLY, "k1", runs.RunStatus.SUCCESS))
    await store.add_run(keyed("r22", NIGHTLY, "k2", runs.RunStatus.QUEUED))
    await store.add_run(keyed("r333", FILES, "k1", runs.RunStatus.QUEUED))

    found = await store.get_run_by_key(NIGHTLY, "k1")
    assert found is not None
    assert found.run_id == "r1"
    assert await store.get_run_by_key(NIGHTLY, "k3") is None
    assert [r.run_id for r in await store.instigator_runs(NIGHTLY)] == ["r22", "r1"]
    active = await store.instigator_runs(NIGHTLY, statuses=[runs.RunStatus.QUEUED], limit=1)
    assert [r.run_id for r in active] == ["r22"]
    with pytest.raises(errors.DuplicateRunKey):
        await store.add_run(keyed("r4", FILES, "k1", runs.RunStatus.QUEUED))


async def test_the_last_event_id_follows_the_log(store: sql.SqlStore) -> None:
    assert await store.last_event_id() == 0
    await store.add_run(keyed("r1", NIGHTLY, "k1", runs.RunStatus.QUEUED))
    batch = [
        events.NewEvent(run_id="r1", event_type=events.EventType.LOG, timestamp=1.0)
        for _ in range(3)
    ]
    await store.append_events(batch)

    last = await store.last_event_id()
    assert [e.event_id for e in await store.get_events("r1")][-1] == last


async def test_runs_are_added_in_one_batch_or_not_at_all(store: sql.SqlStore) -> None:
    first = keyed("r1", NIGHTLY, "k1", runs.RunStatus.QUEUED)
    second = dataclasses.replace(
        keyed("r22", NIGHTLY, "k2", runs.RunStatus.QUEUED), tags={"a": "1"}
    )
    enqueued = [
        events.NewEvent(run_id=r, event_type=events.EventType.RUN_ENQUEUED, timestamp=1.0)
        for r in ("r1", "r22")
    ]
    await store.add_runs([first, second], enqueued)

    assert (await store.get_run("r22")).tags == {"a": "1"}
    assert [e.event_type for e in await store.get_events("r1")] == [events.EventType.RUN_ENQUEUED]
    clash = [
        keyed("r333", NIGHTLY, "k3", runs.RunStatus.QUEUED),
        keyed("r4", NIGHTLY, "k1", runs.RunStatus.QUEUED),
    ]
    with pytest.raises(errors.DuplicateRunKey):
        await store.add_runs(clash)
    assert await store.get_run_by_key(NIGHTLY, "k3") is None
    assert len(await store.instigator_runs(NIGHTLY)) == 2
