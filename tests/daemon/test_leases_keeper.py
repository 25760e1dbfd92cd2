"""The lease keeper of three daemons on one real store, with a clock the test moves.

Fair shares by rendezvous hashing, a joiner taking its share as the others hand it over,
a clean leave handing everything over at once, a daemon that stops renewing losing its
units to the others after the TTL (takeovers counted), and a daemon that wakes from a long
pause learning what it lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.daemon.fakes import ManualClock
from vigil import storage, ticks
from vigil.daemon import leases, loop, vitals
from vigil.storage import sql

TTL = 10.0
UNITS = [f"schedule:s{n}" for n in range(300)]


@pytest.fixture
async def store(store_target: storage.StoreTarget) -> AsyncIterator[sql.SqlStore]:
    opened = await storage.open_store(store_target)
    try:
        yield opened
    finally:
        await opened.close()


def keeper(store: sql.SqlStore, clock: ManualClock, name: str) -> leases.Keeper:
    identity = vitals.DaemonIdentity(name, "host", 1, clock.now())
    return leases.Keeper(store, identity, clock, TTL)


async def joined(store: sql.SqlStore, clock: ManualClock, *names: str) -> list[leases.Keeper]:
    found = [keeper(store, clock, name) for name in names]
    for each in found:
        await each.join()
    for each in found:
        await each._read_members()  # what the service does every MEMBERS_POLL
    return found


async def shares(keepers: list[leases.Keeper]) -> list[frozenset[str]]:
    """Two rounds of sharing: the first hands over, the second takes what was handed."""
    for _ in range(2):
        found = [await k.share("schedule:", UNITS) for k in keepers]
    return found


async def test_three_daemons_split_the_units_fairly_and_never_share_one(
    store: sql.SqlStore,
) -> None:
    clock = ManualClock()
    keepers = await joined(store, clock, "a", "b", "c")

    found = await shares(keepers)

    assert set().union(*found) == set(UNITS)
    assert sum(len(f) for f in found) == len(UNITS)  # no unit owned twice
    assert all(60 <= len(f) <= 140 for f in found), [len(f) for f in found]
    owners = {lease.unit: lease.owner for lease in await store.list_leases("schedule:")}
    assert all(owners[u] == k.me for k, f in zip(keepers, found, strict=True) for u in f)


async def test_a_joiner_takes_its_share_from_the_others_and_a_leaver_hands_all_back(
    store: sql.SqlStore,
) -> None:
    clock = ManualClock()
    a, b = await joined(store, clock, "a", "b")
    before = await shares([a, b])
    [c] = await joined(store, clock, "c")
    for each in (a, b):
        assert await each._read_members()  # the others see the joiner

    during = await shares([a, b, c])
    assert len(during[2]) > 0
    assert during[0] <= before[0]
    assert during[1] <= before[1]
    assert sum(len(f) for f in during) == len(UNITS)

    await c.leave()
    for each in (a, b):
        assert await each._read_members()
    after = await shares([a, b])
    assert after[0] | after[1] == set(UNITS)
    assert a.takeovers == b.takeovers == {}  # handed over, never taken from the dead


async def test_a_stopped_schedule_stays_held_so_its_tick_in_flight_is_recorded(
    store: sql.SqlStore,
) -> None:
    """A schedule stopped while its tick is evaluated: its daemon, still the preferred
    owner, keeps the lease, so the tick's fenced ending lands rather than being refused
    and left STARTED (a stopped schedule's ticks are taken up by nobody)."""
    clock = ManualClock()
    [a] = await joined(store, clock, "a")
    nightly = "schedule:nightly"
    assert await a.share("schedule:", [nightly]) == {nightly}
    [tick] = await store.add_ticks([(nightly, 50.0)], ticks.TickStatus.STARTED, clock.now())

    assert await a.share("schedule:", []) == frozenset()  # the schedule was stopped
    outcome = ticks.TickOutcome(tick.tick_id, nightly, ticks.TickStatus.SKIPPED)
    refused = await store.finish_ticks([outcome], clock.now(), a.fence([nightly]))

    assert refused == []
    assert [t.status for t in await store.list_ticks(nightly)] == [ticks.TickStatus.SKIPPED]


async def test_a_daemon_that_stops_renewing_loses_its_units_after_the_ttl(
    store: sql.SqlStore,
) -> None:
    clock = ManualClock()
    a, b = await joined(store, clock, "a", "b")
    _, held_by_b = await shares([a, b])

    clock.advance(TTL - 1)
    await a._renew()
    assert await a.share("schedule:", UNITS) & held_by_b == set()  # b's lease still holds
    clock.advance(2)  # b never renewed: its membership expired
    assert await a._read_members()
    assert a.members == ("a",)
    assert await a.share("schedule:", UNITS) == set(UNITS)
    assert a.takeovers == {"schedule": len(held_by_b)}


async def test_a_daemon_back_from_a_long_pause_learns_what_it_lost(store: sql.SqlStore) -> None:
    clock = ManualClock()
    a, b = await joined(store, clock, "a", "b")
    held_by_a, _ = await shares([a, b])
    wake = loop.Wakeup()
    b.watch(wake)

    clock.advance(TTL + 1)  # a is frozen; b renews, sees a gone, takes everything
    await b._renew()
    await b._watch_members()
    assert wake.is_set()
    assert await b.share("schedule:", UNITS) == set(UNITS)

    await a._renew()  # a wakes: its renewal finds it was away past its TTL
    assert a.fence(held_by_a).tokens  # it still believes it holds them...
    await b._read_members()
    await a._read_members()
    mine = await a.share("schedule:", UNITS)  # ...until it reads what it holds
    assert mine <= held_by_a
    owners = {lease.unit: lease.owner for lease in await store.list_leases("schedule:")}
    assert all(owners[u] == "a" for u in mine)
    assert sum(owners[u] == "b" for u in UNITS) + len(mine) == len(UNITS)


async def test_the_service_takes_a_handed_over_unit_and_wakes_the_loops(
    store: sql.SqlStore,
) -> None:
    clock = ManualClock()
    a, b = await joined(store, clock, "a", "b")
    held_by_a, _ = await shares([a, b])
    wake = loop.Wakeup()
    a.watch(wake)
    await a.leave()  # a's units are free: b prefers none of them yet (a is a member)...
    await b._read_members()  # ...until b sees a gone, and shares again
    assert await b.share("schedule:", UNITS) == set(UNITS)

    await a.join()  # a comes back: b hands a's preferred units back on its next share
    await a._read_members()
    await b._read_members()
    assert await a.share("schedule:", UNITS) == set()  # b still holds them
    await b.share("schedule:", UNITS)
    await a._take_awaited()  # the service, within MEMBERS_POLL
    assert wake.is_set()
    assert await a.share("schedule:", UNITS) == held_by_a


async def test_a_daemon_alone_on_its_store_takes_a_dead_ones_units_at_once(
    store: sql.SqlStore,
) -> None:
    clock = ManualClock()
    [dead] = await joined(store, clock, "dead")
    await dead.share("schedule:", UNITS)  # then SIGKILLed: its membership has TTL left

    restarted = keeper(store, clock, "restarted")
    await restarted.join(alone=True)
    assert await restarted.share("schedule:", UNITS) == set(UNITS)
    assert [m.daemon_id for m in await store.list_members()] == ["restarted"]
