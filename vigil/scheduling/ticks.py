"""When a schedule fires: tick times as a pure function of (cron, zone, last tick, now).

A cron expression matches local wall times; each wall time becomes one instant, or two,
or none, by these rules:

- an ordinary local time is one instant;
- a local time that does not exist (the hour skipped when clocks spring forward) fires
  once, at the end of the gap: 02:30 on the spring-forward day in New York fires at 03:00
  EDT; several skipped times collapse into that one tick;
- a local time that happens twice (the hour repeated when clocks fall back) fires once, at
  its first occurrence, for a schedule whose hour field is not `*` (a daily 01:30 fires
  once); a schedule matching every hour (`*` in the hour field: hourly, every 15 minutes)
  fires at both occurrences, so it fires every real hour.

`next_tick(cron, zone, after)` is the first tick strictly after an instant; `due_ticks`
lists the ticks in (after, now]; `plan_catchup` splits them into the ones to run and the
ones recorded MISSED, by the schedule's catch-up policy.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import zoneinfo

from vigil.scheduling import cron as cron_mod

UTC = datetime.UTC
# Local time moves at most a few hours around a transition; start the search this far back.
_MARGIN = 6 * 3600.0
_MARGIN_WALL = datetime.timedelta(seconds=_MARGIN)


class Catchup(enum.StrEnum):
    LATEST = "latest"  # run only the most recent missed tick
    ALL = "all"  # run the missed ticks, up to max_catchup_ticks (the most recent ones)
    NONE = "none"  # run a tick only when it is on time (within the grace)


class Overlap(enum.StrEnum):
    ALLOW = "allow"
    SKIP = "skip"  # a tick whose schedule still has a run in flight is SKIPPED


def _wall(instant: float, zone: zoneinfo.ZoneInfo) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(instant, zone).replace(tzinfo=None)


def _offset(instant: float, zone: zoneinfo.ZoneInfo) -> datetime.timedelta | None:
    return datetime.datetime.fromtimestamp(instant, zone).utcoffset()


def _near_transition(zone: zoneinfo.ZoneInfo, instant: float) -> bool:
    return _offset(instant - _MARGIN, zone) != _offset(instant + _MARGIN, zone)


def _gap_end(zone: zoneinfo.ZoneInfo, low: float, high: float) -> float:
    """The instant the clocks jumped, between `low` and `high` (whole seconds)."""
    after = _offset(high, zone)
    lo, hi = int(low), int(high) + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _offset(mid, zone) == after:
            hi = mid
        else:
            lo = mid + 1
    return float(lo)


def instants(
    wall: datetime.datetime, zone: zoneinfo.ZoneInfo, both_folds: bool
) -> tuple[float, ...]:
    """The instants a matched local wall time fires at (see the module's rules)."""
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return (first.timestamp(),)
    t0, t1 = first.timestamp(), second.timestamp()
    exists = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall
    if not exists:
        return (_gap_end(zone, min(t0, t1), max(t0, t1)),)
    ordered = (min(t0, t1), max(t0, t1))
    return ordered if both_folds else ordered[:1]


def next_tick(cron: cron_mod.Cron, zone: zoneinfo.ZoneInfo, after: float) -> float:
    """The first tick strictly after the instant `after`."""
    start = _wall(after, zone)
    if _near_transition(zone, after):
        start -= _MARGIN_WALL
    best: float | None = None
    for wall in cron.walls_after(start):
        found = instants(wall, zone, cron.every_hour)
        if best is not None and found[0] > best:
            return best
        for t in found:
            if t > after and (best is None or t < best):
                best = t
    raise AssertionError("a cron's wall times never end")  # pragma: no cover


@dataclasses.dataclass(frozen=True, slots=True)
class Due:
    """The ticks in (after, now]: the last `kept` of them in order, and how many in all;
    `following` is the first tick after now. When the gap held more ticks than are worth
    walking one by one, only the last ones were found: `counted` is False and `total`
    counts the ticks seen, fewer than there were."""

    times: tuple[float, ...]
    total: int
    following: float = 0.0
    counted: bool = True


# Ticks walked one by one from the last tick; past that, only the latest ones are found.
WALK_LIMIT = 100


def due_ticks(
    cron: cron_mod.Cron,
    zone: zoneinfo.ZoneInfo,
    after: float,
    now: float,
    keep: int,
    first: float | None = None,
) -> Due:
    """`first`, when the caller knows it, is `next_tick(cron, zone, after)`.

    The work is bounded whatever the gap (a per-second schedule stopped for a year): after
    `WALK_LIMIT + keep` ticks the walk jumps to a window ending at `now`, widened until it
    holds `keep` ticks, so the last `keep` are exact and the count is a lower bound.
    """
    kept: collections.deque[float] = collections.deque(maxlen=keep)
    total = 0
    t = next_tick(cron, zone, after) if first is None else first
    start = t
    while t <= now:
        kept.append(t)
        total += 1
        if total > WALK_LIMIT + keep:
            return _latest(cron, zone, (start, t), now, keep, total)
        t = next_tick(cron, zone, t)
    return Due(tuple(kept), total, t)


def _latest(
    cron: cron_mod.Cron,
    zone: zoneinfo.ZoneInfo,
    walked: tuple[float, float],
    now: float,
    keep: int,
    seen: int,
) -> Due:
    """The last `keep` ticks up to `now`, from a window that ends at `now` and widens from
    the spacing of the ticks walked so far until it holds enough of them (or reaches back
    to where the walk stopped)."""
    first, last = walked
    span = max((last - first) / max(seen - 1, 1), 1.0) * (keep + 1) * 2
    while True:
        start = max(now - span, last)
        found: list[float] = []
        t = next_tick(cron, zone, start)
        while t <= now:
            found.append(t)
            t = next_tick(cron, zone, t)
        if len(found) >= keep or start == last:
            return Due(tuple(found[-keep:]), seen + len(found), t, counted=False)
        span *= 4


@dataclasses.dataclass(frozen=True, slots=True)
class CatchupPlan:
    run: tuple[float, ...]
    missed: tuple[float, ...]
    # Missed ticks older than the ones kept, not recorded one by one: how many, or at
    # least how many when the gap was too long to count (`Due.counted`).
    unrecorded: int = 0
    counted: bool = True


def plan_catchup(
    due: Due, now: float, policy: Catchup, max_catchup_ticks: int, grace: float
) -> CatchupPlan:
    """Which due ticks run and which are MISSED; `due.times` ascending."""
    times = due.times
    if not times:
        return CatchupPlan((), ())
    if policy is Catchup.ALL:
        count = max_catchup_ticks
    elif policy is Catchup.LATEST:
        count = 1
    else:
        count = 1 if now - times[-1] <= grace else 0
    count = min(count, len(times))
    run = times[len(times) - count :] if count else ()
    missed = times[: len(times) - count]
    return CatchupPlan(tuple(run), tuple(missed), due.total - len(times), due.counted)


def preview(cron: cron_mod.Cron, zone: zoneinfo.ZoneInfo, after: float, count: int) -> list[float]:
    """The next `count` ticks after an instant."""
    found: list[float] = []
    t = after
    for _ in range(count):
        t = next_tick(cron, zone, t)
        found.append(t)
    return found


def describe(instant: float, zone: zoneinfo.ZoneInfo) -> str:
    """An instant as local time with its offset, e.g. 2026-03-08 03:00:00-04:00."""
    return datetime.datetime.fromtimestamp(instant, zone).isoformat(sep=" ")
