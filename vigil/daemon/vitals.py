"""A daemon's vital signs: each loop's statistics, who the daemon is, and both as a
heartbeat's `info` (the codec, both ways).

Kept free of anyio and the settings model: `vigil daemon status` and `liveness-check` read
heartbeats back through this module, and answer fast because it imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

SUPERVISOR = "supervisor"
# The kinds of units of work a daemon owns by lease (`vigil.daemon.leases`), in the order
# the status and the metrics show them.
UNIT_KINDS = ("schedule", "sensor", "monitor", "retries", "retention", "backfills")


@dataclasses.dataclass(frozen=True, slots=True)
class LoopError:
    """One error a loop's iteration raised, kept in its heartbeat."""

    at: float
    error_type: str
    message: str

    @property
    def headline(self) -> str:
        text = f"{self.error_type}: {self.message}" if self.message else self.error_type
        return (text.splitlines() or [""])[0][:200]


class LoopState(enum.StrEnum):
    """What the supervisor knows of a loop in this process."""

    STARTING = "starting"
    IDLE = "idle"  # waiting for the next iteration
    RUNNING = "running"  # an iteration is in progress
    BACKOFF = "backoff"  # crashed; waiting to be restarted
    STOPPED = "stopped"


@dataclasses.dataclass(frozen=True, slots=True)
class LoopStatistics:
    """A cheap snapshot of one loop's progress (read by heartbeats and metrics).

    Times are the injected clock's (epoch seconds). `iterations` counts the iterations that
    ended, failed or not; `total_duration` is their summed duration (a metrics `_sum`);
    `started_at` is when the supervisor first started the loop.
    """

    name: str
    interval: float
    timeout: float
    state: LoopState
    iterations: int
    failures: int
    restarts: int
    last_iteration_start: float | None
    last_iteration_end: float | None
    last_success: float | None
    last_duration: float | None
    errors: Sequence[LoopError]
    consecutive_failures: int
    started_at: float | None = None
    total_duration: float = 0.0

    @property
    def last_error(self) -> LoopError | None:
        return self.errors[-1] if self.errors else None

    @property
    def iteration_running(self) -> bool:
        return self.state is LoopState.RUNNING and self.last_iteration_start is not None


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
    stats: LoopStatistics, identity: DaemonIdentity, heartbeat_interval: float
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
    state: str,
    loops: Sequence[str],
    identity: DaemonIdentity,
    heartbeat_interval: float,
    owned: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The supervisor's own heartbeat `info`; `owned`: the units the daemon holds by
    lease, by kind (every kind of `UNIT_KINDS` named, 0 included)."""
    info: dict[str, Any] = {
        "kind": SUPERVISOR,
        "state": state,
        "loops": list(loops),
        "daemon_started_at": identity.started_at,
        "heartbeat_interval": heartbeat_interval,
        "stopped": False,
    }
    if owned is not None:
        info["owned"] = {kind: int(owned.get(kind, 0)) for kind in UNIT_KINDS} | dict(owned)
    return info


def owned_from_info(info: Mapping[str, Any]) -> dict[str, int] | None:
    """The units a daemon owned by kind, from its supervisor's heartbeat `info` (None: not
    told, a heartbeat written before daemons shared work)."""
    owned = info.get("owned")
    if not isinstance(owned, Mapping):
        return None
    return {str(kind): int(count) for kind, count in owned.items() if isinstance(count, int)}


def started_from_info(info: Mapping[str, Any]) -> float | None:
    """When the daemon that wrote a heartbeat started (None: not told)."""
    return _time(info.get("daemon_started_at"))


def statistics_from_info(loop: str, info: Mapping[str, Any]) -> LoopStatistics:
    """A loop's statistics read back from its heartbeat `info` (missing keys: defaults)."""
    return LoopStatistics(
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


def _state(value: Any) -> LoopState:
    try:
        return LoopState(value)
    except ValueError:
        return LoopState.STARTING


def _time(value: Any) -> float | None:
    return None if value is None else float(value)


def _error(value: Mapping[str, Any]) -> LoopError:
    return LoopError(
        at=float(value.get("at") or 0.0),
        error_type=str(value.get("type") or "Error"),
        message=str(value.get("message") or ""),
    )
