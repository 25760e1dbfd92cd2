"""A store target: its URL and settings, the engine built for it, and the error boundary.

SQLite runs in WAL mode, and a transaction opened through `writer(engine)` takes the write
lock up front (BEGIN IMMEDIATE), so concurrent writers queue on the busy timeout instead of
failing with "database is locked" when a read lock cannot be upgraded. PostgreSQL gets a
pre-pinged pool and a connect timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import asyncpg.exceptions  # type: ignore[import-untyped]
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext import asyncio as sa_asyncio

from vigil import errors

# Execution option marking an engine whose transactions write (BEGIN IMMEDIATE on SQLite).
WRITE_OPTION = "vigil_write"

_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}

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


@dataclasses.dataclass(frozen=True)
class StoreTarget:
    """A store's URL and connection settings; `redacted()` is the only form to print."""

    url: sa.engine.URL
    pool_size: int = 5
    max_overflow: int = 10
    busy_timeout: float = 30.0
    connect_timeout: float = 10.0

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
    return sa_asyncio.create_async_engine(
        url,
        pool_size=target.pool_size,
        max_overflow=target.max_overflow,
        pool_pre_ping=True,
        connect_args={
            "timeout": target.connect_timeout,
            "server_settings": {"application_name": "vigil"},
        },
    )


def _sqlite_engine(url: sa.engine.URL, target: StoreTarget) -> sa_asyncio.AsyncEngine:
    with translate_errors(target):
        _make_parent_dir(url.database)
    engine = sa_asyncio.create_async_engine(
        url,
        pool_size=target.pool_size,
        max_overflow=target.max_overflow,
        connect_args={"timeout": target.busy_timeout},
    )
    pragmas = (
        f"PRAGMA busy_timeout = {int(target.busy_timeout * 1000)}",
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = NORMAL",
        "PRAGMA foreign_keys = ON",
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver; `_on_begin` emits BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(pragma)
        cursor.close()

    event.listen(engine.sync_engine, "begin", _on_begin)
    return engine


def _on_begin(connection: sa.Connection) -> None:
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _make_parent_dir(database: str | None) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    pathlib.Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


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
