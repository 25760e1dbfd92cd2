"""The instigator and tick statements of the SQL store, each inside the caller's transaction.

`SqlStore` owns the transactions and calls these; they only read and write rows. Ticks are
inserted with ON CONFLICT DO NOTHING on (instigator, scheduled_time), so a tick that
exists (a daemon restarted mid-tick) is returned as stored instead of duplicated; a tick
only finishes from STARTED, and a sensor's cursor is written in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext import asyncio as sa_asyncio

from vigil import ticks
from vigil.storage import schema

_CHUNK = 500
T = schema.ticks
I = schema.instigator_state  # noqa: E741 - the table
_STARTED = ticks.TickStatus.STARTED.value


def _insert(is_postgres: bool, table: sa.Table) -> Any:
    return (postgresql.insert if is_postgres else sqlite.insert)(table)


def state_from_row(row: sa.Row[Any]) -> ticks.InstigatorState:
    return ticks.InstigatorState(
        name=row.name,
        kind=ticks.InstigatorKind(row.kind),
        status=ticks.InstigatorStatus(row.status),
        cursor=row.cursor,
        updated_at=row.updated_at,
    )


def tick_from_row(row: sa.Row[Any]) -> ticks.Tick:
    return ticks.Tick(
        tick_id=row.id,
        instigator=row.instigator,
        scheduled_time=row.scheduled_time,
        status=ticks.TickStatus(row.status),
        run_ids=tuple(row.run_ids or ()),
        error=row.error,
        cursor=row.cursor,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# instigators ------------------------------------------------------------------------------
async def upsert_state(
    conn: sa_asyncio.AsyncConnection, is_postgres: bool, values: dict[str, Any], update: list[str]
) -> None:
    statement = _insert(is_postgres, I).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=["name"], set_={name: statement.excluded[name] for name in update}
    )
    await conn.execute(statement)


async def ensure_states(
    conn: sa_asyncio.AsyncConnection,
    is_postgres: bool,
    names: Sequence[tuple[str, ticks.InstigatorKind]],
    now: float,
) -> None:
    default = ticks.InstigatorStatus.DEFAULT.value
    rows = [
        {"name": n, "kind": k.value, "status": default, "cursor": None, "updated_at": now}
        for n, k in names
    ]
    if rows:
        await conn.execute(_insert(is_postgres, I).on_conflict_do_nothing(), rows)


async def read_states(
    conn: sa_asyncio.AsyncConnection, names: Collection[str] | None = None
) -> list[ticks.InstigatorState]:
    query = sa.select(I).order_by(I.c.name)
    if names is None:
        return [state_from_row(r) for r in await conn.execute(query)]
    found: list[ticks.InstigatorState] = []
    for chunk in _chunks(sorted(names)):
        found += [state_from_row(r) for r in await conn.execute(query.where(I.c.name.in_(chunk)))]
    return found


# ticks ------------------------------------------------------------------------------------
async def insert_ticks(
    conn: sa_asyncio.AsyncConnection,
    is_postgres: bool,
    keys: Sequence[tuple[str, float]],
    values: dict[str, Any],
) -> list[ticks.Tick]:
    """Insert the ticks that do not exist yet; every tick of `keys` as stored, in key order."""
    found: dict[tuple[str, float], ticks.Tick] = {}
    for chunk in _chunks(keys):
        rows = [{"instigator": n, "scheduled_time": t, "run_ids": [], **values} for n, t in chunk]
        await conn.execute(_insert(is_postgres, T).on_conflict_do_nothing(), rows)
        query = sa.select(T).where(
            T.c.instigator.in_({n for n, _ in chunk}),
            T.c.scheduled_time.in_({t for _, t in chunk}),
        )
        for row in await conn.execute(query):
            found[(row.instigator, row.scheduled_time)] = tick_from_row(row)
    return [found[key] for key in dict.fromkeys(keys) if key in found]


async def finish(
    conn: sa_asyncio.AsyncConnection,
    is_postgres: bool,
    outcomes: Sequence[ticks.TickOutcome],
    now: float,
) -> None:
    """End STARTED ticks; a won tick that commits its cursor writes it to its instigator."""
    plain = [_outcome_values(o, now) for o in outcomes if not o.commit_cursor]
    if plain:
        await conn.execute(_finish_statement(), plain)
    for outcome in (o for o in outcomes if o.commit_cursor):
        won = (await conn.execute(_finish_statement(), _outcome_values(outcome, now))).rowcount
        if won:
            kind, _ = ticks.split_id(outcome.instigator)
            values = cursor_values(outcome.instigator, kind, outcome.cursor, now)
            await upsert_state(conn, is_postgres, values, ["cursor", "updated_at"])


def _finish_statement() -> sa.Update:
    return (
        sa.update(T)
        .where(T.c.id == sa.bindparam("b_id"), T.c.status == _STARTED)
        .values(
            status=sa.bindparam("b_status"),
            run_ids=sa.bindparam("b_run_ids", type_=sa.JSON()),
            error=sa.bindparam("b_error"),
            cursor=sa.bindparam("b_cursor"),
            updated_at=sa.bindparam("b_now"),
        )
    )


def _outcome_values(outcome: ticks.TickOutcome, now: float) -> dict[str, Any]:
    return {
        "b_id": outcome.tick_id,
        "b_status": outcome.status.value,
        "b_run_ids": list(outcome.run_ids),
        "b_error": outcome.error,
        "b_cursor": outcome.cursor,
        "b_now": now,
    }


def cursor_values(
    name: str, kind: ticks.InstigatorKind, cursor: str | None, now: float
) -> dict[str, Any]:
    """A new instigator row (DEFAULT status) with this cursor; on conflict only the cursor."""
    default = ticks.InstigatorStatus.DEFAULT.value
    return {
        "name": name,
        "kind": kind.value,
        "status": default,
        "cursor": cursor,
        "updated_at": now,
    }


def ticks_query(
    instigator: str | None, statuses: Collection[ticks.TickStatus], limit: int | None
) -> sa.Select[Any]:
    query = sa.select(T).order_by(T.c.scheduled_time.desc(), T.c.id.desc())
    if instigator is not None:
        query = query.where(T.c.instigator == instigator)
    if statuses:
        query = query.where(T.c.status.in_(sorted(s.value for s in statuses)))
    if limit is not None:
        query = query.limit(limit)
    return query


def latest_query() -> sa.Select[Any]:
    newest = (
        sa.select(T.c.instigator, sa.func.max(T.c.scheduled_time).label("newest"))
        .group_by(T.c.instigator)
        .subquery()
    )
    return sa.select(T).join(
        newest,
        sa.and_(T.c.instigator == newest.c.instigator, T.c.scheduled_time == newest.c.newest),
    )


def purge_statement(before: float, statuses: Collection[ticks.TickStatus]) -> sa.Delete:
    kept = [s.value for s in statuses if s is not ticks.TickStatus.STARTED]
    return sa.delete(T).where(T.c.status.in_(sorted(kept)), T.c.scheduled_time < before)


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
