"""This daemon's share of the work, held by leases in the store (many daemons, one store).

Every unit of daemon work with one owner at a time (a schedule, a sensor, a shard of the
monitor's in-flight runs, the retries cursor, the run purge, the backfills) is a lease row
(`LeaseStore`). A daemon is a *member* while its membership row has not expired; `Keeper`
renews it every `ttl / RENEWALS_PER_TTL` seconds and reads the other members every
`MEMBERS_POLL` seconds.

Fair shares without a coordinator: each unit's preferred owner is the live member that
ranks first for it by rendezvous hashing (a hash of unit and daemon id). A loop calls
`share(kind, units)` at each iteration: the keeper gives up the units another member now
prefers and takes the ones it prefers, when they are released or their owner's
membership expired. Those it prefers but could not take yet, it tries again every
`MEMBERS_POLL` seconds, and wakes the loops when it takes one: a handover waits for no
loop's poll interval. So a daemon that joins takes about 1/N of each kind, one that stops
cleanly releases its units (`leave`) and the others take them at once, and one that was
killed loses its units once its membership expires (`ttl`), when the others take them
over with new fencing tokens. A change of membership wakes every loop that shares.

Fencing: a loop writes owned work with `fence(units)`; the store refuses it when a unit's
token changed (another daemon took it over while this one was paused or cut off), and
the loop calls `lost(units)` so the keeper reads again what it still holds.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import math
from collections.abc import Collection, Iterable, Mapping

from vigil import errors
from vigil.daemon import clock as clock_mod
from vigil.daemon import loop as loop_mod
from vigil.daemon import vitals
from vigil.storage import store as store_mod

logger = logging.getLogger(__name__)

RENEWALS_PER_TTL = 4  # the membership is renewed this many times per TTL
MEMBERS_POLL = 0.5  # seconds between two reads of the members (a clean stop is seen this fast)
MEMBER_RETENTION = 86400.0  # memberships expired this long ago are deleted
MONITOR = "monitor:"
RETRIES = "retries"
RETENTION = "retention"
BACKFILLS = "backfills"


def monitor_units(shards: int) -> list[str]:
    return [f"{MONITOR}{n}" for n in range(shards)]


def monitor_unit(run_id: str, shards: int) -> str:
    """The monitor shard a run belongs to: a stable hash of its id."""
    digest = hashlib.blake2b(run_id.encode(), digest_size=8).digest()
    return f"{MONITOR}{int.from_bytes(digest, 'big') % shards}"


async def owns(keeper: Keeper | None, unit: str) -> bool:
    """Whether this daemon does the single unit's work: always without a keeper."""
    return keeper is None or await keeper.own(unit)


def kind_of(unit: str) -> str:
    """The kind a unit counts under: "schedule", "sensor", "monitor", or the unit itself."""
    return unit.partition(":")[0]


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseStatistics:
    """A snapshot for `/metrics`: the units held by kind, the takeovers since the start."""

    owned: Mapping[str, int]
    takeovers: Mapping[str, int]


def _rank(unit: str, member: str) -> bytes:
    return hashlib.blake2b(f"{member}\0{unit}".encode(), digest_size=8).digest()


