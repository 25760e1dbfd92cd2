"""Alembic's entry point for vigil's migrations.

vigil runs alembic in code (`storage.migration`): it passes an open synchronous
connection, already in a transaction, as `config.attributes["connection"]`. For
developers, `alembic -x url=sqlite:///path/to/vigil.db revision --autogenerate` (with a
config whose script_location is this directory) connects on its own.
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context
from sqlalchemy.ext import asyncio as sa_asyncio

from vigil.storage import schema, target


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=schema.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _run(connection: sa.Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_own_engine(url: str) -> None:
    store_target = target.StoreTarget(sa.engine.make_url(url))
    async_engine: sa_asyncio.AsyncEngine = target.create_engine(store_target)
    try:
        async with target.writer(async_engine).begin() as conn:
            await conn.run_sync(_run)
    finally:
        await async_engine.dispose()


def _run_offline(url: str) -> None:
    context.configure(
        url=url,
        target_metadata=schema.metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url", ""
    )
    if connection is not None:
        _run(connection)
    elif context.is_offline_mode():
        _run_offline(url)
    else:
        asyncio.run(_run_on_own_engine(url))


_main()
