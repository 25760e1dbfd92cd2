"""Health judged in loop intervals: a pure function of a heartbeat (or statistics) and now.

In order, the first that holds:

- `stopped`: the heartbeat is marked stopped (the daemon shut down cleanly);
- `down`: the heartbeat is older than 3 heartbeat intervals (the daemon is gone or stuck);
- `hung`: an iteration has run longer than the loop's own timeout;
- `failing`: the last iteration(s) raised (the loop is restarting with backoff);
- `late`: no iteration ended within 3 of the loop's intervals;
- `healthy`.

`failing` is checked before `late` on purpose: a loop waiting out its restart backoff has
not completed an iteration for a while by design, and its error says more than its delay.
A loop is *live* unless hung, down or stopped: the liveness check, the daemon's `/healthz`
and the systemd watchdog fail only then, all three by `liveness` (a failing or late loop
is reported, not restarted away).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from vigil.config import limits
from vigil.daemon import vitals
from vigil.storage import store as store_mod

DOWN_AFTER = 3  # heartbeat intervals without a heartbeat
LATE_AFTER = 3  # loop intervals without an iteration ending


class Health(enum.StrEnum):
    HEALTHY = "healthy"
    LATE = "late"
    FAILING = "failing"
    HUNG = "hung"
    DOWN = "down"
    STOPPED = "stopped"

    @property
    def live(self) -> bool:
        return self not in (Health.HUNG, Health.DOWN, Health.STOPPED)


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    health: Health
    reason: str

    @property
    def live(self) -> bool:
        return self.health.live


def judge(heartbeat: store_mod.Heartbeat, now: float, heartbeat_interval: float) -> Verdict:
    """A loop's (or the supervisor's) health from its heartbeat.

    The heartbeat's own recorded interval, when present, wins over `heartbeat_interval`
    (the daemon that wrote it may run with other settings than the reader).
    """
    info = heartbeat.info
    age = now - heartbeat.last_heartbeat
    if info.get("stopped"):
        return Verdict(Health.STOPPED, f"shut down {format_age(age)} ago")
    interval = recorded_interval(info, heartbeat_interval)
    if age > DOWN_AFTER * interval:
        return Verdict(
            Health.DOWN,
            f"no heartbeat for {format_age(age)} (over {DOWN_AFTER} x {interval:g}s)",
        )
    if info.get("kind") == vitals.SUPERVISOR:
        return _judge_supervisor(info)
    return judge_statistics(vitals.statistics_from_info(heartbeat.loop, info), now)


def judge_statistics(stats: vitals.LoopStatistics, now: float) -> Verdict:
    """A loop's health from its statistics (in the daemon itself: it is not down)."""
    if stats.state is vitals.LoopState.STOPPED:
        return Verdict(Health.STOPPED, "stopped")
    if stats.iteration_running and stats.last_iteration_start is not None:
        running = now - stats.last_iteration_start
        if running > stats.timeout:
            return Verdict(
                Health.HUNG,
                f"iteration running for {format_age(running)}, past its {stats.timeout:g}s timeout",
            )
    if stats.consecutive_failures:
        return _failing(stats)
    return _judge_progress(stats, now)


def _failing(stats: vitals.LoopStatistics) -> Verdict:
    count = stats.consecutive_failures
    last = stats.last_error
    what = f": {last.headline}" if last is not None else ""
    plural = "s" if count > 1 else ""
    return Verdict(Health.FAILING, f"{count} failed iteration{plural} in a row{what}")


def _judge_progress(stats: vitals.LoopStatistics, now: float) -> Verdict:
    since = stats.last_iteration_end or stats.started_at
    if since is None:
        return Verdict(Health.HEALTHY, "starting")
    quiet = now - since
    if quiet > LATE_AFTER * stats.interval:
        return Verdict(
            Health.LATE,
            f"no iteration ended for {format_age(quiet)} "
            f"(over {LATE_AFTER} x {stats.interval:g}s interval)",
        )
    if stats.last_iteration_end is None:
        return Verdict(Health.HEALTHY, "no iteration ended yet")
    return Verdict(Health.HEALTHY, f"last iteration ended {format_age(quiet)} ago")


def _judge_supervisor(info: Mapping[str, Any]) -> Verdict:
    loops = info.get("loops") or []
    if info.get("state") == "stopping":
        return Verdict(Health.HEALTHY, "stopping: draining the loops")
    return Verdict(Health.HEALTHY, f"supervising {len(loops)} loop{'s' if len(loops) != 1 else ''}")


def recorded_interval(info: Mapping[str, Any], default: float) -> float:
    """The writer's heartbeat interval, at most the longest a setting allows: a heartbeat
    stored with a huge one (before the bound) must not keep a dead daemon live for ever."""
    value = info.get("heartbeat_interval")
    if not isinstance(value, int | float) or not value > 0:
        return default
    return min(float(value), limits.MAX_HEARTBEAT_INTERVAL)


# for the daemon's own HTTP and systemd services ----------------------------------------
def liveness(statistics: Sequence[vitals.LoopStatistics], now: float) -> tuple[bool, str]:
    """(every loop live, a one-line reason naming the first that is not): what `/healthz`
    answers, and whether the systemd watchdog may be fed."""
    for stats in statistics:
        verdict = judge_statistics(stats, now)
        if not verdict.live:
            return False, f"loop {stats.name} is {verdict.health}: {verdict.reason}"
    return True, f"{len(statistics)} loop{'' if len(statistics) == 1 else 's'} live"


def making_progress(statistics: Sequence[vitals.LoopStatistics], now: float) -> bool:
    """Every loop is live (none hung): the systemd watchdog may be fed."""
    return liveness(statistics, now)[0]


def readiness(statistics: Sequence[vitals.LoopStatistics], now: float) -> tuple[bool, str]:
    """(every loop healthy, a one-line reason naming the first that is not)."""
    for stats in statistics:
        verdict = judge_statistics(stats, now)
        if verdict.health is not Health.HEALTHY:
            return False, f"loop {stats.name} is {verdict.health}: {verdict.reason}"
    return True, f"{len(statistics)} loop{'' if len(statistics) == 1 else 's'} healthy"


def format_age(seconds: float) -> str:
    """0.4s, 12s, 3m05s, 2h01m, 3d04h."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
