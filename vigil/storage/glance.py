"""A read-only look at the store on the bare driver, for the CLI's read commands.

`run list`, `run show`, `daemon status`, `daemon liveness-check` and `queue` read a few
rows; opening the store through SQLAlchemy (and checking its schema) costs them most of a
second on a small machine before the first query. A `Glance` answers the same verbs (`store.Glance`)
with plain SQL on `sqlite3` or asyncpg. It opens only a store it is sure of: an existing
database at the schema this vigil expects. Anything else, and any driver error, raises
`Unsure`, and the command takes the full store instead, which reports what is wrong in its
usual words. The store contract tests pin each verb to the store's own answer.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vigil import events, runs
from vigil.config import quick
from vigil.storage import revision
from vigil.storage import store as store_mod

if TYPE_CHECKING:
    import asyncpg

RUN_COLUMNS = tuple(f.name for f in dataclasses.fields(runs.Run) if f.name != "tags")
_RUNS = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"  # noqa: S608 - names, no input
_EVENTS = "SELECT id, run_id, event_type, step, level, timestamp, message, data FROM event_log"
_HEARTBEATS = (
    "SELECT daemon_id, loop, host, pid, last_heartbeat, info FROM daemon_heartbeats"
    " ORDER BY daemon_id, loop"
)
_IN_FLIGHT = (
    "SELECT runs.run_id, run_tags.key, run_tags.value FROM runs"
    " LEFT OUTER JOIN run_tags ON runs.run_id = run_tags.run_id"
)
_CHUNK = 500  # run ids in one IN (...)
_ALL_RUNS = store_mod.RunFilter()


class Unsure(Exception):
    """The glance cannot answer: the command should open the full store."""


class _Connection(abc.ABC):
    """One database connection that runs a SELECT with `?` parameters."""

    postgres: bool

    @abc.abstractmethod
    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Mapping[str, Any]]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class _Sqlite(_Connection):
    postgres = False

    def __init__(self, connection: sqlite3.Connection) -> None:
        connection.row_factory = sqlite3.Row
        self._connection = connection

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Mapping[str, Any]]:
        try:
            return list(self._connection.execute(sql, tuple(params)).fetchall())
        except sqlite3.Error as exc:
            raise Unsure(str(exc)) from exc

    async def close(self) -> None:
        self._connection.close()


class _Postgres(_Connection):
    postgres = True

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Mapping[str, Any]]:
        import asyncpg

        try:
            return list(await self._connection.fetch(_numbered(sql), *params))
        except (asyncpg.PostgresError, OSError) as exc:
            raise Unsure(str(exc)) from exc

    async def close(self) -> None:
        await self._connection.close()


def _numbered(sql: str) -> str:
    """`?` parameters as PostgreSQL's `$1, $2, ...` (no `?` appears in these SQL texts)."""
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


