"""The lease statements of the SQL store, each inside the caller's transaction.

A unit's lease is taken by one conditional UPDATE: only while it is released, or its owner's
membership expired, so two daemons racing for one lease never both win (PostgreSQL
re-checks the condition on the row the first one wrote; SQLite has one writer). A takeover
raises the token; a release keeps it, and the next owner raises it as it takes the unit.

Fencing (`holds`): a write of owned work first reads its units' leases, on PostgreSQL with
`FOR SHARE`, so a takeover of those units waits for the write to commit, and a write that
comes after a takeover sees the new token and is refused.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext import asyncio as sa_asyncio

from vigil import errors
from vigil.storage import schema
from vigil.storage import store as store_mod

L = schema.leases
M = schema.daemon_leases
_CHUNK = 500


def _insert(is_postgres: bool, table: sa.Table) -> Any:
    return (postgresql.insert if is_postgres else sqlite.insert)(table)


def member_from_row(row: sa.Row[Any]) -> store_mod.Member:
    return store_mod.Member(**row._asdict())


def lease_from_row(row: sa.Row[Any]) -> store_mod.Lease:
    return store_mod.Lease(**row._asdict())


async def renew(
    conn: sa_asyncio.AsyncConnection, is_postgres: bool, member: store_mod.Member
) -> None:
    statement = _insert(is_postgres, M).values(
        daemon_id=member.daemon_id,
        host=member.host,
        pid=member.pid,
        started_at=member.started_at,
        expires_at=member.expires_at,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["daemon_id"], set_={"expires_at": statement.excluded.expires_at}
    )
    await conn.execute(statement)


async def leave(conn: sa_asyncio.AsyncConnection, daemon_id: str) -> int:
    released = await conn.execute(sa.update(L).where(L.c.owner == daemon_id).values(owner=None))
    await conn.execute(sa.delete(M).where(M.c.daemon_id == daemon_id))
    return int(released.rowcount)


async def acquire(
    conn: sa_asyncio.AsyncConnection,
    is_postgres: bool,
    owner: str,
    units: Sequence[str],
    now: float,
) -> store_mod.Acquired:
    """Take what is free among `units` (new units get a row first); what `owner` holds."""
    held: dict[str, int] = {}
    taken: list[str] = []
    for chunk in _chunks(units):
        rows = [{"unit": u, "owner": None, "token": 0, "acquired_at": now} for u in chunk]
        await conn.execute(_insert(is_postgres, L).on_conflict_do_nothing(), rows)
        taken += [r.unit for r in await conn.execute(_take(owner, chunk, now, from_dead=True))]
        await conn.execute(_take(owner, chunk, now, from_dead=False))
        query = sa.select(L.c.unit, L.c.token).where(L.c.owner == owner, L.c.unit.in_(chunk))
        held.update({r.unit: r.token for r in await conn.execute(query)})
    return store_mod.Acquired(held, tuple(taken))


def _take(owner: str, units: Sequence[str], now: float, *, from_dead: bool) -> sa.Update:
    """Take the released units, or (`from_dead`) those whose owner's membership expired."""
    if from_dead:
        live = sa.select(M.c.daemon_id).where(M.c.expires_at >= now)
        free = sa.and_(L.c.owner.is_not(None), L.c.owner != owner, L.c.owner.not_in(live))
    else:
        free = L.c.owner.is_(None)
    return (
        sa.update(L)
        .where(L.c.unit.in_(units), free)
        .values(owner=owner, token=L.c.token + 1, acquired_at=now)
        .returning(L.c.unit)
    )


async def release(conn: sa_asyncio.AsyncConnection, owner: str, units: Sequence[str]) -> None:
    for chunk in _chunks(units):
        await conn.execute(
            sa.update(L).where(L.c.owner == owner, L.c.unit.in_(chunk)).values(owner=None)
        )


async def holds(
    conn: sa_asyncio.AsyncConnection, is_postgres: bool, fence: store_mod.Fence
) -> set[str]:
    """The units of `fence` its owner still holds at their tokens (locked until commit)."""
    found: set[str] = set()
    for chunk in _chunks(sorted(fence.tokens)):
        query = sa.select(L.c.unit, L.c.token).where(L.c.owner == fence.owner, L.c.unit.in_(chunk))
        if is_postgres:
            query = query.with_for_update(read=True)
        found |= {r.unit for r in await conn.execute(query) if fence.tokens[r.unit] == r.token}
    return found


async def check(
    conn: sa_asyncio.AsyncConnection, is_postgres: bool, fence: store_mod.Fence | None
) -> None:
    """Raise LeaseLost unless the fence's owner holds all its units at their tokens."""
    if fence is None:
        return
    lost = set(fence.tokens) - await holds(conn, is_postgres, fence)
    if lost:
        raise errors.LeaseLost(
            f"daemon {fence.owner} no longer holds {', '.join(sorted(lost))}: "
            "another daemon took it over; this write was refused"
        )


def members_query() -> sa.Select[Any]:
    return sa.select(M).order_by(M.c.started_at, M.c.daemon_id)


def leases_query(prefix: str) -> sa.Select[Any]:
    query = sa.select(L).order_by(L.c.unit)
    if prefix:
        query = query.where(L.c.unit.startswith(prefix, autoescape=True))
    return query


def prune_statement(before: float) -> sa.Delete:
    return sa.delete(M).where(M.c.expires_at < before)


def _chunks(items: Collection[str]) -> Iterator[Sequence[str]]:
    ordered = sorted(items)
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start : start + _CHUNK]
