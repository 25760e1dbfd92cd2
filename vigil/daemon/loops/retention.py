"""The retention loop: purges ended runs past their retention, in small batches.

Every `retention.purge_interval` it first removes the files a stopped purge left behind
(the journal, see `vigil.purge`), then purges batches of `retention.batch_size` runs, each
one short store transaction followed by its files. Between batches it yields to the other
loops, and gives way to the scheduler and sensor loops while they iterate (`precedence`,
for at most `GIVE_WAY` seconds), so a purge of a large store never holds the event loop or
the store's write lock for long. An iteration purges at most `BATCHES_PER_ITERATION`
batches and, when more remain, asks for its next iteration at once; its heartbeat so
shows progress however large the backlog.
"""

from __future__ import annotations

import dataclasses
import logging

import anyio.lowlevel

from vigil import purge, retention
from vigil.config import settings as settings_mod
from vigil.daemon import clock as clock_mod
from vigil.daemon import leases, loop
from vigil.daemon import precedence as precedence_mod

logger = logging.getLogger(__name__)
BATCHES_PER_ITERATION = 20
GIVE_WAY = 1.0  # the longest a batch waits for the scheduler and sensor loops
MIN_TIMEOUT = 300.0


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionStatistics:
    """What this daemon purged: runs, their events, and run directories (logs, outputs)."""

    runs: int
    events: int
    files: int


class RetentionLoop(loop.Loop):
    name = "retention"

    def __init__(
        self,
        purger: purge.Purger,
        clock: clock_mod.Clock,
        settings: settings_mod.RunRetentionSettings,
        spare_retries: bool,
        precedence: precedence_mod.Precedence | None = None,
        keeper: leases.Keeper | None = None,
    ) -> None:
        super().__init__()
        self._keeper = keeper
        self._purger = purger
        self._clock = clock
        self._settings = settings
        self._spare_retries = spare_retries
        self._precedence = precedence if precedence is not None else precedence_mod.Precedence()
        self.interval = settings.purge_interval
        self.timeout = max(MIN_TIMEOUT, settings.purge_interval)
        self._purged = retention.Purged()
        self._more = False

    def statistics(self) -> RetentionStatistics:
        purged = self._purged
        return RetentionStatistics(purged.runs, purged.events, purged.files)

    def due_sooner(self) -> float | None:
        return self._clock.now() if self._more else None

    async def iterate(self) -> None:
        self._more = False
        if not await leases.owns(self._keeper, leases.RETENTION):
            return  # another daemon purges (many daemons: one at a time)
        self._count(await self._purger.leftovers())
        this_time = retention.Purged()
        for _ in range(BATCHES_PER_ITERATION):
            await self._precedence.give_way(GIVE_WAY)
            now = self._clock.now()
            rule = retention.rule_from_settings(
                self._settings, now, spare_retries=self._spare_retries
            )
            if rule is None:
                return
            batch = await self._purger.batch(rule, now)
            self._count(batch)
            this_time += batch
            self._more = purge.is_full(batch, rule)
            if not self._more:
                break
            await anyio.lowlevel.checkpoint()  # the other loops run between batches
        self._log(this_time)

    def _count(self, purged: retention.Purged) -> None:
        self._purged += purged

    def _log(self, purged: retention.Purged) -> None:
        if purged.runs == 0:
            return
        logger.info(
            "purged %d runs, %d events and %d run directories",
            purged.runs,
            purged.events,
            purged.files,
            extra={"event": "runs.purged", "runs": purged.runs, "events": purged.events},
        )
