"""The store's lease verbs and fenced writes, on SQLite and a real PostgreSQL.

Memberships expire by the daemon's clock (`now` is passed in); a unit is taken only while
it is released, new, or its owner's membership expired; a takeover raises the token, and a
write fenced by the old token is refused in its own transaction.
"""

from __future__ import annotations

import anyio
import pytest

from vigil import errors, events, runs, ticks
from vigil.storage import sql
from vigil.storage import store as store_mod

A, B = "daemon-a", "daemon-b"
NIGHTLY = "schedule:nightly"
HOURLY = "schedule:hourly"
TTL = 10.0
S = runs.RunStatus


def member(daemon_id: str, now: float) -> store_mod.Member:
    return store_mod.Member(daemon_id, "host", 1, 0.0, now + TTL)


async def joined(store: sql.SqlStore, *daemons: str, now: float = 100.0) -> None:
    for daemon_id in daemons:
        await store.renew_membership(member(daemon_id, now))


async def test_a_new_unit_is_taken_with_token_1_and_kept_by_its_owner(
    store: sql.SqlStore,
) -> None:
    await joined(store, A, B)
    got = await store.acquire_leases(A, [NIGHTLY, HOURLY], 100.0)
    assert got == store_mod.Acquired({NIGHTLY: 1, HOURLY: 1})

    assert await store.acquire_leases(B, [NIGHTLY], 101.0) == store_mod.Acquired({})
    again = await store.acquire_leases(A, [NIGHTLY], 102.0)
    assert again.held == {NIGHTLY: 1}  # held already: not taken again, token unchanged
    assert [(x.unit, x.owner, x.token) for x in await store.list_leases("schedule:")] == [
        (HOURLY, A, 1),
        (NIGHTLY, A, 1),
    ]


async def test_an_expired_owners_units_are_taken_over_with_a_new_token(
    store: sql.SqlStore,
) -> None:
    await joined(store, A, B)
    await store.acquire_leases(A, [NIGHTLY], 100.0)

    assert (await store.acquire_leases(B, [NIGHTLY], 100.0 + TTL)).held == {}  # not yet
    got = await store.acquire_leases(B, [NIGHTLY], 100.0 + TTL + 0.5)
    assert got == store_mod.Acquired({NIGHTLY: 2}, (NIGHTLY,))


async def test_a_released_unit_is_taken_at_once_and_is_no_takeover(store: sql.SqlStore) -> None:
    await joined(store, A, B)
    await store.acquire_leases(A, [NIGHTLY, HOURLY], 100.0)
    await store.release_leases(A, [NIGHTLY])
    await store.release_leases(B, [HOURLY])  # not B's: nothing happens

    got = await store.acquire_leases(B, [NIGHTLY, HOURLY], 101.0)
    assert got == store_mod.Acquired({NIGHTLY: 2})
    owners = {x.unit: x.owner for x in await store.list_leases()}
    assert owners == {NIGHTLY: B, HOURLY: A}


async def test_leaving_releases_every_unit_and_ends_the_membership(store: sql.SqlStore) -> None:
    await joined(store, A, B)
    await store.acquire_leases(A, [NIGHTLY, HOURLY, "retries"], 100.0)

    assert await store.leave(A) == 3
    assert [m.daemon_id for m in await store.list_members()] == [B]
    assert {x.owner for x in await store.list_leases()} == {None}
    assert (await store.acquire_leases(B, [NIGHTLY], 100.5)).held == {NIGHTLY: 2}


async def test_renewal_keeps_a_membership_and_pruning_drops_old_ones(store: sql.SqlStore) -> None:
    await joined(store, A, B)
    await store.acquire_leases(A, [NIGHTLY], 100.0)
    await store.renew_membership(member(A, 105.0))

    assert (await store.acquire_leases(B, [NIGHTLY], 112.0)).held == {}  # A renewed to 115
    assert await store.prune_members(113.0) == 1  # B's expired at 110
    assert [m.daemon_id for m in await store.list_members()] == [A]
    assert (await store.list_members())[0].expires_at == 115.0