class Keeper:
    """This daemon's membership and the leases it holds; `run` is its service."""

    def __init__(
        self,
        store: store_mod.LeaseStore,
        identity: vitals.DaemonIdentity,
        clock: clock_mod.Clock,
        ttl: float,
    ) -> None:
        self.me = identity.daemon_id
        self._identity = identity
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._members: tuple[str, ...] = (self.me,)
        self._preferred: dict[str, str] = {}  # unit -> its preferred member, for `_members`
        self._held: dict[str, int] = {}  # unit -> token, as this daemon believes it holds
        self._stale = False  # what it holds must be read again before the next share
        self._renewed_at = -math.inf
        self._watchers: list[loop_mod.Wakeup] = []
        # Units it prefers but another daemon still held at its last share, by prefix: the
        # service tries them every MEMBERS_POLL, so a handover takes no loop's poll.
        self._awaiting: dict[str, frozenset[str]] = {}
        self.takeovers: collections.Counter[str] = collections.Counter()  # by kind

    # what the loops call -------------------------------------------------------------------
    def watch(self, wake: loop_mod.Wakeup) -> None:
        """Wake this loop whenever the members change (its share may have)."""
        self._watchers.append(wake)

    async def share(self, prefix: str, units: Collection[str]) -> frozenset[str]:
        """Move toward this daemon's fair share of `units` (all starting with `prefix`):
        release the held units another member prefers, take the free ones of `units` it
        prefers. The units of `units` it holds after.

        A held unit missing from `units` (a schedule just stopped) is kept while this
        daemon is its preferred owner: work for it may still be in flight (a tick being
        evaluated), and releasing the unit would have that work's fenced write refused and
        the tick left STARTED with nobody to finish it."""
        await self._refresh_if_stale()
        mine = {u for u in units if self._prefers_me(u)}
        held = {u for u in self._held if u.startswith(prefix)}
        await self._release({u for u in held if not self._prefers_me(u)})
        wanted = mine - held
        if wanted:
            await self._acquire(wanted)
        self._awaiting[prefix] = frozenset(u for u in wanted if u not in self._held)
        return frozenset(u for u in units if u in self._held)

    async def own(self, unit: str) -> bool:
        """Whether this daemon holds a single unit (a cursor, a purge) after sharing it."""
        return unit in await self.share(unit, [unit])

    def holds(self, unit: str) -> bool:
        return unit in self._held

    def fence(self, units: Iterable[str]) -> store_mod.Fence:
        """The proof of ownership for a write of these units' work."""
        return store_mod.Fence(self.me, {u: self._held[u] for u in units if u in self._held})

    def lost(self, units: Iterable[str]) -> None:
        """A fenced write of these units was refused: forget them, read the rest again."""
        for unit in units:
            self._held.pop(unit, None)
        self._stale = True

    def owned(self) -> Mapping[str, int]:
        """How many units this daemon holds, by kind."""
        return collections.Counter(kind_of(u) for u in self._held)

    def statistics(self) -> LeaseStatistics:
        """What `/metrics` reads at scrape time (a copy: read-only)."""
        return LeaseStatistics(dict(self.owned()), dict(self.takeovers))

    @property
    def members(self) -> tuple[str, ...]:
        return self._members

    # membership ----------------------------------------------------------------------------
    async def join(self, *, alone: bool = False) -> None:
        """Become a member (before the loops start), and learn the others. `alone`: no
        other daemon can be live (SQLite, checked by `presence`): the memberships left by
        daemons that died end now, so their units are taken at once, not after the TTL."""
        if alone:
            for other in await self._store.list_members():
                if other.daemon_id != self.me:
                    await self._store.leave(other.daemon_id)
        await self._renew()
        await self._read_members()

    async def run(self) -> None:
        """Forever: renew the membership, and watch the others come and go."""
        every = self._ttl / RENEWALS_PER_TTL
        while True:
            now = self._clock.now()
            if now - self._renewed_at >= every:
                await self._renew_quietly()
            await self._watch_members()
            await self._take_awaited()
            await self._clock.sleep_until(self._clock.now() + MEMBERS_POLL)

    async def leave(self) -> None:
        """A clean stop: release every unit and end the membership, in one transaction."""
        released = await self._store.leave(self.me)
        self._held.clear()
        logger.info(
            "released %d leases as the daemon stops",
            released,
            extra={"event": "leases.released", "units": released},
        )

    async def _renew(self) -> None:
        now = self._clock.now()
        if now - self._renewed_at > self._ttl and self._renewed_at > -math.inf:
            self._stale = True  # paused past its lease: others may have taken units over
        identity = self._identity
        member = store_mod.Member(
            self.me, identity.host, identity.pid, identity.started_at, now + self._ttl
        )
        await self._store.renew_membership(member)
        self._renewed_at = now

    async def _renew_quietly(self) -> None:
        try:
            await self._renew()
        except errors.StoreError as exc:
            logger.warning(
                "could not renew this daemon's leases: %s",
                exc,
                extra={"event": "leases.renew_failed", "error": str(exc)},
            )

    async def _watch_members(self) -> None:
        try:
            changed = await self._read_members()
        except errors.StoreError:
            return  # the store is away: the renewal logs it, the loops wait for it
        if changed:
            self._wake_all()

    async def _take_awaited(self) -> None:
        """Take the units it waits for as soon as their owner lets them go (a handover, a
        clean stop) or its membership expires; wake the loops when it got any."""
        awaited = {u for units in self._awaiting.values() for u in units if self._prefers_me(u)}
        if not awaited:
            return
        try:
            await self._acquire(awaited)
        except errors.StoreError:
            return  # the store is away: the renewal logs it
        got = {u for u in awaited if u in self._held}
        if got:
            self._awaiting = {p: units - got for p, units in self._awaiting.items()}
            self._wake_all()

    def _wake_all(self) -> None:
        for wake in self._watchers:
            wake.set()

    async def _read_members(self) -> bool:
        now = self._clock.now()
        found = await self._store.list_members()
        live = {m.daemon_id for m in found if m.expires_at >= now} | {self.me}
        members = tuple(sorted(live))
        if members == self._members:
            return False
        logger.info(
            "daemons on this store: %d (%s)",
            len(members),
            ", ".join(members),
            extra={"event": "leases.members", "members": list(members)},
        )
        self._members = members
        self._preferred.clear()
        if any(m.expires_at < now - MEMBER_RETENTION for m in found):
            await self._store.prune_members(now - MEMBER_RETENTION)
        return True

    # leases --------------------------------------------------------------------------------
    def _prefers_me(self, unit: str) -> bool:
        preferred = self._preferred.get(unit)
        if preferred is None:
            preferred = max(self._members, key=lambda m: _rank(unit, m))
            self._preferred[unit] = preferred
        return preferred == self.me

    async def _release(self, units: Collection[str]) -> None:
        if not units:
            return
        await self._store.release_leases(self.me, units)
        for unit in units:
            self._held.pop(unit, None)

    async def _acquire(self, units: Collection[str]) -> None:
        acquired = await self._store.acquire_leases(self.me, units, self._clock.now())
        self._held.update(acquired.held)
        for unit in acquired.taken:
            self.takeovers[kind_of(unit)] += 1
        if acquired.taken:
            logger.warning(
                "took over %d units of daemons that stopped renewing: %s",
                len(acquired.taken),
                _sample(acquired.taken),
                extra={"event": "leases.taken_over", "units": list(acquired.taken)},
            )

    async def _refresh_if_stale(self) -> None:
        if not self._stale:
            return
        self._stale = False
        leases = await self._store.list_leases()
        self._held = {lease.unit: lease.token for lease in leases if lease.owner == self.me}


def _sample(units: Collection[str], most: int = 5) -> str:
    shown = sorted(units)[:most]
    more = len(units) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")
