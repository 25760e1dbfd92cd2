"""Heartbeats: each loop's proof of life and progress, written by its own small task.

A `HeartbeatWriter` writes one row every `heartbeat_interval`, whatever its loop is doing,
so a slow or stuck iteration never silences it; the row's `info` carries the loop's
statistics (see `loop_info`). A write the store refuses is logged once and retried every
`RETRY_INTERVAL` (or every beat, if that is sooner) until one passes, so heartbeats resume
within a second or so of the store's return; the loop never notices. When the writer is
cancelled (the daemon stops) it writes a last heartbeat marked `stopped`, shielded and
bounded by `FINAL_WRITE_TIMEOUT`.

Besides one row per loop, the supervisor writes its own row (loop `supervisor`), so a
daemon with no loops is still seen by `vigil daemon status` and by a second daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from vigil import errors
from vigil.daemon import clock as clock_mod
from vigil.daemon import loop as loop_mod
from vigil.daemon import vitals
from vigil.storage import store as store_mod

logger = logging.getLogger(__name__)

SUPERVISOR = vitals.SUPERVISOR
FINAL_WRITE_TIMEOUT = 5.0
RETRY_INTERVAL = 1.0  # seconds between two attempts while the store refuses heartbeats

InfoSource = Callable[[], dict[str, Any]]
StoreErrorObserver = Callable[[errors.StoreError], None]


# Who writes and the info codec live in `vitals` (read without anyio); the same names.
DaemonIdentity = vitals.DaemonIdentity
new_identity = vitals.new_identity
loop_info = vitals.loop_info
supervisor_info = vitals.supervisor_info
statistics_from_info = vitals.statistics_from_info


# the writer --------------------------------------------------------------------------
class HeartbeatWriter:
    """Writes the heartbeat row `(daemon_id, name)` every `interval`, from `read()`."""

    def __init__(
        self,
        store: store_mod.HeartbeatStore,
        identity: DaemonIdentity,
        name: str,
        read: InfoSource,
        *,
        clock: clock_mod.Clock,
        interval: float,
        on_store_error: StoreErrorObserver | None = None,
    ) -> None:
        self.name = name
        self._store = store
        self._identity = identity
        self._read = read
        self._clock = clock
        self._interval = interval
        self._on_store_error = on_store_error
        self._failing = False

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Beat now and every interval until cancelled; then write the stopped heartbeat."""
        task_status.started()
        try:
            while True:
                wrote = await self.beat()
                wait = self._interval if wrote else min(self._interval, RETRY_INTERVAL)
                await self._clock.sleep_until(self._clock.now() + wait)
        except anyio.get_cancelled_exc_class():
            with anyio.move_on_after(FINAL_WRITE_TIMEOUT, shield=True):
                await self.beat(stopped=True)
            raise

    async def beat(self, *, stopped: bool = False) -> bool:
        """Write one heartbeat; False (logged, not raised) when the store refused it."""
        info = self._read()
        if stopped:
            info = {**info, "state": loop_mod.LoopState.STOPPED.value, "stopped": True}
        heartbeat = store_mod.Heartbeat(
            daemon_id=self._identity.daemon_id,
            loop=self.name,
            host=self._identity.host,
            pid=self._identity.pid,
            last_heartbeat=self._clock.now(),
            info=info,
        )
        try:
            await self._store.write_heartbeat(heartbeat)
        except errors.StoreError as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    def _failed(self, exc: errors.StoreError) -> None:
        if self._on_store_error is not None:
            self._on_store_error(exc)
        if not self._failing:
            logger.warning(
                "cannot write the heartbeat of %s: %s (retrying every beat)",
                self.name,
                exc,
                extra={"event": "heartbeat.failed", "loop": self.name, "error": str(exc)},
            )
        self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            logger.info(
                "heartbeat of %s written again",
                self.name,
                extra={"event": "heartbeat.recovered", "loop": self.name},
            )
        self._failing = False
