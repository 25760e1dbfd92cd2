"""What `vigil daemon status` and `vigil daemon liveness-check` say: pure functions of the
heartbeats read from the store and the time.

The store keeps the heartbeats of every daemon that ever ran (a new id per process); the
status shows the newest daemon's rows, and the rows of any other daemon still live. Under
the loops' table, one line a daemon: where it runs, when it started, its heartbeat's age
and the units of work it owns by lease, by kind (from its supervisor's heartbeat).

`liveness-check` judges "this daemon": the daemons whose heartbeats name this host (and
this pid, when given), or the whole store when no daemon ever ran on this host; with
`--any`, "at least one daemon of the instance is live".
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vigil.daemon import health, presence, vitals
from vigil.storage import store as store_mod

HEADERS = ("LOOP", "STATE", "LAST ITERATION", "HEARTBEAT", "DAEMON", "LAST ERROR", "REASON")
DAEMON_HEADERS = ("DAEMON", "STATE", "STARTED", "HEARTBEAT", "LOOPS", "OWNS")
NO_HEARTBEATS = "no heartbeats: no daemon has run on this store"


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
    started_at: float | None = None  # when its daemon started
    owned: Mapping[str, int] | None = None  # a live daemon's supervisor row: units by kind

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
    owned = vitals.owned_from_info(beat.info) if beat.loop == vitals.SUPERVISOR else None
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
        started_at=vitals.started_from_info(beat.info),
        owned=owned if verdict.health.live else None,  # a stopped or down one holds none
    )


def row_dict(row: StatusRow) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    data["state"] = row.health.value
    del data["health"]
    data["daemon"] = row.daemon
    data["owned"] = None if row.owned is None else dict(row.owned)
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
    """The loops' table, then the daemons' table (one line a daemon with a supervisor row)."""
    if not found:
        return NO_HEARTBEATS
    loops = _aligned([HEADERS, *(_cells(r) for r in found)])
    supervisors = [r for r in found if r.is_supervisor]
    if not supervisors:
        return loops
    daemons = _aligned([DAEMON_HEADERS, *(_daemon_cells(r, found) for r in supervisors)])
    return f"{loops}\n\n{daemons}"


def _aligned(lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _daemon_cells(row: StatusRow, found: Sequence[StatusRow]) -> tuple[str, ...]:
    loops = sum(1 for r in found if r.daemon_id == row.daemon_id and not r.is_supervisor)
    return (
        row.daemon,
        row.health.value,
        "-" if row.started_at is None else _moment(row.started_at),
        _age(row.heartbeat_age),
        str(loops),
        owned_text(row.owned),
    )


def owned_text(owned: Mapping[str, int] | None) -> str:
    """The kinds it owns units of ("schedule 3, monitor 8"); "none"; "-" when not told."""
    if owned is None:
        return "-"
    kinds = [*vitals.UNIT_KINDS, *sorted(set(owned) - set(vitals.UNIT_KINDS))]
    held = [f"{kind} {owned[kind]}" for kind in kinds if owned.get(kind)]
    return ", ".join(held) or "none"


def _moment(at: float) -> str:
    return datetime.datetime.fromtimestamp(at).isoformat(sep=" ", timespec="seconds")


# --follow ----------------------------------------------------------------------------
Seen = dict[tuple[str, str], tuple[health.Health, str | None, str]]


def changes(seen: Seen, found: Sequence[StatusRow]) -> tuple[Seen, list[StatusRow]]:
    """The rows whose state, last error or owned units changed since `seen` (a loop of a
    daemon not seen before counts as changed), and the new `seen`."""
    now_seen: Seen = {(r.daemon_id, r.loop): _seen(r) for r in found}
    changed = [r for r in found if seen.get((r.daemon_id, r.loop)) != now_seen[r.daemon_id, r.loop]]
    return now_seen, changed


def _seen(row: StatusRow) -> tuple[health.Health, str | None, str]:
    return row.health, row.last_error, owned_text(row.owned)


def change_line(row: StatusRow, at: float) -> str:
    error = f"  last error: {row.last_error}" if row.last_error else ""
    owns = f"  owns: {owned_text(row.owned)}" if row.is_supervisor else ""
    line = f"{_moment(at)}  {row.loop}  {row.health.value}  {row.reason}  ({row.daemon})"
    return line + owns + error


# liveness-check ----------------------------------------------------------------------
def this_daemon(
    heartbeats: Sequence[store_mod.Heartbeat], host: str, pid: int | None
) -> list[store_mod.Heartbeat]:
    """The heartbeats of the daemon(s) on `host` (with `pid`, when given): what "this
    daemon" means to a probe run beside it. When no daemon ever ran on this host (and no
    pid is given), every heartbeat: a check from another machine judges the store's."""
    here = [b for b in heartbeats if b.host == host and (pid is None or b.pid == pid)]
    return here if here or pid is not None else list(heartbeats)


def liveness(found: Sequence[StatusRow], missing: str = NO_HEARTBEATS) -> tuple[bool, str]:
    """(live, one line): not live when there are no heartbeats (`missing` says so) or a row
    is hung/down/stopped."""
    if not found:
        return False, missing
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


def liveness_any(found: Sequence[StatusRow]) -> tuple[bool, str]:
    """(live, one line): live while at least one daemon's rows are all live."""
    if not found:
        return False, NO_HEARTBEATS
    verdicts = [liveness(rows) for rows in _by_daemon(found)]
    live = [line.removeprefix("ok: ") for ok, line in verdicts if ok]
    if live:
        return True, f"ok: {len(live)} of {len(verdicts)} daemons live; {live[0]}"
    reasons = "; ".join(line for _, line in verdicts)
    return False, f"no daemon of this instance is live: {reasons}"


def _by_daemon(found: Iterable[StatusRow]) -> list[list[StatusRow]]:
    grouped: dict[str, list[StatusRow]] = {}
    for row in found:
        grouped.setdefault(row.daemon_id, []).append(row)
    return list(grouped.values())
