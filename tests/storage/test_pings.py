"""Pinging PostgreSQL connections only when they sat idle (`StoreTarget.ping_after_idle`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from tests import pg_server
from vigil import errors, storage
from vigil.storage import sql

pytestmark = pytest.mark.postgres


@pytest.fixture
async def admin(postgres_url: sa.engine.URL) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_server.asyncpg_dsn(postgres_url))
    try:
        yield conn
    finally:
        await conn.close()


async def opened(url: sa.engine.URL, ping_after_idle: float) -> sql.SqlStore:
    return await storage.open_store(storage.StoreTarget(url, ping_after_idle=ping_after_idle))


def count_pings(store: sql.SqlStore, monkeypatch: pytest.MonkeyPatch) -> list[None]:
    pings: list[None] = []
    dialect = store.engine.sync_engine.dialect
    ping = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(None)
        return ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return pings


async def kill_the_pooled_connection(admin: asyncpg.Connection, database: str | None) -> None:
    pids = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'vigil'",
        database,
    )
    assert len(pids) == 1
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pids[0]["pid"])


async def test_a_connection_used_again_before_the_idle_time_is_not_pinged(
    postgres_database: sa.engine.URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await opened(postgres_database, ping_after_idle=3600.0)
    try:
        pings = count_pings(store, monkeypatch)
        for _ in range(3):
            assert await store.count_runs_by_status() == {}
        assert pings == []
    finally:
        await store.close()


async def test_an_idle_connection_is_pinged_and_replaced_when_its_server_end_is_gone(
    postgres_database: sa.engine.URL, admin: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await opened(postgres_database, ping_after_idle=0.0)
    try:
        pings = count_pings(store, monkeypatch)
        assert await store.count_runs_by_status() == {}
        await kill_the_pooled_connection(admin, postgres_database.database)

        assert await store.count_runs_by_status() == {}
        assert len(pings) >= 1
    finally:
        await store.close()


async def test_without_a_ping_a_dead_connection_fails_its_transaction_as_unavailable(
    postgres_database: sa.engine.URL, admin: asyncpg.Connection
) -> None:
    # The price of not pinging a connection reused soon: the rare dead one costs one try.
    store = await opened(postgres_database, ping_after_idle=3600.0)
    try:
        assert await store.count_runs_by_status() == {}
        await kill_the_pooled_connection(admin, postgres_database.database)

        with pytest.raises(errors.StoreUnavailable):
            await store.count_runs_by_status()
        assert await store.count_runs_by_status() == {}
    finally:
        await store.close()
