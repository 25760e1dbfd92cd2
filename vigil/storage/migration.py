"""Running the migrations: alembic, in code, on the store's own connection.

The migrations ship inside the package and run through alembic without an ini file, on
the store's async engine (`connection.run_sync`), inside the caller's write transaction.

Importing alembic adds some 50 ms, and every CLI command and run worker opens the store,
so only `engine` imports this module, and only for a database that is not at
`schema.HEAD_REVISION` (a test checks that constant against the migrations' head).
"""

from __future__ import annotations

import functools
import pathlib

import sqlalchemy as sa
from alembic import command
from alembic import config as alembic_config
from alembic import script as alembic_script
from alembic import util as alembic_util
from sqlalchemy.ext import asyncio as sa_asyncio

from vigil import errors

MIGRATIONS_DIR = pathlib.Path(__file__).parent / "migrations"
# Serializes concurrent first-time creation on PostgreSQL (SQLite has BEGIN IMMEDIATE).
_MIGRATION_LOCK_KEY = 0x76696769  # "vigi"


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
    """The head computed from the migration scripts."""
    head = _script().get_current_head()
    assert head is not None, "the migrations have no head"
    return head


def known_revisions() -> frozenset[str]:
    return frozenset(rev.revision for rev in _script().walk_revisions())


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
