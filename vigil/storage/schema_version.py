"""Which schema a database is at, and bringing it to the one this vigil expects.

The migrations ship inside the package and run through alembic without an ini file, on
the store's own async engine (`connection.run_sync`), inside one transaction.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import sqlalchemy as sa
from alembic import command
from alembic import config as alembic_config
from alembic import script as alembic_script
from alembic import util as alembic_util
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext import asyncio as sa_asyncio

from vigil import errors
from vigil.storage import schema

MIGRATIONS_DIR = pathlib.Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"
# Serializes concurrent first-time creation on PostgreSQL (SQLite has BEGIN IMMEDIATE).
_MIGRATION_LOCK_KEY = 0x76696769  # "vigi"
_version_table = sa.table(VERSION_TABLE, sa.column("version_num", sa.String()))


@dataclasses.dataclass(frozen=True, slots=True)
class SchemaStatus:
    """The database's revision (None when it has none), the head this vigil expects."""

    current: str | None
    head: str
    empty: bool

    @property
    def is_current(self) -> bool:
        return self.current == self.head


def alembic_config_for(connection: sa.Connection | None = None) -> alembic_config.Config:
    """An alembic config built in code; `connection` is what env.py migrates."""
    cfg = alembic_config.Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _script() -> alembic_script.ScriptDirectory:
    return alembic_script.ScriptDirectory.from_config(alembic_config_for())


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None, "the migrations have no head"
    return head


def known_revisions() -> frozenset[str]:
    return frozenset(rev.revision for rev in _script().walk_revisions())


async def read_status(conn: sa_asyncio.AsyncConnection) -> SchemaStatus:
    """The schema status in one query when the database is versioned (the usual case)."""
    try:
        versions = (await conn.execute(sa.select(_version_table.c.version_num))).scalars().all()
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        await conn.rollback()
        return await _unversioned_status(conn, exc)
    current = versions[0] if len(versions) == 1 else None
    return SchemaStatus(current=current, head=head_revision(), empty=False)


async def _unversioned_status(
    conn: sa_asyncio.AsyncConnection, cause: sa_exc.DBAPIError
) -> SchemaStatus:
    names = set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
    if VERSION_TABLE in names:
        raise cause
    empty = not names & set(schema.metadata.tables)
    return SchemaStatus(current=None, head=head_revision(), empty=empty)


def check(status: SchemaStatus, redacted_url: str) -> None:
    """Raise SchemaMismatch unless the database is at this vigil's head."""
    where = f"the store at {redacted_url}"
    if status.is_current:
        return
    if status.empty:
        raise errors.SchemaMismatch(f"{where} is empty: run `vigil instance migrate`")
    if status.current is not None and status.current not in known_revisions():
        raise errors.SchemaMismatch(
            f"{where} is at schema {status.current}, which this vigil does not know (it "
            f"expects {status.head}): this vigil is older than the store, upgrade vigil"
        )
    raise errors.SchemaMismatch(
        f"{where} is at schema {status.current or 'base'}, this vigil expects {status.head}: "
        "run `vigil instance migrate`"
    )


def check_upgradable(status: SchemaStatus, redacted_url: str) -> None:
    """Raise SchemaMismatch when `upgrade` cannot bring this database to head."""
    if status.current is None or status.current in known_revisions():
        return
    check(status, redacted_url)


async def upgrade(conn: sa_asyncio.AsyncConnection) -> None:
    """Upgrade to head inside the caller's (write) transaction; a no-op at head."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
    await conn.run_sync(_upgrade_sync)


def _upgrade_sync(connection: sa.Connection) -> None:
    try:
        command.upgrade(alembic_config_for(connection), "head")
    except alembic_util.CommandError as exc:  # e.g. a revision written by a newer vigil
        raise errors.SchemaMismatch(f"cannot migrate the store: {exc}") from exc
