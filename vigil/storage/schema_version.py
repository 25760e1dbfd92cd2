"""Which schema a database is at, read in one query, and whether this vigil can use it.

The head this vigil expects is the constant `schema.HEAD_REVISION`, so reading and
checking the status needs no alembic; bringing a database to head does (`migration`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext import asyncio as sa_asyncio

from vigil import errors
from vigil.storage import schema

VERSION_TABLE = "alembic_version"
_version_table = sa.table(VERSION_TABLE, sa.column("version_num", sa.String()))
version_query = sa.select(_version_table.c.version_num)


@dataclasses.dataclass(frozen=True, slots=True)
class SchemaStatus:
    """The database's revision (None when it has none), the head this vigil expects."""

    current: str | None
    head: str
    empty: bool

    @property
    def is_current(self) -> bool:
        return self.current == self.head


async def read_status(conn: sa_asyncio.AsyncConnection) -> SchemaStatus:
    """The schema status, in one query when the database is versioned (the usual case)."""
    try:
        return await versioned_status(conn)
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        await conn.rollback()
        return await _unversioned_status(conn)


async def versioned_status(conn: sa_asyncio.AsyncConnection) -> SchemaStatus:
    """The status of a database with a version table, in one query; without one the
    query fails (a DBAPIError, which on PostgreSQL aborts the transaction)."""
    versions = (await conn.execute(version_query)).scalars().all()
    current = versions[0] if len(versions) == 1 else None
    return SchemaStatus(current=current, head=schema.HEAD_REVISION, empty=False)


async def _unversioned_status(conn: sa_asyncio.AsyncConnection) -> SchemaStatus:
    names = set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
    if VERSION_TABLE in names:
        # A concurrent first open created it after the first query failed: read it now.
        return await versioned_status(conn)
    empty = not names & set(schema.metadata.tables)
    return SchemaStatus(current=None, head=schema.HEAD_REVISION, empty=empty)


def mismatch(
    status: SchemaStatus, redacted_url: str, known: Collection[str]
) -> errors.SchemaMismatch:
    """Why this vigil cannot use a database not at its head; `known` are its revisions."""
    where = f"the store at {redacted_url}"
    if status.empty:
        return errors.SchemaMismatch(f"{where} is empty: run `vigil instance migrate`")
    if status.current is not None and status.current not in known:
        return errors.SchemaMismatch(
            f"{where} is at schema {status.current}, which this vigil does not know (it "
            f"expects {status.head}): this vigil is older than the store, upgrade vigil"
        )
    return errors.SchemaMismatch(
        f"{where} is at schema {status.current or 'base'}, this vigil expects {status.head}: "
        "run `vigil instance migrate`"
    )


def check_upgradable(status: SchemaStatus, redacted_url: str, known: Collection[str]) -> None:
    """Raise SchemaMismatch when an upgrade cannot bring this database to head."""
    if status.current is not None and status.current not in known:
        raise mismatch(status, redacted_url, known)
