"""What the high-availability bench reads from the store, and the safety figures it derives.

Read with plain SQL over vigil's tables (`vigil.storage.schema`), so the figures do not
depend on the store verbs under test:

- duplicate runs: one (instigator, run key) twice; a schedule's second (`bench/slot`) or a
  sensor's item (`bench/item`) with more than one run (a tick evaluated twice under
  different keys); a run listed by two ticks; a tick with more runs than it asked for;
- tick rows per (instigator, scheduled time) above one;
- limit overshoot: the claims (RUN_STARTING) and ends replayed in event id order (commit
  order), counting in-flight runs globally and per tag-limit bucket;
- runs not terminal; ticks of the window left STARTED; seconds of the window with no tick
  row, per schedule; sensor items below a sensor's last with no run (its cursor moved on
  without the run: work lost).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from bench import ha_cluster
from vigil import events, runs
from vigil.coordinators import admission
from vigil.storage import schema

R, T, E, RT = schema.runs, schema.ticks, schema.event_log, schema.run_tags
L, M = schema.leases, schema.daemon_leases
ENDS = (events.EventType.RUN_SUCCESS, events.EventType.RUN_FAILURE, events.EventType.RUN_CANCELED)
TERMINAL = sorted(s.value for s in runs.TERMINAL_STATUSES)


@contextlib.asynccontextmanager
async def connected(url: sa.engine.URL) -> AsyncIterator[sa_asyncio.AsyncConnection]:
    engine = sa_asyncio.create_async_engine(url)
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def members(conn: sa_asyncio.AsyncConnection, now: float) -> dict[int, str]:
    """pid -> daemon id of the live memberships."""
    rows = await conn.execute(sa.select(M.c.pid, M.c.daemon_id).where(M.c.expires_at >= now))
    await conn.commit()
    return {r.pid: r.daemon_id for r in rows}


async def lease(conn: sa_asyncio.AsyncConnection, unit: str) -> tuple[str | None, float]:
    """The unit's owner and when it took the lease (its daemon's clock)."""
    row = (await conn.execute(sa.select(L.c.owner, L.c.acquired_at).where(L.c.unit == unit))).one()
    await conn.commit()
    return row.owner, float(row.acquired_at)


async def owners(conn: sa_asyncio.AsyncConnection, prefix: str) -> dict[str, str | None]:
    rows = await conn.execute(sa.select(L.c.unit, L.c.owner).where(L.c.unit.startswith(prefix)))
    await conn.commit()
    return {r.unit: r.owner for r in rows}


async def not_terminal(conn: sa_asyncio.AsyncConnection) -> int:
    query = sa.select(sa.func.count()).select_from(R).where(R.c.status.not_in(TERMINAL))
    found = int((await conn.execute(query)).scalar() or 0)
    await conn.commit()
    return found


async def first_tick_after(
    conn: sa_asyncio.AsyncConnection, instigator: str, after: float
) -> float | None:
    """created_at of the first tick of `instigator` created and scheduled after `after`."""
    query = sa.select(sa.func.min(T.c.created_at)).where(
        T.c.instigator == instigator, T.c.created_at > after, T.c.scheduled_time > after
    )
    found = (await conn.execute(query)).scalar()
    await conn.commit()
    return None if found is None else float(found)


# the figures --------------------------------------------------------------------------------
@dataclasses.dataclass
class Safety:
    runs: int = 0
    not_terminal: int = 0
    duplicate_keys: int = 0
    twice_per_slot: int = 0  # a schedule second or sensor item with more than one run
    run_in_two_ticks: int = 0
    tick_over_request: int = 0  # ticks listing more runs than they asked for (1)
    tick_rows_twice: int = 0
    ticks_left_started: int = 0  # ticks of the window still STARTED at the end
    sensor_items_skipped: int = 0  # items between 1 and a sensor's last with no run
    most_in_flight: int = 0
    overshoot: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    gaps: dict[str, int] = dataclasses.field(default_factory=dict)  # schedule -> seconds
    expected_ticks: int = 0
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)

    def violations(self) -> list[str]:
        found = [
            f"{name} = {value}"
            for name, value in (
                ("runs not terminal", self.not_terminal),
                ("duplicate (instigator, run key)", self.duplicate_keys),
                ("schedule seconds or sensor items with 2+ runs", self.twice_per_slot),
                ("runs listed by two ticks", self.run_in_two_ticks),
                ("ticks with more runs than asked", self.tick_over_request),
                ("tick rows twice for one scheduled time", self.tick_rows_twice),
                ("ticks of the window left STARTED", self.ticks_left_started),
                ("due ticks not recorded", sum(self.gaps.values())),
                (
                    "sensor items with no run (cursor moved on without it)",
                    self.sensor_items_skipped,
                ),
            )
            if value
        ]
        found += [
            f"limit {k}: {most} in flight > {limit}"
            for k, (most, limit) in self.overshoot.items()
            if most > limit
        ]
        return found


async def safety(
    conn: sa_asyncio.AsyncConnection, window: tuple[float, float], schedules: int
) -> Safety:
    result = Safety()
    tags = await run_tags(conn)
    await count_runs(conn, result)
    await count_duplicates(conn, tags, result)
    await count_ticks(conn, window, schedules, result)
    await replay_limits(conn, tags, result)
    await conn.commit()
    return result


async def run_tags(conn: sa_asyncio.AsyncConnection) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = collections.defaultdict(dict)
    for row in await conn.execute(sa.select(RT.c.run_id, RT.c.key, RT.c.value)):
        found[row.run_id][row.key] = row.value
    return found


async def count_runs(conn: sa_asyncio.AsyncConnection, result: Safety) -> None:
    rows = await conn.execute(sa.select(R.c.status, sa.func.count()).group_by(R.c.status))
    result.statuses = {r[0]: int(r[1]) for r in rows}
    result.runs = sum(result.statuses.values())
    result.not_terminal = sum(n for s, n in result.statuses.items() if s not in TERMINAL)


async def count_duplicates(
    conn: sa_asyncio.AsyncConnection, tags: Mapping[str, Mapping[str, str]], result: Safety
) -> None:
    keyed = sa.select(R.c.instigator, R.c.run_key).where(R.c.run_key.is_not(None))
    twice = keyed.group_by(R.c.instigator, R.c.run_key).having(sa.func.count() > 1)
    result.duplicate_keys = len((await conn.execute(twice)).all())
    made = await conn.execute(
        sa.select(R.c.run_id, R.c.instigator).where(R.c.instigator.is_not(None))
    )
    per_slot: collections.Counter[tuple[str, str]] = collections.Counter()
    items: dict[str, set[int]] = collections.defaultdict(set)
    for row in made:
        run_tags = tags.get(row.run_id, {})
        slot = run_tags.get("bench/slot") or run_tags.get("bench/item")
        if slot is not None:
            per_slot[(row.instigator, slot)] += 1
        if "bench/item" in run_tags:
            items[row.instigator].add(int(run_tags["bench/item"]))
    result.twice_per_slot = sum(1 for n in per_slot.values() if n > 1)
    result.sensor_items_skipped = sum(max(s) - len(s) for s in items.values())


async def count_ticks(
    conn: sa_asyncio.AsyncConnection,
    window: tuple[float, float],
    schedules: int,
    result: Safety,
) -> None:
    columns = (T.c.instigator, T.c.scheduled_time, T.c.run_ids, T.c.status)
    rows = (await conn.execute(sa.select(*columns))).all()
    result.ticks_left_started = sum(
        1 for r in rows if r.status == "STARTED" and window[0] <= r.scheduled_time <= window[1]
    )
    per_time = collections.Counter((r.instigator, r.scheduled_time) for r in rows)
    result.tick_rows_twice = sum(1 for n in per_time.values() if n > 1)
    listed = collections.Counter(run_id for r in rows for run_id in r.run_ids)
    result.run_in_two_ticks = sum(1 for n in listed.values() if n > 1)
    result.tick_over_request = sum(1 for r in rows if len(r.run_ids) > 1)
    result.gaps, result.expected_ticks = tick_gaps(rows, window, schedules)


def tick_gaps(
    rows: Iterable[Any], window: tuple[float, float], schedules: int
) -> tuple[dict[str, int], int]:
    """Per schedule, the whole seconds of the window with no tick row; and how many were due."""
    seen: dict[str, set[int]] = collections.defaultdict(set)
    for row in rows:
        seen[row.instigator].add(round(row.scheduled_time))
    due = range(math.ceil(window[0]), math.floor(window[1]) + 1)
    gaps: dict[str, int] = {}
    for i in range(schedules):
        name = f"schedule:s{i}"
        missing = sum(1 for second in due if second not in seen[name])
        if missing:
            gaps[name] = missing
    return gaps, len(due) * schedules


async def replay_limits(
    conn: sa_asyncio.AsyncConnection, tags: Mapping[str, Mapping[str, str]], result: Safety
) -> None:
    limits = [admission.TagLimit(**spec) for spec in ha_cluster.TAG_LIMITS]
    in_flight: dict[str, list[str]] = {}
    counts: collections.Counter[str] = collections.Counter()
    most: collections.Counter[str] = collections.Counter()
    kinds = [events.EventType.RUN_STARTING.value, *(e.value for e in ENDS)]
    query = sa.select(E.c.run_id, E.c.event_type).where(E.c.event_type.in_(kinds)).order_by(E.c.id)
    for row in await conn.execute(query):
        if row.event_type == events.EventType.RUN_STARTING.value:
            if row.run_id not in in_flight:
                in_flight[row.run_id] = buckets(limits, tags.get(row.run_id, {}))
                counts.update(in_flight[row.run_id])
                most |= counts
        elif row.run_id in in_flight:
            counts.subtract(in_flight.pop(row.run_id))
    result.most_in_flight = most["all"]
    result.overshoot = {"all": (most["all"], ha_cluster.MAX_CONCURRENT)}
    for key, value in most.items():
        if key != "all":
            result.overshoot[key] = (value, limit_of(limits, key))


def buckets(limits: Sequence[admission.TagLimit], tags: Mapping[str, str]) -> list[str]:
    found = ["all"]
    for index, limit in enumerate(limits):
        if limit.applies_to(tags):
            value = tags[limit.key] if limit.per_value else ""
            found.append(f"{index}:{limit.key}={value}" if value else f"{index}:{limit.key}")
    return found


def limit_of(limits: Sequence[admission.TagLimit], bucket: str) -> int:
    return limits[int(bucket.partition(":")[0])].limit


# speed --------------------------------------------------------------------------------------
async def drain_rate(conn: sa_asyncio.AsyncConnection) -> tuple[int, float]:
    """Of the queued runs the bench submitted (no instigator): (how many ended, seconds from
    the first one's claim to the last one's end)."""
    queued = sa.select(R.c.run_id).where(R.c.instigator.is_(None))
    first = await conn.execute(
        sa.select(sa.func.min(E.c.timestamp)).where(
            E.c.event_type == events.EventType.RUN_STARTING.value, E.c.run_id.in_(queued)
        )
    )
    start = first.scalar()
    ended = await conn.execute(
        sa.select(sa.func.count(), sa.func.max(R.c.end_time)).where(
            R.c.status.in_(TERMINAL), R.c.instigator.is_(None)
        )
    )
    count, last = ended.one()
    await conn.commit()
    if start is None or last is None:
        return int(count), math.nan
    return int(count), float(last) - float(start)


async def tick_delays(
    conn: sa_asyncio.AsyncConnection, window: tuple[float, float]
) -> tuple[list[float], list[float], int]:
    """(created_at - scheduled_time, updated_at - scheduled_time, MISSED count) of the
    schedule ticks of the window; MISSED ticks are left out of the delays."""
    query = sa.select(T.c.scheduled_time, T.c.created_at, T.c.updated_at, T.c.status).where(
        T.c.instigator.startswith("schedule:"),
        T.c.scheduled_time >= window[0],
        T.c.scheduled_time <= window[1],
    )
    rows = (await conn.execute(query)).all()
    await conn.commit()
    kept = [r for r in rows if r.status != "MISSED"]
    created = [r.created_at - r.scheduled_time for r in kept]
    ended = [r.updated_at - r.scheduled_time for r in kept]
    return created, ended, len(rows) - len(kept)
