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

import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from vigil import errors
from vigil.daemon import clock as clock_mod
from vigil.daemon import loop as loop_mod
from vigil.storage import store as store_mod

logger = logging.getLogger(__name__)

SUPERVISOR = "supervisor"
FINAL_WRITE_TIMEOUT = 5.0
RETRY_INTERVAL = 1.0  # seconds between two attempts while the store refuses heartbeats

InfoSource = Callable[[], dict[str, Any]]
StoreErrorObserver = Callable[[errors.StoreError], None]


@dataclasses.dataclass(frozen=True, slots=True)
class DaemonIdentity:
    """Who writes the heartbeats: a fresh id per daemon process, its host and pid."""

    daemon_id: str
    host: str
    pid: int
    started_at: float

    @property
    def address(self) -> str:
        return f"{self.host}:{self.pid}"


def new_identity(now: float) -> DaemonIdentity:
    return DaemonIdentity(uuid.uuid4().hex, socket.gethostname(), os.getpid(), now)


# the info codec ----------------------------------------------------------------------
def loop_info(
    stats: loop_mod.LoopStatistics, identity: DaemonIdentity, heartbeat_interval: float
) -> dict[str, Any]:
    """A loop's heartbeat `info`: its statistics as plain JSON values."""
    return {
        "kind": "loop",
        "state": stats.state.value,
        "interval": stats.interval,
        "timeout": stats.timeout,
        "iterations": stats.iterations,
        "failures": stats.failures,
        "restarts": stats.restarts,
        "consecutive_failures": stats.consecutive_failures,
        "started_at": stats.started_at,
        "last_iteration_start": stats.last_iteration_start,
        "last_iteration_end": stats.last_iteration_end,
        "last_success": stats.last_success,
        "last_duration": stats.last_duration,
        "total_duration": stats.total_duration,
        "errors": [{"at": e.at, "type": e.error_type, "message": e.message} for e in stats.errors],
        "daemon_started_at": identity.started_at,
        "heartbeat_interval": heartbeat_interval,
        "stopped": False,
    }


def supervisor_info(
    state: str, loops: Sequence[str], identity: DaemonIdentity, heartbeat_interval: float
) -> dict[str, Any]:
    """The supervisor's own heartbeat `info`."""
    return {
        "kind": SUPERVISOR,
        "state": state,
        "loops": list(loops),
        "daemon_started_at": identity.started_at,
        "heartbeat_interval": heartbeat_interval,
        "stopped": False,
    }


def statistics_from_info(loop: str, info: Mapping[str, Any]) -> loop_mod.LoopStatistics:
    """A loop's statistics read back from its heartbeat `info` (missing keys: defaults)."""
    return loop_mod.LoopStatistics(
        name=loop,
        interval=float(info.get("interval") or 0.0),
        timeout=float(info.get("timeout") or 0.0),
        state=_state(info.get("state")),
        iterations=int(info.get("iterations") or 0),
        failures=int(info.get("failures") or 0),
        restarts=int(info.get("restarts") or 0),
        last_iteration_start=_time(info.get("last_iteration_start")),
        last_iteration_end=_time(info.get("last_iteration_end")),
        last_success=_time(info.get("last_success")),
        last_duration=_time(info.get("last_duration")),
        errors=tuple(_error(e) for e in info.get("errors") or ()),
        consecutive_failures=int(info.get("consecutive_failures") or 0),
        started_at=_time(info.get("started_at")) or _time(info.get("daemon_started_at")),
        total_duration=float(info.get("total_duration") or 0.0),
    )


def _state(value: Any) -> loop_mod.LoopState:
    try:
        return loop_mod.LoopState(value)
    except ValueError:
        return loop_mod.LoopState.STARTING


def _time(value: Any) -> float | None:
    return None if value is None else float(value)


def _error(value: Mapping[str, Any]) -> loop_mod.LoopError:
    return loop_mod.LoopError(
        at=float(value.get("at") or 0.0),
        error_type=str(value.get("type") or "Error"),
        message=str(value.get("message") or ""),
    )


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
