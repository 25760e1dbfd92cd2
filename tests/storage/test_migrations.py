"""Migrations equal the metadata; opening refuses a schema this vigil cannot use."""

from __future__ import annotations

import asyncio
import pathlib
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy.ext import asyncio as sa_asyncio

from vigil import errors, runs, storage
from vigil.storage import migration, schema, target


@pytest.fixture
async def engine(store_target: storage.StoreTarget) -> AsyncIterator[sa_asyncio.AsyncEngine]:
    """A raw engine on the test database, to inspect or tamper with it."""
    raw = target.create_engine(store_target)
    try:
        yield raw
    finally:
        await raw.dispose()


async def execute(engine: sa_asyncio.AsyncEngine, *statements: str) -> None:
    async with target.writer(engine).begin() as conn:
        for statement in statements:
            await conn.exec_driver_sql(statement)


def schema_diff(conn: sa.Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, schema.metadata))


def test_the_head_revision_constant_is_the_migrations_head() -> None:
    # A new migration must update schema.HEAD_REVISION, which opening a store compares to.
    assert migration.head_revision() == schema.HEAD_REVISION


async def test_migrations_produce_exactly_the_metadata(
    store_target: storage.StoreTarget, engine: sa_asyncio.AsyncEngine
) -> None:
    assert (await storage.migrate(store_target)).is_current

    async with engine.connect() as conn:
        assert await conn.run_sync(schema_diff) == []


async def test_the_initial_migration_downgrades_to_nothing(
    store_target: storage.StoreTarget, engine: sa_asyncio.AsyncEngine
) -> None:
    await storage.migrate(store_target)

    def downgrade_and_list(conn: sa.Connection) -> set[str]:
        command.downgrade(migration.alembic_config_for(conn), "base")
        return set(sa.inspect(conn).get_table_names())

    async with target.writer(engine).begin() as conn:
        assert await conn.run_sync(downgrade_and_list) == {"alembic_version"}


async def test_an_empty_database_is_created_at_head_when_opened(
    store_target: storage.StoreTarget,
) -> None:
    before = await storage.schema_status(store_target)
    assert (before.current, before.empty, before.is_current) == (None, True, False)

    opened = await storage.open_store(store_target)
    await opened.close()

    after = await storage.schema_status(store_target)
    assert (after.current, after.empty, after.is_current) == (after.head, False, True)


async def test_concurrent_first_opens_create_the_schema_once(
    store_target: storage.StoreTarget,
) -> None:
    opened = await asyncio.gather(*(storage.open_store(store_target) for _ in range(5)))
    for store in opened:
        await store.close()

    assert (await storage.schema_status(store_target)).is_current


def sqlite_target(path: pathlib.Path, busy_timeout: float = 30.0) -> storage.StoreTarget:
    url = sa.engine.URL.create("sqlite+aiosqlite", database=str(path))
    return storage.StoreTarget(url, busy_timeout=busy_timeout)


