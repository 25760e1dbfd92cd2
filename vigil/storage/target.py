"""A store target: its URL and settings, the engine built for it, and the error boundary.

SQLite waits on locks for the busy timeout, which the driver sets as it opens the file, so
it holds from the first statement. SQLite refuses outright, without waiting, to upgrade a
read lock to the write lock while another connection writes (waiting could deadlock); so
nothing here upgrades one. A transaction opened through `writer(engine)` takes the write
lock up front (BEGIN IMMEDIATE), and the switch to WAL mode, which SQLite makes as a read
then a write, is retried for up to the busy timeout. PostgreSQL gets a pre-pinged pool and
a connect timeout; `connect_listener` opens a plain asyncpg connection outside that pool,
with the same connect arguments, for a LISTEN that holds its connection for good.

A ping is a round trip to the server at every checkout. A process with one short job
(the run worker) sets `ping_after_idle`: only a connection that sat in the pool longer
than that is pinged (and replaced when the ping fails), so a worker's fresh connection is
not pinged at every transaction while one left idle through a long step still is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import pathlib
import re
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import aiosqlite
import asyncpg.exceptions
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext import asyncio as sa_asyncio

from vigil import errors, filemodes

# Execution option marking an engine whose transactions write (BEGIN IMMEDIATE on SQLite).
WRITE_OPTION = "vigil_write"

_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
# Per-connection settings; WAL mode is a property of the file, switched by `_use_wal`.
_SQLITE_PRAGMAS = ("PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = ON")
_WAL_RETRY_MAX_DELAY = 0.05  # seconds; the first retry waits 1 ms, each next one twice as long

# Driver errors that mean "the server is not there (yet), or refuses us at the door".
_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InvalidCatalogNameError,
)
_SA_UNREACHABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
# Options SQLAlchemy's asyncpg dialect takes from the URL for itself, not for asyncpg.connect.
_DIALECT_ONLY_OPTIONS = ("prepared_statement_cache_size", "prepared_statement_name_func")
LISTENER_APPLICATION_NAME = "vigil-listener"
_IDLE_SINCE = "vigil_idle_since"  # a pooled connection's info key: when it was checked in


@dataclasses.dataclass(frozen=True)
class StoreTarget:
    """A store's URL and connection settings; `redacted()` is the only form to print."""

    url: sa.engine.URL
    pool_size: int = 5
    max_overflow: int = 10
    busy_timeout: float = 30.0
    connect_timeout: float = 10.0
    # None: ping every PostgreSQL connection at checkout; else only those idle this long (s)
    ping_after_idle: float | None = None

    def redacted(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"


def create_engine(target: StoreTarget) -> sa_asyncio.AsyncEngine:
    """An async engine for the target; dispose of it when done."""
    backend = target.url.get_backend_name()
    if backend not in _DRIVERS:
        raise errors.StoreError(
            f"unsupported store URL {target.redacted()}: use sqlite or postgresql"
        )
    url = target.url.set(drivername=_DRIVERS[backend])
    if target.is_sqlite:
        return _sqlite_engine(url, target)
    return _postgres_engine(url, target)


def writer(engine: sa_asyncio.AsyncEngine) -> sa_asyncio.AsyncEngine:
    """The same engine and pool, with transactions that take the write lock up front."""
    return engine.execution_options(**{WRITE_OPTION: True})


def _postgres_engine(url: sa.engine.URL, target: StoreTarget) -> sa_asyncio.AsyncEngine:
    engine = sa_asyncio.create_async_engine(
        url,
        pool_size=target.pool_size,
        max_overflow=target.max_overflow,
        pool_pre_ping=target.ping_after_idle is None,
        connect_args={
            "timeout": target.connect_timeout,
            "server_settings": {"application_name": "vigil"},
        },
    )
    if target.ping_after_idle is not None:
        _ping_when_idle(engine.sync_engine, target.ping_after_idle)
    return engine


def _ping_when_idle(engine: sa.Engine, after: float) -> None:
    """Ping a connection at checkout only when it sat in the pool for `after` seconds."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < after:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool drops this connection and checks out another (a new one if need be).
            raise sa_exc.DisconnectionError(f"an idle connection failed its ping: {exc}") from exc


async def connect_listener(engine: sa_asyncio.AsyncEngine, target: StoreTarget) -> Any:
    """A new asyncpg connection to a PostgreSQL target, outside the engine's pool."""
    _, params = engine.dialect.create_connect_args(engine.url)
    for option in _DIALECT_ONLY_OPTIONS:
        params.pop(option, None)
    return await asyncpg.connect(
        **params,
        timeout=target.connect_timeout,
        server_settings={"application_name": LISTENER_APPLICATION_NAME},
    )


def _sqlite_engine(url: sa.engine.URL, target: StoreTarget) -> sa_asyncio.AsyncEngine:
    with translate_errors(target):
        _make_database_file(url.database)
    engine = sa_asyncio.create_async_engine(
        url,
        pool_size=target.pool_size,
        max_overflow=target.max_overflow,
        # sqlite3's `timeout` is SQLite's busy timeout, in effect before the first statement.
        connect_args={"timeout": target.busy_timeout},
    )
    prepare = functools.partial(_prepare_sqlite, busy_timeout=target.busy_timeout)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver; `_on_begin` emits BEGIN itself.
        dbapi_connection.isolation_level = None
        dbapi_connection.run_async(prepare)

    event.listen(engine.sync_engine, "begin", _on_begin)
    return engine


async def _prepare_sqlite(connection: aiosqlite.Connection, *, busy_timeout: float) -> None:
    try:
        await _use_wal(connection, busy_timeout)
        for pragma in _SQLITE_PRAGMAS:
            await _execute(connection, pragma)
    except BaseException:
        # Close it here, while the loop runs: the pool only asks the driver's thread to stop,
        # and that thread fails if it gets to it after the loop has closed.
        await connection.close()
        raise


async def _use_wal(connection: aiosqlite.Connection, busy_timeout: float) -> None:
    """Switch the file to WAL mode (a no-op once it is), waiting up to the busy timeout.

    The switch reads the file header, then takes the write lock to rewrite it. When another
    connection holds that lock (say, another first open making the same switch), SQLite
    answers SQLITE_BUSY at once instead of calling its busy handler, so back off and retry
    here as the busy handler would, counting the time slept against the same timeout.
    """
    delay, waited = 0.001, 0.0
    while True:
        try:
            await _execute(connection, "PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or waited >= busy_timeout:
                raise
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, _WAL_RETRY_MAX_DELAY)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    # The low byte is the primary result code (SQLITE_BUSY_RECOVERY etc. are extended ones).
    code: int = getattr(exc, "sqlite_errorcode", 0)
    return code & 0xFF == sqlite3.SQLITE_BUSY


async def _execute(connection: aiosqlite.Connection, statement: str) -> None:
    async with connection.execute(statement):
        pass  # closing the cursor at once ends the statement and any read lock it holds


def _on_begin(connection: sa.Connection) -> None:
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _make_database_file(database: str | None) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    # Created here 0600: SQLite gives its -wal and -shm files the database file's mode.
    filemodes.private_file(pathlib.Path(database).expanduser())


# the error boundary ------------------------------------------------------------------
@contextlib.contextmanager
def translate_errors(target: StoreTarget) -> Iterator[None]:
    """Turn driver and SQLAlchemy errors into `errors.StoreError` subclasses."""
    try:
        yield
    except _UNREACHABLE as exc:
        raise unavailable(target, exc) from exc
    except sa_exc.SQLAlchemyError as exc:
        if _is_unreachable(exc):
            raise unavailable(target, exc) from exc
        raise errors.StoreError(f"the store at {target.redacted()} failed: {_reason(exc)}") from exc


def unavailable(target: StoreTarget, exc: BaseException) -> errors.StoreUnavailable:
    return errors.StoreUnavailable(f"cannot reach the store at {target.redacted()}: {_reason(exc)}")


def _is_unreachable(exc: sa_exc.SQLAlchemyError) -> bool:
    if isinstance(exc, _SA_UNREACHABLE):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return any(isinstance(cause, _UNREACHABLE) for cause in _causes(exc))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    cause = exc.__cause__
    while cause is not None:
        yield cause
        cause = cause.__cause__


def _reason(exc: BaseException) -> str:
    """The driver's own words, on one line, without SQL or SQLAlchemy's trailer."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig.__cause__ or exc.orig
    elif isinstance(exc, sa_exc.SQLAlchemyError) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip()
    first_line = text.splitlines()[0] if text else type(exc).__name__
    return re.sub(r"^<class '[\w.]+'>: ", "", first_line)
