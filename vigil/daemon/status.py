"""What `vigil daemon status` and `vigil daemon liveness-check` say: pure functions of the
heartbeats read from the store and the time.

The store keeps the heartbeats of every daemon that ever ran (a new id per process); the
status shows the newest daemon's rows, and the rows of any other daemon still live.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from typing import Any

from vigil.daemon import health, presence, vitals
from vigil.storage import store as store_mod

HEADERS = ("LOOP", "STATE", "LAST ITERATION", "HEARTBEAT", "DAEMON", "LAST ERROR", "REASON")


@dataclasses.dataclass(frozen=True, slots=True)
class StatusRow:
    loop: str
    health: health.Health
    reason: str
    last_iteration_age: float | None
    heartbeat_age: float
    daemon_id: str
    host: str
    pid: int
    last_error: str | None
    iterations: int
    restarts: int

    @property
    def daemon(self) -> str:
        return f"{self.host}:{self.pid}"

    @property
    def is_supervisor(self) -> bool:
        return self.loop == vitals.SUPERVISOR


def shown_heartbeats(
    heartbeats: Sequence[store_mod.Heartbeat], now: float, heartbeat_interval: float
) -> list[store_mod.Heartbeat]:
    """The newest daemon's heartbeats and those of any other live daemon, newest first."""
    if not heartbeats:
        return []
    newest = max(heartbeats, key=lambda b: b.last_heartbeat).daemon_id
    live = presence.live_daemons(heartbeats, now, heartbeat_interval)
    order = [newest] + [b.daemon_id for b in live if b.daemon_id != newest]
    rank = {daemon_id: i for i, daemon_id in enumerate(order)}
    kept = [b for b in heartbeats if b.daemon_id in rank]
    return sorted(kept, key=lambda b: (rank[b.daemon_id], b.loop != vitals.SUPERVISOR, b.loop))


def rows(
    heartbeats: Sequence[store_mod.Heartbeat], now: float, heartbeat_interval: float
) -> list[StatusRow]:
    return [
        row_of(b, now, heartbeat_interval)
        for b in shown_heartbeats(heartbeats, now, heartbeat_interval)
    ]


def row_of(beat: store_mod.Heartbeat, now: float, heartbeat_interval: float) -> StatusRow:
    verdict = health.judge(beat, now, heartbeat_interval)
    stats = vitals.statistics_from_info(beat.loop, beat.info)
    ended = stats.last_iteration_end
    last_error = stats.last_error
    return StatusRow(
        loop=beat.loop,
        health=verdict.health,
        reason=verdict.reason,
        last_iteration_age=None if ended is None else now - ended,
        heartbeat_age=now - beat.last_heartbeat,
        daemon_id=beat.daemon_id,
        host=beat.host,
        pid=beat.pid,
        last_error=None if last_error is None else last_error.headline,
        iterations=stats.iterations,
        restarts=stats.restarts,
    )


def row_dict(row: StatusRow) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    data["state"] = row.health.value
    del data["health"]
    data["daemon"] = row.daemon
    return data


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{health.format_age(seconds)} ago"


def _cells(row: StatusRow) -> tuple[str, ...]:
    reason = "" if row.health is health.Health.HEALTHY else row.reason
    return (
        row.loop,
        row.health.value,
        "-" if row.is_supervisor else _age(row.last_iteration_age),
        _age(row.heartbeat_age),
        row.daemon,
        row.last_error or "-",
        reason,
    )


def table(found: Sequence[StatusRow]) -> str:
    if not found:
        return "no heartbeats: no daemon has run on this store"
    lines = [HEADERS, *(_cells(r) for r in found)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


# --follow ----------------------------------------------------------------------------
Seen = dict[str, tuple[health.Health, str | None, str]]


def changes(seen: Seen, found: Sequence[StatusRow]) -> tuple[Seen, list[StatusRow]]:
    """The rows whose state, last error or daemon changed since `seen`, and the new `seen`."""
    now_seen: Seen = {r.loop: (r.health, r.last_error, r.daemon_id) for r in found}
    changed = [r for r in found if seen.get(r.loop) != now_seen[r.loop]]
    return now_seen, changed


def change_line(row: StatusRow, at: float) -> str:
    moment = datetime.datetime.fromtimestamp(at).isoformat(sep=" ", timespec="seconds")
    error = f"  last error: {row.last_error}" if row.last_error else ""
    return f"{moment}  {row.loop}  {row.health.value}  {row.reason}  ({row.daemon}){error}"


# liveness-check ----------------------------------------------------------------------
def liveness(found: Sequence[StatusRow]) -> tuple[bool, str]:
    """(live, one line): not live when there are no heartbeats or a row is hung/down/stopped."""
    if not found:
        return False, "no heartbeats: no daemon has run on this store"
    for row in found:
        if not row.health.live:
            return False, f"{_subject(row)} is {row.health.value}: {row.reason}"
    return True, _ok_line(found)


def _subject(row: StatusRow) -> str:
    if row.is_supervisor:
        return f"the daemon on {row.daemon}"
    return f"loop {row.loop} on {row.daemon}"


def _ok_line(found: Sequence[StatusRow]) -> str:
    loops = [r for r in found if not r.is_supervisor]
    notes = [
        f"{sum(r.health is h for r in loops)} {h.value}"
        for h in (health.Health.FAILING, health.Health.LATE)
        if any(r.health is h for r in loops)
    ]
    extra = f" ({', '.join(notes)})" if notes else ""
    daemons = ", ".join(dict.fromkeys(r.daemon for r in found))
    return f"ok: daemon {daemons}, {len(loops)} loops live{extra}"
