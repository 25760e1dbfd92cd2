"""Opening the store: check the schema cheaply, create an empty one, migrate on request.

This is the public face of the storage package's plumbing: it also re-exports
`StoreTarget` (from `target`) and `SchemaStatus` (from `schema_version`).

Every CLI command and every run worker opens the store, so the check is one query on a
versioned database, and alembic is imported only for a database that is not at head.
Only `migrate` (`vigil instance migrate`) changes an existing schema.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator

from sqlalchemy.ext import asyncio as sa_asyncio

from vigil.storage import schema_version, sql
from vigil.storage import target as target_mod
from vigil.storage.schema_version import SchemaStatus
from vigil.storage.target import StoreTarget

__all__ = ["SchemaStatus", "StoreTarget", "migrate", "open_store", "schema_status"]


async def open_store(
    target: StoreTarget, *, create_if_empty: bool = True, defer_schema_check: bool = False
) -> sql.SqlStore:
    """A store at this vigil's schema; raises SchemaMismatch or StoreUnavailable.

    With `defer_schema_check` nothing is read yet: the schema is checked in the store's
    first transaction, which raises SchemaMismatch (having written nothing) for a database
    at another revision, or without one. That saves a process with one short job (the run
    worker) a transaction of its own; an empty database is not created then.
    """
    engine = target_mod.create_engine(target)
    if defer_schema_check:
        return sql.SqlStore(engine, target, functools.partial(_refuse_unless_current, target))
    try:
        status = await _read_status(engine, target)
        if not status.is_current:
            create = status.empty and create_if_empty
            await _bring_to_head(engine, target, status, upgrade=create)
    except BaseException:
        await engine.dispose()
        raise
    return sql.SqlStore(engine, target)


async def schema_status(target: StoreTarget) -> SchemaStatus:
    """Where the database's schema stands against this vigil's head."""
    async with _engine(target) as engine:
        return await _read_status(engine, target)


async def migrate(target: StoreTarget) -> SchemaStatus:
    """Upgrade the database to this vigil's head; returns the status after."""
    async with _engine(target) as engine:
        status = await _read_status(engine, target)
        if status.is_current:
            return status
        return await _bring_to_head(engine, target, status, upgrade=True)


async def _read_status(engine: sa_asyncio.AsyncEngine, target: StoreTarget) -> SchemaStatus:
    with target_mod.translate_errors(target):
        async with engine.connect() as conn:
            return await schema_version.read_status(conn)


def _refuse_unless_current(target: StoreTarget, status: SchemaStatus) -> None:
    if not status.is_current:
        raise schema_version.mismatch(status, target.redacted(), _known_revisions())


def _known_revisions() -> frozenset[str]:
    # A deliberately lazy import: alembic adds ~50 ms to import, and every CLI command and
    # run worker opens the store, but only a new or outdated database needs the migrations.
    from vigil.storage import migration

    return migration.known_revisions()


async def _bring_to_head(
    engine: sa_asyncio.AsyncEngine, target: StoreTarget, status: SchemaStatus, *, upgrade: bool
) -> SchemaStatus:
    """Upgrade a database that is not at head and return its new status, or refuse it."""
    from vigil.storage import migration  # lazy, see `_known_revisions`

    known = _known_revisions()
    if not upgrade:
        raise schema_version.mismatch(status, target.redacted(), known)
    schema_version.check_upgradable(status, target.redacted(), known)
    with target_mod.translate_errors(target):
        async with target_mod.writer(engine).begin() as conn:
            await migration.upgrade(conn)
    return await _read_status(engine, target)


@contextlib.asynccontextmanager
async def _engine(target: StoreTarget) -> AsyncIterator[sa_asyncio.AsyncEngine]:
    engine = target_mod.create_engine(target)
    try:
        yield engine
    finally:
        await engine.dispose()