async def test_a_first_sqlite_open_waits_for_a_writer_and_switches_to_wal(
    tmp_path: pathlib.Path,
) -> None:
    # Switching to WAL needs the write lock, and SQLite refuses it at once (without its busy
    # handler) while another connection writes: the open must wait for it instead.
    writer = sqlite3.connect(tmp_path / "vigil.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        opening = asyncio.create_task(storage.open_store(sqlite_target(tmp_path / "vigil.db")))
        done, _ = await asyncio.wait({opening}, timeout=0.2)
        assert not done
        writer.execute("COMMIT")
        opened = await opening
        await opened.close()

        assert writer.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        writer.close()


async def test_a_sqlite_write_lock_held_past_the_busy_timeout_is_unavailable(
    tmp_path: pathlib.Path,
) -> None:
    writer = sqlite3.connect(tmp_path / "vigil.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        locked = sqlite_target(tmp_path / "vigil.db", busy_timeout=0.05)

        with pytest.raises(errors.StoreUnavailable, match="database is locked"):
            await storage.open_store(locked)
    finally:
        writer.close()


async def test_opening_a_current_store_does_not_import_alembic(tmp_path: pathlib.Path) -> None:
    # alembic adds ~50 ms to import; CLI commands and run workers open the store every time.
    await storage.migrate(sqlite_target(tmp_path / "vigil.db"))
    script = (
        "import asyncio, sys, sqlalchemy as sa\n"
        "from vigil import storage\n"
        "url = sa.engine.URL.create('sqlite+aiosqlite', database=sys.argv[1])\n"
        "async def main():\n"
        "    await (await storage.open_store(storage.StoreTarget(url))).close()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(tmp_path / "vigil.db"), stdout=subprocess.PIPE
    )
    out, _ = await child.communicate()

    assert (child.returncode, out.decode().strip()) == (0, "[]")


async def test_an_empty_database_is_refused_when_creation_is_off(
    store_target: storage.StoreTarget,
) -> None:
    with pytest.raises(errors.SchemaMismatch, match="empty: run `vigil instance migrate`"):
        await storage.open_store(store_target, create_if_empty=False)


async def test_migrate_brings_an_empty_database_to_head(
    store_target: storage.StoreTarget,
) -> None:
    status = await storage.migrate(store_target)

    assert (status.current, status.empty, status.is_current) == (status.head, False, True)
    assert (await storage.migrate(store_target)).is_current  # and again is a no-op


async def test_an_older_schema_is_refused_until_migrated(
    store_target: storage.StoreTarget, engine: sa_asyncio.AsyncEngine
) -> None:
    # Stamped at "base": the version table exists with no revision in it.
    await execute(
        engine,
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        "CREATE TABLE not_vigil (x INTEGER)",
    )

    with pytest.raises(errors.SchemaMismatch) as refused:
        await storage.open_store(store_target)
    head = schema.HEAD_REVISION
    assert str(refused.value) == (
        f"the store at {store_target.redacted()} is at schema base, this vigil expects "
        f"{head}: run `vigil instance migrate`"
    )

    assert (await storage.migrate(store_target)).is_current
    opened = await storage.open_store(store_target)
    await opened.close()


async def test_a_store_at_0001_is_refused_then_migrated_with_its_data(
    store_target: storage.StoreTarget, engine: sa_asyncio.AsyncEngine
) -> None:
    def upgrade_to_0001(conn: sa.Connection) -> None:
        command.upgrade(migration.alembic_config_for(conn), "0001")

    async with target.writer(engine).begin() as conn:
        await conn.run_sync(upgrade_to_0001)
    # Rows written into 0001's tables as that version of vigil wrote them.
    run = runs.Run(
        "r1", "etl", runs.RunStatus.QUEUED, tags={"team": "a"}, created_at=1.0, root_run_id="r1"
    )
    async with target.writer(engine).begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO runs (run_id, job_name, status, run_config, retry_number,"
                " created_at, updated_at, launcher_info, root_run_id)"
                " VALUES ('r1', 'etl', 'QUEUED', '{}', 0, 1.0, 0.0, '{}', 'r1')"
            )
        )
        await conn.execute(
            sa.text("INSERT INTO run_tags (run_id, key, value) VALUES ('r1', 'team', 'a')")
        )
        await conn.execute(
            sa.text(
                "INSERT INTO event_log (run_id, event_type, timestamp, message, data)"
                " VALUES ('r1', 'RUN_ENQUEUED', 1.0, 'queued', '{}')"
            )
        )
        await conn.execute(
            sa.text(
                "INSERT INTO daemon_heartbeats (daemon_id, loop, host, pid, last_heartbeat, info)"
                " VALUES ('d1', 'queue', 'host', 1, 1.0, '{}')"
            )
        )

    with pytest.raises(errors.SchemaMismatch) as refused:
        await storage.open_store(store_target)
    assert str(refused.value) == (
        f"the store at {store_target.redacted()} is at schema 0001, this vigil expects "
        f"{schema.HEAD_REVISION}: run `vigil instance migrate`"
    )

    assert (await storage.migrate(store_target)).is_current
    migrated = await storage.open_store(store_target)
    try:
        assert await migrated.queued_runs() == [run]
        assert [e.message for e in await migrated.get_events("r1")] == ["queued"]
        assert [h.daemon_id for h in await migrated.list_heartbeats()] == ["d1"]
        await migrated.set_flag("queue.paused", True, 2.0)
        assert await migrated.get_flag("queue.paused") is True
    finally:
        await migrated.close()


async def test_a_newer_schema_is_refused_and_not_migrated(
    store_target: storage.StoreTarget, engine: sa_asyncio.AsyncEngine
) -> None:
    await storage.migrate(store_target)
    await execute(engine, "UPDATE alembic_version SET version_num = '9999_from_the_future'")

    with pytest.raises(errors.SchemaMismatch, match="older than the store, upgrade vigil"):
        await storage.open_store(store_target)
    with pytest.raises(errors.SchemaMismatch, match="9999_from_the_future"):
        await storage.migrate(store_target)


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine executes during the test (BEGINs left out)."""
    seen: list[str] = []

    def record(*args: object) -> None:
        statement = str(args[2])
        if not statement.startswith("BEGIN"):
            seen.append(statement)

    event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(sa.engine.Engine, "before_cursor_execute", record)


async def test_opening_a_current_store_checks_the_schema_in_one_query(
    store_target: storage.StoreTarget, statements: list[str]
) -> None:
    await storage.migrate(store_target)
    statements.clear()

    opened = await storage.open_store(store_target)
    await opened.close()

    assert len(statements) == 1, statements


async def starting_run_at_schema(
    store_target: storage.StoreTarget, engine: sa_asyncio.AsyncEngine, version: str
) -> runs.Run:
    """A migrated database holding one STARTING run, then stamped at `version`."""
    run = runs.Run("r1", "etl", runs.RunStatus.STARTING, root_run_id="r1")
    await storage.migrate(store_target)
    opened = await storage.open_store(store_target)
    try:
        await opened.add_run(run)
    finally:
        await opened.close()
    await execute(engine, f"UPDATE alembic_version SET version_num = '{version}'")
    return run


async def start_with_a_deferred_check(store_target: storage.StoreTarget) -> None:
    deferred = await storage.open_store(store_target, defer_schema_check=True)
    try:
        await deferred.start_run("r1", 2.0, event=None)
    finally:
        await deferred.close()


async def status_of_r1(engine: sa_asyncio.AsyncEngine) -> str:
    async with engine.connect() as conn:
        found = await conn.execute(sa.text("SELECT status FROM runs WHERE run_id = 'r1'"))
        return str(found.scalar_one())


async def test_a_deferred_check_refuses_an_older_schema_before_writing(
    store_target: storage.StoreTarget, engine: sa_asyncio.AsyncEngine
) -> None:
    await starting_run_at_schema(store_target, engine, "0001")

    with pytest.raises(errors.SchemaMismatch) as refused:
        await start_with_a_deferred_check(store_target)

    assert str(refused.value) == (
        f"the store at {store_target.redacted()} is at schema 0001, this vigil expects "
        f"{schema.HEAD_REVISION}: run `vigil instance migrate`"
    )
    assert await status_of_r1(engine) == "STARTING"


async def test_a_deferred_check_refuses_a_newer_schema_before_writing(
    store_target: storage.StoreTarget, engine: sa_asyncio.AsyncEngine
) -> None:
    await starting_run_at_schema(store_target, engine, "9999_from_the_future")

    with pytest.raises(errors.SchemaMismatch, match="older than the store, upgrade vigil"):
        await start_with_a_deferred_check(store_target)

    assert await status_of_r1(engine) == "STARTING"


async def test_a_deferred_check_refuses_a_database_without_a_schema(
    store_target: storage.StoreTarget,
) -> None:
    deferred = await storage.open_store(store_target, defer_schema_check=True)
    try:
        with pytest.raises(errors.SchemaMismatch, match="is at schema base, this vigil expects"):
            await deferred.get_run("r1")
    finally:
        await deferred.close()


async def test_a_deferred_check_reads_the_version_once_in_the_first_transaction(
    store_target: storage.StoreTarget, engine: sa_asyncio.AsyncEngine, statements: list[str]
) -> None:
    await starting_run_at_schema(store_target, engine, schema.HEAD_REVISION)
    statements.clear()

    deferred = await storage.open_store(store_target, defer_schema_check=True)
    try:
        assert statements == []
        started = await deferred.start_run("r1", 2.0)
        assert started is not None
        assert started.status is runs.RunStatus.STARTED
        await deferred.get_run("r1")
    finally:
        await deferred.close()

    versions = [s for s in statements if "alembic_version" in s]
    assert len(versions) == 1
    assert "alembic_version" in statements[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_server_that_is_down_is_unavailable_with_a_readable_message() -> None:
    url = sa.engine.URL.create(
        "postgresql+asyncpg",
        username="vigil",
        password="s3cret-pw",
        host="127.0.0.1",
        port=closed_port(),
        database="vigil",
    )
    down = storage.StoreTarget(url, connect_timeout=5.0)

    for attempt in (storage.open_store(down), storage.schema_status(down), storage.migrate(down)):
        with pytest.raises(errors.StoreUnavailable) as unavailable:
            await attempt
        message = str(unavailable.value)
        assert message.startswith(f"cannot reach the store at {down.redacted()}: ")
        assert "***" in message
        assert "s3cret-pw" not in message
        assert "\n" not in message
        assert "Traceback" not in message
        assert "sqlalche.me" not in message


async def test_a_sqlite_file_that_cannot_be_opened_is_unavailable(tmp_path: pathlib.Path) -> None:
    # The database path is a directory: SQLite reports "unable to open database file".
    cannot_open = storage.StoreTarget(
        sa.engine.URL.create("sqlite+aiosqlite", database=str(tmp_path))
    )

    threads_before = set(threading.enumerate())

    with pytest.raises(errors.StoreUnavailable, match="unable to open database file"):
        await storage.open_store(cannot_open)
    await join_sqlite_threads_started_since(threads_before)


async def join_sqlite_threads_started_since(before: set[threading.Thread]) -> None:
    """Wait, with a deadline, for the aiosqlite threads started since `before` to end.

    A failed aiosqlite connect stops its thread without waiting for it, and the thread
    raises "Event loop is closed" if the loop closes first (omnilib/aiosqlite#241).
    """
    for thread in set(threading.enumerate()) - before:
        if "_connection_worker_thread" in thread.name:
            await asyncio.to_thread(thread.join, 10.0)
            assert not thread.is_alive()


async def test_a_sqlite_directory_that_cannot_be_made_is_unavailable(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "file").write_text("")
    under_a_file = tmp_path / "file" / "vigil.db"
    cannot_make = storage.StoreTarget(
        sa.engine.URL.create("sqlite+aiosqlite", database=str(under_a_file))
    )

    with pytest.raises(errors.StoreUnavailable, match="cannot reach the store at sqlite"):
        await storage.open_store(cannot_make)