class Glance:
    """The read commands' verbs (`store.Glance`) on one bare connection."""

    def __init__(self, connection: _Connection) -> None:
        self._db = connection

    async def get_run(self, run_id: str) -> runs.Run:
        found = await self._runs(f"{_RUNS} WHERE run_id = ?", [run_id])
        if not found:
            raise store_mod.unknown_run(run_id)
        return found[0]

    async def run_ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        sql, params = (
            "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\'",
            [store_mod.like_prefix(prefix)],
        )
        if not self._db.postgres and prefix:  # as the store: SQLite's LIKE ignores case
            sql, params = sql + " AND run_id >= ?", [*params, prefix]
            if (successor := store_mod.prefix_successor(prefix)) is not None:
                sql, params = sql + " AND run_id < ?", [*params, successor]
        rows = await self._db.fetch(sql + " ORDER BY run_id LIMIT ?", [*params, limit])
        return [row["run_id"] for row in rows]

    async def list_runs(self, run_filter: store_mod.RunFilter = _ALL_RUNS) -> list[runs.Run]:
        conditions, params = _run_conditions(run_filter)
        sql = _RUNS + (" WHERE " + " AND ".join(conditions) if conditions else "")
        sql += " ORDER BY created_at DESC, run_id DESC"
        if run_filter.limit is not None:
            sql, params = sql + " LIMIT ?", [*params, run_filter.limit]
        return await self._runs(sql, params)

    async def get_events(
        self,
        run_id: str,
        after_id: int = 0,
        limit: int | None = None,
        event_types: Collection[events.EventType] = (),
    ) -> list[events.Event]:
        sql, params = f"{_EVENTS} WHERE id > ? AND run_id = ?", [after_id, run_id]
        if event_types:
            values = [t.value for t in event_types]
            sql, params = f"{sql} AND event_type IN ({_marks(values)})", [*params, *values]
        sql += " ORDER BY id"
        if limit is not None:
            sql, params = sql + " LIMIT ?", [*params, limit]
        return [_event(row) for row in await self._db.fetch(sql, params)]

    async def list_heartbeats(self) -> list[store_mod.Heartbeat]:
        rows = await self._db.fetch(_HEARTBEATS, [])
        return [store_mod.Heartbeat(**{**row, "info": _json(row["info"])}) for row in rows]

    async def queued_runs(self) -> list[runs.Run]:
        sql = f"{_RUNS} WHERE status = ? ORDER BY created_at, run_id"
        return await self._runs(sql, [runs.RunStatus.QUEUED.value])

    async def in_flight_tags(self) -> list[Mapping[str, str]]:
        statuses = sorted(s.value for s in runs.IN_FLIGHT_STATUSES)
        sql = _IN_FLIGHT + f" WHERE runs.status IN ({_marks(statuses)})"
        tags: dict[str, dict[str, str]] = {}
        for row in await self._db.fetch(sql, statuses):
            run_tags = tags.setdefault(row["run_id"], {})
            if row["key"] is not None:
                run_tags[row["key"]] = row["value"]
        return list(tags.values())

    async def get_flag(self, name: str) -> Any | None:
        rows = await self._db.fetch("SELECT value FROM instance_flags WHERE name = ?", [name])
        return _json(rows[0]["value"]) if rows else None

    async def _runs(self, sql: str, params: Sequence[Any]) -> list[runs.Run]:
        rows = await self._db.fetch(sql, params)
        tags = await self._tags([row["run_id"] for row in rows])
        return [_run(row, tags.get(row["run_id"], {})) for row in rows]

    async def _tags(self, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        tags: dict[str, dict[str, str]] = {}
        for start in range(0, len(run_ids), _CHUNK):
            chunk = run_ids[start : start + _CHUNK]
            marks = _marks(chunk)
            sql = f"SELECT run_id, key, value FROM run_tags WHERE run_id IN ({marks})"  # noqa: S608
            for row in await self._db.fetch(sql, chunk):
                tags.setdefault(row["run_id"], {})[row["key"]] = row["value"]
        return tags


def _run_conditions(run_filter: store_mod.RunFilter) -> tuple[list[str], list[Any]]:
    conditions: list[str] = []
    params: list[Any] = []
    if run_filter.statuses:
        statuses = [runs.RunStatus(s).value for s in run_filter.statuses]
        conditions.append(f"status IN ({_marks(statuses)})")
        params += statuses
    for column in ("job_name", "root_run_id"):
        if (value := getattr(run_filter, column)) is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    for key, value in run_filter.tags.items():
        conditions.append(
            "EXISTS (SELECT 1 FROM run_tags WHERE run_tags.run_id = runs.run_id"
            " AND run_tags.key = ? AND run_tags.value = ?)"
        )
        params += [key, value]
    return conditions, params


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _json(value: Any) -> Any:
    """A JSON column's value: text on both drivers (asyncpg leaves `json` undecoded)."""
    return None if value is None else json.loads(value)


def _run(row: Mapping[str, Any], tags: Mapping[str, str]) -> runs.Run:
    values = dict(row)
    values["status"] = runs.RunStatus(values["status"])
    values["run_config"] = _json(values["run_config"])
    values["launcher_info"] = _json(values["launcher_info"])
    selection = _json(values["step_selection"])
    values["step_selection"] = None if selection is None else tuple(selection)
    return runs.Run(tags=dict(tags), **values)


def _event(row: Mapping[str, Any]) -> events.Event:
    return events.Event(
        event_id=row["id"],
        run_id=row["run_id"],
        event_type=events.EventType(row["event_type"]),
        timestamp=row["timestamp"],
        step=row["step"],
        level=row["level"],
        message=row["message"],
        data=_json(row["data"]),
    )


@contextlib.asynccontextmanager
async def opened(where: quick.Sqlite | quick.Postgres) -> AsyncIterator[Glance]:
    """A glance at the store `where` points to; Unsure unless it is there, at the head."""
    connection = await _connect(where)
    try:
        rows = await connection.fetch("SELECT version_num FROM alembic_version", [])
        if [row["version_num"] for row in rows] != [revision.HEAD]:
            raise Unsure("the store is not at this vigil's schema")
        yield Glance(connection)
    finally:
        await connection.close()


async def _connect(where: quick.Sqlite | quick.Postgres) -> _Connection:
    if isinstance(where, quick.Sqlite):
        return _open_sqlite(where)
    import asyncpg

    try:
        connection = await asyncpg.connect(
            host=where.host,
            port=where.port,
            user=where.user,
            password=where.password,
            database=where.database,
            timeout=where.connect_timeout,
        )
    except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
        raise Unsure(str(exc)) from exc
    return _Postgres(connection)


def _open_sqlite(where: quick.Sqlite) -> _Sqlite:
    if not where.path.is_file():  # connecting would make an empty database
        raise Unsure(f"no database at {where.path}")
    try:
        connection = sqlite3.connect(where.path, timeout=where.busy_timeout)
    except sqlite3.Error as exc:
        raise Unsure(str(exc)) from exc
    return _Sqlite(connection)