async def test_two_daemons_racing_for_one_expired_lease_one_wins(
    store: sql.SqlStore, other_store: sql.SqlStore
) -> None:
    units = [f"schedule:s{n}" for n in range(200)]
    await joined(store, "dead")
    await store.acquire_leases("dead", units, 100.0)
    await joined(store, A, B, now=200.0)
    got: dict[str, store_mod.Acquired] = {}

    async def take(which: sql.SqlStore, owner: str) -> None:
        got[owner] = await which.acquire_leases(owner, units, 200.0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, store, A)
        tg.start_soon(take, other_store, B)

    assert set(got[A].held) | set(got[B].held) == set(units)
    assert not set(got[A].held) & set(got[B].held)
    assert sorted(got[A].taken + got[B].taken) == sorted(units)
    assert {x.token for x in await store.list_leases()} == {2}


# fencing ----------------------------------------------------------------------------------
async def test_a_tick_outcome_fenced_by_a_lost_lease_is_refused(store: sql.SqlStore) -> None:
    await joined(store, A, B)
    old = (await store.acquire_leases(A, [NIGHTLY, HOURLY], 100.0)).held
    started = await store.add_ticks([(NIGHTLY, 50.0), (HOURLY, 50.0)], ticks.TickStatus.STARTED, 1)
    await store.release_leases(A, [HOURLY])  # A gives HOURLY up, and B takes it
    await store.acquire_leases(B, [HOURLY], 101.0)

    outcomes = [
        ticks.TickOutcome(t.tick_id, t.instigator, ticks.TickStatus.SKIPPED) for t in started
    ]
    refused = await store.finish_ticks(outcomes, 102.0, store_mod.Fence(A, old))

    assert refused == [t.tick_id for t in started if t.instigator == HOURLY]
    by_name = {t.instigator: t.status for t in await store.list_ticks()}
    assert by_name == {NIGHTLY: ticks.TickStatus.SKIPPED, HOURLY: ticks.TickStatus.STARTED}


async def test_a_sensor_cursor_is_not_moved_by_a_daemon_that_lost_the_sensor(
    store: sql.SqlStore,
) -> None:
    files = "sensor:files"
    await joined(store, A)
    old = (await store.acquire_leases(A, [files], 100.0)).held
    [tick] = await store.add_ticks([(files, 50.0)], ticks.TickStatus.STARTED, 1.0)
    await joined(store, B, now=120.0)
    await store.acquire_leases(B, [files], 120.0)  # A's membership expired at 110

    outcome = ticks.TickOutcome(
        tick.tick_id, files, ticks.TickStatus.SUCCESS, cursor="c9", commit_cursor=True
    )
    assert await store.finish_ticks([outcome], 121.0, store_mod.Fence(A, old)) == [tick.tick_id]
    assert [s.cursor for s in await store.list_instigators([files])] == []


async def test_monitor_decisions_and_cursors_fenced_by_a_lost_lease_raise(
    store: sql.SqlStore,
) -> None:
    shard = "monitor:3"
    await joined(store, A)
    old = store_mod.Fence(A, (await store.acquire_leases(A, [shard, "retries"], 100.0)).held)
    run = runs.Run(run_id="r1", job_name="etl", status=S.STARTED, created_at=1.0)
    await store.add_run(run)
    await joined(store, B, now=120.0)
    await store.acquire_leases(B, [shard, "retries"], 120.0)

    end = runs.RunEnd(S.FAILURE, "worker died", runs.EndReason.WORKER_DIED, by="monitor")
    with pytest.raises(errors.LeaseLost, match="no longer holds monitor:3"):
        await store.end_run("r1", S.STARTED, end, 121.0, fence=old)
    event = events.NewEvent(run_id="r1", event_type=events.EventType.ENGINE, timestamp=121.0)
    with pytest.raises(errors.LeaseLost):
        await store.resume_run("r1", S.STARTED, 1, 121.0, A, event, old)
    with pytest.raises(errors.LeaseLost, match="retries"):
        await store.set_flag("retries.cursor", 7, 121.0, fence=old)

    assert (await store.get_run("r1")).status is S.STARTED
    assert await store.get_flag("retries.cursor") is None
    new = store_mod.Fence(B, {shard: 2})
    assert await store.end_run("r1", S.STARTED, end, 122.0, fence=new)
