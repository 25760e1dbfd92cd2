"""One daemon per SQLite store: who else is running here (PostgreSQL takes many daemons,
which share the work through leases: `vigil.daemon.leases`).

A daemon is *live* while any of its heartbeats is neither stopped nor older than 3 of its
heartbeat intervals. At startup a daemon refuses to run beside a live one, naming its host,
pid and heartbeat age; a daemon that was killed stops being in the way once its heartbeats
go stale.

This check is not a lock: two daemons started within one heartbeat of each other may both
pass it. Exactly-once work through the database does not depend on it (promise 1 of the
plan), and each daemon holds its work by leases all the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from vigil import errors
from vigil.daemon import health, vitals
from vigil.storage import store as store_mod


def live_daemons(
    heartbeats: Iterable[store_mod.Heartbeat], now: float, heartbeat_interval: float
) -> list[store_mod.Heartbeat]:
    """The newest heartbeat of each live daemon, newest first."""
    newest: dict[str, store_mod.Heartbeat] = {}
    for beat in heartbeats:
        verdict = health.judge(beat, now, heartbeat_interval)
        if verdict.health in (health.Health.DOWN, health.Health.STOPPED):
            continue
        known = newest.get(beat.daemon_id)
        if known is None or beat.last_heartbeat > known.last_heartbeat:
            newest[beat.daemon_id] = beat
    return sorted(newest.values(), key=lambda b: b.last_heartbeat, reverse=True)


async def ensure_alone(
    store: store_mod.HeartbeatReader,
    me: vitals.DaemonIdentity,
    now: float,
    heartbeat_interval: float,
) -> None:
    """Raise DaemonAlreadyRunning if another daemon is live on this store."""
    others = [
        beat
        for beat in live_daemons(await store.list_heartbeats(), now, heartbeat_interval)
        if beat.daemon_id != me.daemon_id
    ]
    if others:
        raise errors.DaemonAlreadyRunning(_refusal(others, now))


def _refusal(others: Sequence[store_mod.Heartbeat], now: float) -> str:
    beat = others[0]
    age = health.format_age(now - beat.last_heartbeat)
    return (
        f"another daemon is running on this store: {beat.host} pid {beat.pid} "
        f"(last heartbeat {age} ago); stop it first. A daemon that died stops counting "
        f"once its heartbeats are {health.DOWN_AFTER} heartbeat intervals old. "
        "Use PostgreSQL for more than one daemon."
    )
