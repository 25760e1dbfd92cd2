"""Claims nobody will launch: runs STARTING with no launch recorded, whose claimer is gone
(or is this daemon, which is not launching them: it never heard its claim commit).

A claim (QUEUED -> STARTING) and its launch are two steps: a daemon killed between them
leaves runs that hold their concurrency slots and would only end, much later, by the start
timeout, although nothing ever tried to run them. The run monitor asks `relaunch` at each
pass; it launches such runs again, each under a new launch token (so a worker of the old
claim, if one started after all, loses its start).

A claimer is gone when it is not a live daemon (`presence.live_daemons`, from the
heartbeats) and its claim is older than `health.DOWN_AFTER` heartbeat intervals: a daemon
is judged down only after that long without a heartbeat, so its claims are at least that
old. A CLI's claim (`vigil run launch`) names its process: on this host, it is orphaned
the moment that process is gone and never while it runs, however slow its launch (a
loaded machine once took longer than the wait, and a healthy launch was replaced); a CLI
of another host gets the same wait as a daemon.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

from vigil import runs
from vigil.coordinators import base as coordinators
from vigil.daemon import health, presence
from vigil.storage import store as store_mod


class Relauncher(Protocol):
    """What the monitor calls at each pass; returns the runs it launched again.

    `next_due` is when a claim seen unowned but too young to count as orphaned will be old
    enough (None: no such claim), so the monitor looks again then rather than a whole
    poll interval later.
    """

    next_due: float | None

    async def relaunch(
        self, now: float, owns: Callable[[runs.Run], bool] | None = None
    ) -> Sequence[runs.Run]: ...


class OrphanedClaims:
    def __init__(
        self,
        coordinator: coordinators.RunCoordinator,
        heartbeats: store_mod.HeartbeatReader,
        heartbeat_interval: float,
        every: float,
        cli_alive: Callable[[str | None], bool | None] = coordinators.cli_claim_alive,
    ) -> None:
        self._coordinator = coordinator
        self._cli_alive = cli_alive
        self._heartbeats = heartbeats
        self._grace = health.DOWN_AFTER * heartbeat_interval
        self._interval = heartbeat_interval
        self._every = every
        self._next_look = -math.inf
        self.next_due: float | None = None

    async def relaunch(
        self, now: float, owns: Callable[[runs.Run], bool] | None = None
    ) -> Sequence[runs.Run]:
        """Look at most once every `every` seconds (the monitor's poll; its passes woken by
        worker exits come far more often), and when a young claim comes of age. With many
        daemons, only the runs `owns` accepts (the monitor's shards) are this daemon's."""
        if now < self._next_look and (self.next_due is None or now < self.next_due):
            return []
        self._next_look = now + self._every
        beats = await self._heartbeats.list_heartbeats()
        live = [beat.daemon_id for beat in presence.live_daemons(beats, now, self._interval)]
        # One read: the claims of claimers not live, up to now. The old enough are orphans;
        # the younger (a daemon killed before its first heartbeat, a CLI launching now) are
        # looked at again the moment the oldest of them is old enough.
        # This daemon's own claims count too, but for those it is launching: a claim whose
        # commit it never heard of (the store went away as it committed) is launched by
        # nobody else.
        me = self._coordinator.claimer
        unowned = await self._coordinator.store.orphaned_claims(set(live) - {me}, now)
        if owns is not None:
            unowned = [run for run in unowned if owns(run)]
        launching = self._coordinator.launching()
        due = now - self._grace
        orphans, young = [], []
        for run in unowned:
            if run.claimed_by == me and run.run_id in launching:
                continue
            alive = self._cli_alive(run.claimed_by)
            if alive is False or (alive is None and run.updated_at <= due):
                orphans.append(run)
            elif alive is None:
                young.append(run.updated_at)
        taken = await self._coordinator.launch_orphans(orphans)
        self.next_due = min(young) + self._grace if young else None
        return taken
