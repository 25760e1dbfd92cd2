"""The store on SQLAlchemy Core (async): SQLite for one machine, PostgreSQL for many.

Each method owns one transaction (`_read` or `_write`); every driver error leaves through
`target.translate_errors`. Writes on SQLite take the write lock up front (see `target`).
On PostgreSQL, event inserts take a transaction-scoped advisory lock, so event ids
become visible in commit order and a reader following `events_after` never skips an id
that commits late.

Claims take the admission lock first (an advisory lock on PostgreSQL; on SQLite the write
lock every write transaction takes), then read the queue: each claim sees every claim
committed before it, so claims are serialized and limits hold across daemons. The lock
order is admission, then event order; nothing takes them the other way round. Submissions
and ends send a queue notice with their commit (`wakeup`).

A store opened for one short job (the run worker) may check the schema in its first
transaction instead of in one of its own (`check_schema`): the version is read there,
before anything else, and a mismatch ends that transaction with nothing written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext import asyncio as sa_asyncio

from vigil import backfills, errors, events, retention, runs, ticks
from vigil.storage import (
    backfill_rows,
    instigation,
    lease_rows,
    retention_rows,
    rows,
    schema,
    schema_version,
    store,
    wakeup,
)
from vigil.storage import target as target_mod

S = runs.RunStatus
_EVENT_ORDER_LOCK_KEY = 0x76657674  # "vevt"
_ADMISSION_LOCK_KEY = 0x7669_6769_6C71_7565  # "vigilque"
_NUMBERING_ATTEMPTS = 5  # a lineage's number taken by a concurrent insert: try again
_CHUNK = 1000  # run ids per IN (...); far below the drivers' parameter limits
# Statuses whose arrival sends a queue notice: a submission, or a run's end. From an
# in-flight status every transition out of flight ends the run, so each freed slot is told.
_NOTICE_STATUSES = frozenset({S.QUEUED}) | runs.TERMINAL_STATUSES
_HEARTBEAT_FIELDS = ("host", "pid", "last_heartbeat", "info")
_ALL_RUNS = store.RunFilter()
_NO_UPDATE = store.RunUpdate()

_insert_events = sa.insert(schema.event_log)
_insert_tags = sa.insert(schema.run_tags)
_events_order_lock = sa.select(sa.func.pg_advisory_xact_lock(_EVENT_ORDER_LOCK_KEY))
_admission_lock = sa.select(sa.func.pg_advisory_xact_lock(_ADMISSION_LOCK_KEY))
_is_queued = schema.runs.c.status == S.QUEUED.value
_fifo = (schema.runs.c.created_at, schema.runs.c.run_id)
_queued_query = sa.select(schema.runs).where(_is_queued).order_by(*_fifo)
_queued_ids_query = sa.select(schema.runs.c.run_id).where(_is_queued).order_by(*_fifo)
_not_before = schema.runs.c.not_before
_no_jit = sa.text("SET LOCAL jit = off")


def _due(now: float) -> sa.ColumnElement[bool]:
    """A run with no due time, or whose due time has come."""
    return sa.or_(_not_before.is_(None), _not_before <= now)


_in_flight_query = (
    sa.select(schema.runs.c.run_id, schema.run_tags.c.key, schema.run_tags.c.value)
    .select_from(schema.runs.outerjoin(schema.run_tags))
    .where(schema.runs.c.status.in_(sorted(s.value for s in runs.IN_FLIGHT_STATUSES)))
)


# Raises the error that refuses a database at this schema (see `engine.open_store`).
SchemaCheck = Callable[[schema_version.SchemaStatus], None]


class SqlStore(store.Store):
    """The instance store over an async SQLAlchemy engine. Build it with `open_store`.

    `check_schema`, when given, is called with the schema status read in the store's first
    transaction, before that transaction does anything else; it raises to refuse the store.
    """

    def __init__(
        self,
        engine: sa_asyncio.AsyncEngine,
        target: target_mod.StoreTarget,
        check_schema: SchemaCheck | None = None,
    ) -> None:
        self._engine = engine
        self._writer = target_mod.writer(engine)
        self._target = target
        self._is_postgres = engine.dialect.name == "postgresql"
        self._local_notices = wakeup.LocalHub()
        self._queue = _QueueReader()
        self._check_schema = check_schema

    @property
    def engine(self) -> sa_asyncio.AsyncEngine:
        return self._engine

    @property
    def target(self) -> target_mod.StoreTarget:
        return self._target

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[sa_asyncio.AsyncConnection]:
        with target_mod.translate_errors(self._target):
            async with self._engine.begin() as conn:
                await self._schema_checked(conn)
                yield conn

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[sa_asyncio.AsyncConnection]:
        with target_mod.translate_errors(self._target):
            async with self._writer.begin() as conn:
                await self._schema_checked(conn)
                yield conn

    async def _schema_checked(self, conn: sa_asyncio.AsyncConnection) -> None:
        """The deferred schema check, in the store's first transaction (until one passes)."""
        if self._check_schema is None:
            return
        try:
            status = await schema_version.versioned_status(conn)
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise
            # No version table: not a vigil store at any revision.
            status = schema_version.SchemaStatus(None, schema.HEAD_REVISION, empty=False)
        self._check_schema(status)
        self._check_schema = None

    # runs ---------------------------------------------------------------------------
    async def add_run(self, run: runs.Run, event: events.NewEvent | None = None) -> runs.Run:
        [stored] = await self.add_runs([run], [] if event is None else [event])
        return stored

    async def add_runs(
        self, batch: Sequence[runs.Run], first_events: Sequence[events.NewEvent] = ()
    ) -> list[runs.Run]:
        if not batch:
            return []
        for attempt in range(1, _NUMBERING_ATTEMPTS + 1):
            try:
                return await self._insert_numbered(batch, first_events)
            except _RetryNumberTaken:
                if attempt == _NUMBERING_ATTEMPTS:
                    raise errors.DuplicateRun(
                        "another re-execution of this lineage took the same retry number; try again"
                    ) from None
        raise AssertionError("unreachable")

    async def _insert_numbered(
        self, batch: Sequence[runs.Run], first_events: Sequence[events.NewEvent]
    ) -> list[runs.Run]:
        async with self._write() as conn:
            batch = await self._insert_in(conn, batch, first_events)
        for status in {run.status for run in batch}:
            self._notice_after(status)
        return list(batch)

    async def _insert_in(
        self,
        conn: sa_asyncio.AsyncConnection,
        batch: Sequence[runs.Run],
        first_events: Sequence[events.NewEvent],
    ) -> Sequence[runs.Run]:
        """Insert new runs (numbered), their tags and first events, with their queue notices,
        inside the caller's transaction; the runs as inserted."""
        batch = await _numbered(conn, batch)
        await _insert_runs(conn, batch)
        tag_rows = [
            {"run_id": run.run_id, "key": k, "value": v}
            for run in batch
            for k, v in run.tags.items()
        ]
        if tag_rows:
            await conn.execute(_insert_tags, tag_rows)
        if first_events:
            await self._append(conn, first_events)
        for status in {run.status for run in batch}:
            await self._notice_in(conn, batch[0].run_id, status)
        return batch

    async def get_run(self, run_id: str) -> runs.Run:
        query = _run_query(run_id)
        async with self._read() as conn:
            row = (await conn.execute(query)).one_or_none()
            if row is None:
                raise store.unknown_run(run_id)
            tags = await _load_tags(conn, [run_id])
        return rows.run_from_row(row, tags.get(run_id, {}))

    async def run_ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        query = run_ids_query(prefix, limit, postgres=self._is_postgres)
        async with self._read() as conn:
            return list((await conn.scalars(query)).all())

    async def list_runs(self, run_filter: store.RunFilter = _ALL_RUNS) -> list[runs.Run]:
        async with self._read() as conn:
            return await _load_runs(conn, _runs_query(run_filter))

    async def transition_run(
        self,
        run_id: str,
        expected: runs.RunStatus | Collection[runs.RunStatus],
        new: runs.RunStatus,
        now: float,
        update: store.RunUpdate = _NO_UPDATE,
        event: events.NewEvent | Sequence[events.NewEvent] | None = None,
    ) -> bool:
        leaving = _as_statuses(expected)
        for status in leaving:
            runs.check_transition(status, new)
        statement = _transition_statement(run_id, leaving, new, now, update)
        async with self._write() as conn:
            if (await conn.execute(statement)).rowcount == 0:
                await _check_run_exists(conn, run_id)
                return False
            if batch := _as_batch(event):
                await self._append(conn, batch)
            await self._notice_in(conn, run_id, new)
        self._notice_after(new)
        return True

    async def claim_run(
        self, run_id: str, expected: runs.RunStatus, now: float, claimer: str
    ) -> runs.Run | None:
        runs.check_transition(expected, S.STARTING)
        table = schema.runs
        statement = (
            sa.update(table)
            .where(table.c.run_id == run_id, table.c.status == expected.value)
            .values(status=S.STARTING.value, updated_at=now, **_new_launch(claimer))
            .returning(*table.c)
        )
        return await self._take_over(run_id, statement, [_claim_event(run_id, now, claimer)])

    async def record_launches(self, launches: Sequence[store.Launch], now: float) -> None:
        if not launches:
            return
        tokened = [launch for launch in launches if launch.token is not None]
        rows_ = [
            {"b_run_id": x.run_id, "b_token": x.token, "b_info": dict(x.info), "b_now": now}
            for x in tokened
        ]
        async with self._write() as conn:
            if rows_:
                await conn.execute(_record_launch, rows_)  # one executemany for the batch
            for launch in launches:
                if launch.token is None:  # claimed by a vigil without tokens
                    await conn.execute(_record_untokened(launch, now))

    async def start_run(
        self,
        run_id: str,
        now: float,
        update: store.RunUpdate = _NO_UPDATE,
        event: events.NewEvent | None = None,
        token: str | None = None,
        resume: bool = False,
    ) -> runs.Run | None:
        statement = _start_statement(run_id, now, update, token, resume)
        return await self._take_over(run_id, statement, [] if event is None else [event])

    async def reclaim_launch(
        self,
        run_id: str,
        token: str | None,
        now: float,
        claimer: str,
        event: events.NewEvent,
    ) -> runs.Run | None:
        table = schema.runs
        statement = (
            sa.update(table)
            .where(*_unlaunched_claim(run_id, token))
            .values(updated_at=now, **_new_launch(claimer))
            .returning(*table.c)
        )
        return await self._take_over(run_id, statement, [event])

    async def requeue_launch(
        self,
        run_id: str,
        token: str | None,
        now: float,
        not_before: float,
        event: events.NewEvent,
    ) -> bool:
        runs.check_transition(S.STARTING, S.QUEUED)
        table = schema.runs
        statement = (
            sa.update(table)
            .where(*_unlaunched_claim(run_id, token))
            .values(status=S.QUEUED.value, updated_at=now, not_before=not_before, claimed_by=None)
        )
        async with self._write() as conn:
            if (await conn.execute(statement)).rowcount == 0:
                await _check_run_exists(conn, run_id)
                return False
            await self._append(conn, [event])
        self._queue.forget(run_id)
        return True

    async def orphaned_claims(
        self, live_claimers: Collection[str], claimed_before: float
    ) -> list[runs.Run]:
        table = schema.runs
        query = _runs_query(store.RunFilter(statuses=[S.STARTING])).where(
            table.c.launched_at.is_(None), table.c.updated_at <= claimed_before
        )
        if live_claimers:
            claimer = table.c.claimed_by
            query = query.where(sa.or_(claimer.is_(None), claimer.not_in(list(live_claimers))))
        async with self._read() as conn:
            return await _load_runs(conn, query)

    async def resume_run(
        self,
        run_id: str,
        expected: runs.RunStatus,
        attempt: int,
        now: float,
        claimer: str,
        event: events.NewEvent,
        fence: store.Fence | None = None,
    ) -> runs.Run | None:
        if expected not in (S.STARTING, S.STARTED):
            raise errors.InvalidTransition(f"a {expected} run has no worker to replace")
        table = schema.runs
        statement = (
            sa.update(table)
            .where(
                table.c.run_id == run_id,
                table.c.status == expected.value,
                table.c.resume_attempt == attempt - 1,
            )
            .values(updated_at=now, resume_attempt=attempt, **_new_launch(claimer))
            .returning(*table.c)
        )
        return await self._take_over(run_id, statement, [event], fence)

    async def _take_over(
        self,
        run_id: str,
        statement: sa.Update,
        batch: Sequence[events.NewEvent],
        fence: store.Fence | None = None,
    ) -> runs.Run | None:
        """A guarded `UPDATE ... RETURNING` of one run, its events appended only if it won,
        and the run as it is after (with its tags); None when the guard failed."""
        async with self._write() as conn:
            await lease_rows.check(conn, self._is_postgres, fence)
            row = (await conn.execute(statement)).one_or_none()
            if row is None:
                await _check_run_exists(conn, run_id)
                return None
            tags = await _load_tags(conn, [run_id])
            if batch:
                await self._append(conn, batch)
        return rows.run_from_row(row, tags.get(run_id, {}))

    async def end_run(
        self,
        run_id: str,
        expected: runs.RunStatus | Collection[runs.RunStatus],
        end: runs.RunEnd,
        now: float,
        pending: Sequence[events.NewEvent] = (),
        token: str | None = None,
        fence: store.Fence | None = None,
    ) -> bool:
        leaving = _as_statuses(expected)
        for status in leaving:
            runs.check_transition(status, end.status)
        statement = _end_statement(run_id, leaving, end.status, now, token)
        async with self._write() as conn:
            await lease_rows.check(conn, self._is_postgres, fence)
            if (await conn.execute(statement)).rowcount == 0:
                await _check_run_exists(conn, run_id)
                return False
            await self._append(conn, [*pending, _end_event(run_id, end, now)])
            await self._notice_in(conn, run_id, end.status)
        self._notice_after(end.status)
        return True

    async def request_cancel(self, run_id: str, now: float) -> runs.Run:
        never_launched = [S.NOT_STARTED, S.QUEUED]
        launched = [S.STARTING, S.STARTED]
        canceled = runs.RunEnd(S.CANCELED, "canceled before launch", runs.EndReason.CANCELED)
        requested = events.NewEvent(
            run_id, events.EventType.RUN_CANCELING, now, message="cancel requested"
        )
        ended = _transition_statement(
            run_id, never_launched, S.CANCELED, now, store.RunUpdate(end_time=now)
        )
        canceling = _transition_statement(run_id, launched, S.CANCELING, now, _NO_UPDATE)
        async with self._write() as conn:
            if (await conn.execute(ended)).rowcount:
                await self._append(conn, [_end_event(run_id, canceled, now)])
                await self._notice_in(conn, run_id, S.CANCELED)
            elif (await conn.execute(canceling)).rowcount:
                await self._append(conn, [requested])
            row = (await conn.execute(_run_query(run_id))).one_or_none()
            if row is None:
                raise store.unknown_run(run_id)
            tags = await _load_tags(conn, [run_id])
        run = rows.run_from_row(row, tags.get(run_id, {}))
        self._notice_after(run.status)
        return run

    async def count_runs_by_status(self) -> dict[runs.RunStatus, int]:
        status = schema.runs.c.status
        query = sa.select(status, sa.func.count()).group_by(status)
        async with self._read() as conn:
            counts = (await conn.execute(query)).all()
        return {runs.RunStatus(name): count for name, count in counts}

    async def get_run_by_key(self, instigator: str, run_key: str) -> runs.Run | None:
        table = schema.runs
        query = sa.select(table).where(table.c.instigator == instigator, table.c.run_key == run_key)
        async with self._read() as conn:
            found = await _load_runs(conn, query)
        return found[0] if found else None

    async def instigator_runs(
        self,
        instigator: str,
        statuses: Collection[runs.RunStatus] = (),
        limit: int | None = None,
    ) -> list[runs.Run]:
        query = _runs_query(store.RunFilter(statuses=statuses, limit=limit))
        async with self._read() as conn:
            return await _load_runs(conn, query.where(schema.runs.c.instigator == instigator))

    # the run queue ----------------------------------------------------------------------
    async def claim_queued_runs(
        self, admit: store.Admit, now: float, claimer: str
    ) -> list[runs.Run]:
        async with self._write() as conn:
            if self._is_postgres:
                await conn.execute(_admission_lock)
            queued = await self._queue.read(conn, now)
            if not queued:
                return []
            chosen = admit(queued, await _load_in_flight_tags(conn))
            claimed = await _move_to_starting(conn, chosen, now, queued, claimer)
            if claimed:
                await self._append(conn, [_claim_event(r.run_id, now, claimer) for r in claimed])
        return claimed

    async def queued_runs(self) -> list[runs.Run]:
        async with self._read() as conn:
            return await _load_runs(conn, _queued_query)

    async def in_flight_tags(self) -> list[Mapping[str, str]]:
        async with self._read() as conn:
            return await _load_in_flight_tags(conn)

    async def waiting_runs(self, instigator: str, now: float) -> tuple[int, float | None]:
        table = schema.runs
        query = sa.select(sa.func.count(), sa.func.min(_not_before)).where(
            table.c.instigator == instigator,
            table.c.status.in_([S.NOT_STARTED.value, S.QUEUED.value]),
            _not_before > now,
        )
        async with self._read() as conn:
            count, first = (await conn.execute(query)).one()
        return int(count), first

    async def due_runs(self, instigator: str, now: float, limit: int) -> list[runs.Run]:
        table = schema.runs
        query = (
            sa.select(table)
            .where(
                table.c.instigator == instigator,
                table.c.status == S.NOT_STARTED.value,
                _due(now),
            )
            .order_by(*_fifo)
            .limit(limit)
        )
        async with self._read() as conn:
            return await _load_runs(conn, query)

    def queue_wakeups(self) -> contextlib.AbstractAsyncContextManager[store.Wakeups]:
        if self._is_postgres:
            connect = functools.partial(target_mod.connect_listener, self._engine, self._target)
            return wakeup.listen(connect)
        return self._local_notices.subscribe()

    async def _notice_in(
        self, conn: sa_asyncio.AsyncConnection, run_id: str, new: runs.RunStatus
    ) -> None:
        """Send a queue notice with this transaction's commit (PostgreSQL)."""
        if self._is_postgres and new in _NOTICE_STATUSES:
            await conn.execute(sa.select(sa.func.pg_notify(wakeup.CHANNEL, run_id)))

    def _notice_after(self, new: runs.RunStatus) -> None:
        """Wake this store object's own subscribers, once committed (SQLite)."""
        if not self._is_postgres and new in _NOTICE_STATUSES:
            self._local_notices.wake()

    # instance flags -------------------------------------------------------------------
    async def set_flag(
        self,
        name: str,
        value: Any,
        now: float,
        wake_queue: bool = False,
        fence: store.Fence | None = None,
    ) -> None:
        insert = postgresql.insert if self._is_postgres else sqlite.insert
        values = {"name": name, "value": value, "updated_at": now}
        statement = insert(schema.instance_flags).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=["name"],
            set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at},
        )
        async with self._write() as conn:
            await lease_rows.check(conn, self._is_postgres, fence)
            await conn.execute(statement)
            if wake_queue:
                await self._notice_in(conn, name, S.QUEUED)
        if wake_queue:
            self._notice_after(S.QUEUED)

    async def get_flag(self, name: str) -> Any | None:
        table = schema.instance_flags
        query = sa.select(table.c.value).where(table.c.name == name)
        async with self._read() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    # backfills ---------------------------------------------------------------------------
    async def add_backfill(self, backfill: backfills.Backfill) -> backfills.Backfill:
        async with self._write() as conn:
            await conn.execute(sa.insert(schema.backfills).values(backfill_rows.values(backfill)))
        return backfill

    async def get_backfill(self, backfill_id: str) -> backfills.Backfill:
        async with self._read() as conn:
            return await backfill_rows.read(conn, backfill_id)

    async def list_backfills(
        self, statuses: Collection[backfills.BackfillStatus] | None = None
    ) -> list[backfills.Backfill]:
        async with self._read() as conn:
            return await backfill_rows.read_all(conn, statuses)

    async def submit_backfill_runs(
        self,
        backfill_id: str,
        cursor: int,
        batch: Sequence[runs.Run],
        first_events: Sequence[events.NewEvent],
        now: float,
    ) -> bool:
        async with self._write() as conn:
            if not await backfill_rows.advance(conn, backfill_id, cursor, len(batch), now):
                return False
            if batch:
                await self._insert_in(conn, batch, first_events)
        if batch:
            self._notice_after(S.QUEUED)
        return True

    async def cancel_backfill(
        self, backfill_id: str, now: float
    ) -> tuple[backfills.Backfill, list[str]]:
        end = runs.RunEnd(S.CANCELED, "backfill canceled", runs.EndReason.CANCELED, "backfill")
        async with self._write() as conn:
            canceled: list[str] = []
            if await backfill_rows.close(conn, backfill_id, now):
                canceled = await backfill_rows.queued_run_ids(conn, backfill_id)
            for start in range(0, len(canceled), _CHUNK):
                chunk = canceled[start : start + _CHUNK]
                await conn.execute(
                    sa.update(schema.runs)
                    .where(schema.runs.c.run_id.in_(chunk), _is_queued)
                    .values(status=S.CANCELED.value, updated_at=now, end_time=now)
                )
            if canceled:
                await self._append(conn, [_end_event(run_id, end, now) for run_id in canceled])
                await self._notice_in(conn, canceled[0], S.CANCELED)
            stored = await backfill_rows.read(conn, backfill_id)
        if canceled:
            self._notice_after(S.CANCELED)
        return stored, canceled

    async def backfill_runs(self, backfill_id: str) -> list[backfills.PartitionRun]:
        async with self._read() as conn:
            return await backfill_rows.backfill_partition_runs(conn, backfill_id)

    async def partition_runs(self, job_name: str) -> list[backfills.PartitionRun]:
        async with self._read() as conn:
            return await backfill_rows.job_partition_runs(conn, job_name)

    # instigators and ticks --------------------------------------------------------------
    async def list_instigators(
        self, names: Collection[str] | None = None
    ) -> list[ticks.InstigatorState]:
        async with self._read() as conn:
            return await instigation.read_states(conn, names)

    async def ensure_instigators(
        self, names: Sequence[tuple[str, ticks.InstigatorKind]], now: float
    ) -> None:
        async with self._write() as conn:
            await instigation.ensure_states(conn, self._is_postgres, names, now)

    async def set_instigator_status(
        self,
        name: str,
        kind: ticks.InstigatorKind,
        status: ticks.InstigatorStatus,
        now: float,
    ) -> None:
        values = {**instigation.cursor_values(name, kind, None, now), "status": status.value}
        async with self._write() as conn:
            await instigation.upsert_state(
                conn, self._is_postgres, values, ["status", "updated_at"]
            )

    async def set_instigator_cursor(
        self, name: str, kind: ticks.InstigatorKind, cursor: str | None, now: float
    ) -> None:
        values = instigation.cursor_values(name, kind, cursor, now)
        async with self._write() as conn:
            await instigation.upsert_state(
                conn, self._is_postgres, values, ["cursor", "updated_at"]
            )

    async def add_ticks(
        self,
        keys: Sequence[tuple[str, float]],
        status: ticks.TickStatus,
        now: float,
        error: str | None = None,
    ) -> list[ticks.Tick]:
        if not keys:
            return []
        values = {"status": status.value, "error": error, "created_at": now, "updated_at": now}
        async with self._write() as conn:
            return await instigation.insert_ticks(conn, self._is_postgres, keys, values)

    async def plan_ticks(
        self,
        run: Sequence[tuple[str, float]],
        missed: Sequence[tuple[str, float]],
        now: float,
        missed_error: str,
    ) -> list[ticks.Tick]:
        if not run and not missed:
            return []
        times = {"created_at": now, "updated_at": now}
        async with self._write() as conn:
            if missed:
                values = {"status": ticks.TickStatus.MISSED.value, "error": missed_error, **times}
                await instigation.insert_ticks(conn, self._is_postgres, missed, values)
            if not run:
                return []
            values = {"status": ticks.TickStatus.STARTED.value, "error": None, **times}
            return await instigation.insert_ticks(conn, self._is_postgres, run, values)

    async def finish_ticks(
        self,
        outcomes: Sequence[ticks.TickOutcome],
        now: float,
        fence: store.Fence | None = None,
    ) -> list[int]:
        if not outcomes:
            return []
        async with self._write() as conn:
            refused: list[int] = []
            if fence is not None:
                held = await lease_rows.holds(conn, self._is_postgres, fence)
                refused = [o.tick_id for o in outcomes if o.instigator not in held]
                outcomes = [o for o in outcomes if o.instigator in held]
            await instigation.finish(conn, self._is_postgres, outcomes, now)
        return refused

    async def list_ticks(
        self,
        instigator: str | None = None,
        statuses: Collection[ticks.TickStatus] = (),
        limit: int | None = None,
    ) -> list[ticks.Tick]:
        query = instigation.ticks_query(instigator, statuses, limit)
        async with self._read() as conn:
            return [instigation.tick_from_row(row) for row in await conn.execute(query)]

    async def latest_ticks(self) -> dict[str, ticks.Tick]:
        async with self._read() as conn:
            found = await conn.execute(instigation.latest_query())
            latest = [instigation.tick_from_row(row) for row in found]
        return {tick.instigator: tick for tick in latest}

    async def purge_ticks(self, before: float, statuses: Collection[ticks.TickStatus]) -> int:
        async with self._write() as conn:
            result = await conn.execute(instigation.purge_statement(before, statuses))
        return int(result.rowcount)

    # events -------------------------------------------------------------------------
    async def last_event_id(self) -> int:
        query = sa.select(sa.func.max(schema.event_log.c.id))
        async with self._read() as conn:
            return int((await conn.execute(query)).scalar_one_or_none() or 0)

    async def append_events(self, batch: Sequence[events.NewEvent]) -> None:
        if not batch:
            return
        async with self._write() as conn:
            await self._append(conn, batch)

    async def record_worker_heartbeat(
        self,
        run_id: str,
        token: str | None,
        now: float,
        batch: Sequence[events.NewEvent] = (),
    ) -> bool:
        async with self._write() as conn:
            beat = (await conn.execute(_beat_statement(run_id, token, now))).rowcount > 0
            if not beat:
                await _check_run_exists(conn, run_id)
            if batch:
                await self._append(conn, batch)
        return beat

    async def _append(
        self, conn: sa_asyncio.AsyncConnection, batch: Sequence[events.NewEvent]
    ) -> None:
        if self._is_postgres:
            await conn.execute(_events_order_lock)
        await conn.execute(_insert_events, rows.event_values(batch))

    async def get_events(
        self,
        run_id: str,
        after_id: int = 0,
        limit: int | None = None,
        event_types: Collection[events.EventType] = (),
    ) -> list[events.Event]:
        query = _events_query(after_id, limit, event_types)
        return await self._fetch_events(query.where(schema.event_log.c.run_id == run_id))

    async def events_after(
        self,
        after_id: int,
        limit: int,
        event_types: Collection[events.EventType] = (),
    ) -> list[events.Event]:
        return await self._fetch_events(_events_query(after_id, limit, event_types))

    async def _fetch_events(self, query: sa.Select[Any]) -> list[events.Event]:
        async with self._read() as conn:
            found = (await conn.execute(query)).all()
        return [rows.event_from_row(row) for row in found]

    # retention ----------------------------------------------------------------------
    async def purge_runs(self, rule: retention.Rule, now: float) -> retention.Batch:
        async with self._write() as conn:
            await self._without_jit(conn)
            cursor = await _retries_cursor(conn, rule)
            chosen = await _purge_batch(conn, rule, cursor)
            if not chosen:
                return retention.Batch((), 0)
            gone = list(await conn.scalars(retention_rows.delete_runs(chosen)))
            if not gone:
                return retention.Batch((), 0)
            purged = await conn.execute(retention_rows.delete_events(gone))
            await conn.execute(retention_rows.delete_tags(gone))
            await conn.execute(
                retention_rows.insert_journal, retention_rows.journal_rows(gone, now)
            )
        return retention.Batch(tuple(gone), int(purged.rowcount))

    async def count_purgeable(self, rule: retention.Rule) -> retention.Purged:
        async with self._read() as conn:
            await self._without_jit(conn)
            cursor = await _retries_cursor(conn, rule)
            found = (await conn.execute(retention_rows.count_query(rule, cursor))).one()
        return retention.Purged(runs=int(found[0]), events=int(found[1]))

    async def _without_jit(self, conn: sa_asyncio.AsyncConnection) -> None:
        """PostgreSQL's JIT compiles the purge's correlated subqueries for far longer than
        they run (0.2 s of a 0.03 s batch query): off for this transaction."""
        if self._is_postgres:
            await conn.execute(_no_jit)

    async def purged_files_pending(self, limit: int) -> list[str]:
        async with self._read() as conn:
            return list(await conn.scalars(retention_rows.pending_query(limit)))

    async def forget_purged(self, run_ids: Collection[str]) -> None:
        if not run_ids:
            return
        async with self._write() as conn:
            for chunk in _chunks(sorted(run_ids)):
                await conn.execute(retention_rows.forget_statement(list(chunk)))

    # daemon -------------------------------------------------------------------------
    async def write_heartbeat(self, heartbeat: store.Heartbeat) -> None:
        insert = postgresql.insert if self._is_postgres else sqlite.insert
        statement = insert(schema.daemon_heartbeats).values(rows.heartbeat_values(heartbeat))
        statement = statement.on_conflict_do_update(
            index_elements=["daemon_id", "loop"],
            set_={name: statement.excluded[name] for name in _HEARTBEAT_FIELDS},
        )
        async with self._write() as conn:
            await conn.execute(statement)

    async def list_heartbeats(self) -> list[store.Heartbeat]:
        table = schema.daemon_heartbeats
        query = sa.select(table).order_by(table.c.daemon_id, table.c.loop)
        async with self._read() as conn:
            found = (await conn.execute(query)).all()
        return [store.Heartbeat(**row._asdict()) for row in found]

    async def prune_heartbeats(self, before: float) -> int:
        table = schema.daemon_heartbeats
        statement = sa.delete(table).where(table.c.last_heartbeat < before)
        async with self._write() as conn:
            return (await conn.execute(statement)).rowcount

    # leases -------------------------------------------------------------------------
    async def renew_membership(self, member: store.Member) -> None:
        async with self._write() as conn:
            await lease_rows.renew(conn, self._is_postgres, member)

    async def leave(self, daemon_id: str) -> int:
        async with self._write() as conn:
            return await lease_rows.leave(conn, daemon_id)

    async def acquire_leases(
        self, owner: str, units: Collection[str], now: float
    ) -> store.Acquired:
        if not units:
            return store.Acquired({})
        async with self._write() as conn:
            return await lease_rows.acquire(conn, self._is_postgres, owner, sorted(units), now)

    async def release_leases(self, owner: str, units: Collection[str]) -> None:
        if units:
            async with self._write() as conn:
                await lease_rows.release(conn, owner, sorted(units))

    async def prune_members(self, before: float) -> int:
        async with self._write() as conn:
            return int((await conn.execute(lease_rows.prune_statement(before))).rowcount)

    async def list_members(self) -> list[store.Member]:
        async with self._read() as conn:
            return [
                lease_rows.member_from_row(r)
                for r in await conn.execute(lease_rows.members_query())
            ]

    async def list_leases(self, prefix: str = "") -> list[store.Lease]:
        async with self._read() as conn:
            found = await conn.execute(lease_rows.leases_query(prefix))
            return [lease_rows.lease_from_row(r) for r in found]

    # lifecycle ----------------------------------------------------------------------
    async def ping(self) -> None:
        with target_mod.translate_errors(self._target):
            async with self._engine.connect() as conn:
                await conn.execute(_ping)

    async def schema_is_current(self) -> bool:
        async with self._read() as conn:
            status = await schema_version.read_status(conn)
        return status.is_current

    async def close(self) -> None:
        await self._engine.dispose()


class _QueueReader:
    """Reads the queue for claims, loading each queued run's row only once.

    A queued run's record does not change while it waits (a transition takes it out of the
    queue; launcher and worker facts come after the launch), so each claim reads the queued
    ids in FIFO order and loads only the runs this reader has not seen yet: a deep queue
    costs one narrow query per claim instead of every row and tag again.
    """

    def __init__(self) -> None:
        self._known: dict[str, runs.Run] = {}

    def forget(self, run_id: str) -> None:
        """Load this run's row again when it is next queued (it came back changed)."""
        self._known.pop(run_id, None)

    async def read(self, conn: sa_asyncio.AsyncConnection, now: float) -> list[runs.Run]:
        """The queued runs that are due at `now` (`not_before`, read once with the run),
        first in first out."""
        run_ids = (await conn.execute(_queued_ids_query)).scalars().all()
        new = [run_id for run_id in run_ids if run_id not in self._known]
        known = self._known | {run.run_id: run for run in await _load_queued(conn, new)}
        # Ids whose run left the queue before its row was loaded are dropped here.
        self._known = {run_id: known[run_id] for run_id in run_ids if run_id in known}
        return [r for r in self._known.values() if r.not_before is None or r.not_before <= now]


# statements and rows -------------------------------------------------------------------
_ping = sa.text("SELECT 1")
_record_launch = (
    sa.update(schema.runs)
    .where(
        schema.runs.c.run_id == sa.bindparam("b_run_id"),
        schema.runs.c.launch_token == sa.bindparam("b_token"),
    )
    .values(
        launcher_info=sa.bindparam("b_info", type_=sa.JSON()), launched_at=sa.bindparam("b_now")
    )
)


def _record_untokened(launch: store.Launch, now: float) -> sa.Update:
    table = schema.runs
    return (
        sa.update(table)
        .where(table.c.run_id == launch.run_id, table.c.launch_token.is_(None))
        .values(launcher_info=dict(launch.info), launched_at=now)
    )


async def _purge_batch(
    conn: sa_asyncio.AsyncConnection, rule: retention.Rule, cursor: int | None
) -> list[str]:
    """Up to a batch of runs the rule lets go, status by status."""
    chosen: list[str] = []
    for status in sorted(rule.ended_before):
        left = rule.batch_size - len(chosen)
        if left <= 0:
            break
        query = retention_rows.batch_query(rule, cursor, status, left)
        chosen += await conn.scalars(query)
    return chosen


async def _retries_cursor(conn: sa_asyncio.AsyncConnection, rule: retention.Rule) -> int | None:
    """The retries loop's cursor when the rule spares retries (0 before its first pass)."""
    if not rule.spare_retries:
        return None
    value = (await conn.execute(retention_rows.cursor_query())).scalar_one_or_none()
    return int(value or 0)


def run_ids_query(prefix: str, limit: int, *, postgres: bool) -> sa.Select[Any]:
    """The ids of runs that start with `prefix`, in order, at most `limit`."""
    column = schema.runs.c.run_id
    conditions = _prefix_range(column, prefix, binary_range=not postgres)
    return sa.select(column).where(*conditions).order_by(column).limit(limit)


def _prefix_range(
    column: sa.ColumnElement[str], prefix: str, binary_range: bool
) -> list[sa.ColumnElement[bool]]:
    """`column` starts with `prefix`: a LIKE (its special characters escaped), which
    PostgreSQL answers from the primary key's index in the C collation; on SQLite, whose
    LIKE ignores case and no index, bounded by the range of strings that start with the
    prefix in binary order (`binary_range`), which it answers from the index."""
    conditions: list[sa.ColumnElement[bool]] = [column.like(store.like_prefix(prefix), escape="\\")]
    if binary_range and prefix:
        conditions.append(column >= prefix)
        if (successor := store.prefix_successor(prefix)) is not None:
            conditions.append(column < successor)
    return conditions


def _run_query(run_id: str) -> sa.Select[Any]:
    return sa.select(schema.runs).where(schema.runs.c.run_id == run_id)


def _transition_statement(
    run_id: str,
    leaving: Sequence[runs.RunStatus],
    new: runs.RunStatus,
    now: float,
    update: store.RunUpdate,
) -> sa.Update:
    values = {"status": new.value, "updated_at": now, **rows.update_values(update)}
    return (
        sa.update(schema.runs)
        .where(schema.runs.c.run_id == run_id, schema.runs.c.status.in_(leaving))
        .values(values)
    )


def _end_statement(
    run_id: str,
    leaving: Sequence[runs.RunStatus],
    status: runs.RunStatus,
    now: float,
    token: str | None,
) -> sa.Update:
    statement = _transition_statement(run_id, leaving, status, now, store.RunUpdate(end_time=now))
    if token is not None:
        statement = statement.where(schema.runs.c.launch_token == token)
    return statement


def _start_statement(
    run_id: str,
    now: float,
    update: store.RunUpdate,
    token: str | None = None,
    resume: bool = False,
) -> sa.Update:
    values = {"status": S.STARTED.value, "updated_at": now, **rows.update_values(update)}
    leaving = S.STARTED if resume else S.STARTING
    statement = sa.update(schema.runs).where(
        schema.runs.c.run_id == run_id, schema.runs.c.status == leaving.value
    )
    if token is not None:
        statement = statement.where(schema.runs.c.launch_token == token)
    return statement.values(values).returning(*schema.runs.c)


def _new_launch(claimer: str) -> dict[str, Any]:
    """The columns of a new launch attempt: a fresh token, its claimer, nothing recorded,
    no heartbeat of its worker yet (an old worker's heartbeat says nothing of the new one)."""
    return {
        "launch_token": uuid.uuid4().hex,
        "claimed_by": claimer,
        "launched_at": None,
        "worker_heartbeat": None,
    }


_BEATING = (S.STARTED.value, S.CANCELING.value)


def _beat_statement(run_id: str, token: str | None, now: float) -> sa.Update:
    """A worker's heartbeat: only while its run is in flight and (given a token) its own."""
    table = schema.runs
    statement = sa.update(table).where(table.c.run_id == run_id, table.c.status.in_(_BEATING))
    if token is not None:
        statement = statement.where(table.c.launch_token == token)
    return statement.values(worker_heartbeat=now)


def _unlaunched_claim(run_id: str, token: str | None) -> list[sa.ColumnElement[bool]]:
    """The run is STARTING under this launch token, and no launch was recorded for it."""
    table = schema.runs
    return [
        table.c.run_id == run_id,
        table.c.status == S.STARTING.value,
        table.c.launched_at.is_(None),
        _token_is(token),
    ]


def _token_is(token: str | None) -> sa.ColumnElement[bool]:
    column = schema.runs.c.launch_token
    return column.is_(None) if token is None else column == token


_END_EVENT_TYPES = {
    S.SUCCESS: events.EventType.RUN_SUCCESS,
    S.FAILURE: events.EventType.RUN_FAILURE,
    S.CANCELED: events.EventType.RUN_CANCELED,
}


def _end_event(run_id: str, end: runs.RunEnd, now: float) -> events.NewEvent:
    """The end event of every run, whoever ends it: the reason and who, in `data`."""
    data: dict[str, Any] = {}
    if end.reason is not None:
        data["reason"] = end.reason.value
    if end.by is not None:
        data["by"] = end.by
    return events.NewEvent(
        run_id=run_id,
        event_type=_END_EVENT_TYPES[end.status],
        timestamp=now,
        message=end.message,
        data=data,
    )


class _RetryNumberTaken(Exception):
    """A concurrent insert took the retry number this one computed (the lineage index)."""


async def _numbered(
    conn: sa_asyncio.AsyncConnection, batch: Sequence[runs.Run]
) -> Sequence[runs.Run]:
    """Give each re-execution the next retry number of its lineage, read in this transaction.

    A lineage numbers its runs once, whatever made them (an automatic retry, a manual
    re-execution): a unique index on (root_run_id, retry_number) guards it, and a
    concurrent insert that took the number first makes this transaction try again.
    """
    roots = {run.root_run_id for run in batch if _is_child(run)}
    if not roots:
        return batch
    table = schema.runs
    query = (
        sa.select(table.c.root_run_id, sa.func.max(table.c.retry_number))
        .where(table.c.root_run_id.in_(sorted(r for r in roots if r is not None)))
        .group_by(table.c.root_run_id)
    )
    last = {root: number for root, number in await conn.execute(query)}
    numbered: list[runs.Run] = []
    for run in batch:
        if _is_child(run) and run.root_run_id is not None:
            number = last.get(run.root_run_id, 0) + 1
            last[run.root_run_id] = number
            tags = {**run.tags, runs.TAG_RETRY_NUMBER: str(number)}
            run = dataclasses.replace(run, retry_number=number, tags=tags)
        numbered.append(run)
    return numbered


def _is_child(run: runs.Run) -> bool:
    return run.parent_run_id is not None and run.root_run_id not in (None, run.run_id)


async def _insert_runs(conn: sa_asyncio.AsyncConnection, batch: Sequence[runs.Run]) -> None:
    try:
        await conn.execute(sa.insert(schema.runs), [rows.run_values(run) for run in batch])
    except sa.exc.IntegrityError as exc:
        if "retry_number" in str(exc.orig):
            raise _RetryNumberTaken from exc
        raise _duplicate(batch, exc) from exc


def _duplicate(batch: Sequence[runs.Run], exc: sa.exc.IntegrityError) -> errors.DuplicateRun:
    """What a refused insert means, naming the run when there was one."""
    keyed = "run_key" in str(exc.orig)
    if len(batch) > 1:
        if keyed:
            return errors.DuplicateRunKey(
                "a run key of this batch was already used by its instigator"
            )
        return errors.DuplicateRun("a run id of this batch already exists")
    run = batch[0]
    if keyed and run.run_key is not None:
        return errors.DuplicateRunKey(
            f"{run.instigator!r} already submitted a run with run key {run.run_key!r}"
        )
    return errors.DuplicateRun(f"a run with id {run.run_id!r} already exists")


async def _check_run_exists(conn: sa_asyncio.AsyncConnection, run_id: str) -> None:
    query = sa.select(schema.runs.c.run_id).where(schema.runs.c.run_id == run_id)
    if (await conn.execute(query)).first() is None:
        raise store.unknown_run(run_id)


async def _load_tags(
    conn: sa_asyncio.AsyncConnection, run_ids: Sequence[str]
) -> dict[str, dict[str, str]]:
    table = schema.run_tags
    tags: dict[str, dict[str, str]] = {}
    query = sa.select(table.c.run_id, table.c.key, table.c.value)
    for chunk in _chunks(run_ids):
        for run_id, key, value in await conn.execute(query.where(table.c.run_id.in_(chunk))):
            tags.setdefault(run_id, {})[key] = value
    return tags


async def _load_runs(conn: sa_asyncio.AsyncConnection, query: sa.Select[Any]) -> list[runs.Run]:
    found = (await conn.execute(query)).all()
    tags = await _load_tags(conn, [row.run_id for row in found])
    return [rows.run_from_row(row, tags.get(row.run_id, {})) for row in found]


async def _load_queued(conn: sa_asyncio.AsyncConnection, run_ids: Sequence[str]) -> list[runs.Run]:
    """The runs with these ids that are still QUEUED, with their tags (in no given order)."""
    found: list[runs.Run] = []
    for chunk in _chunks(run_ids):
        query = sa.select(schema.runs).where(schema.runs.c.run_id.in_(chunk), _is_queued)
        found += await _load_runs(conn, query)
    return found


async def _load_in_flight_tags(conn: sa_asyncio.AsyncConnection) -> list[Mapping[str, str]]:
    tags: dict[str, dict[str, str]] = {}
    for run_id, key, value in await conn.execute(_in_flight_query):
        run_tags = tags.setdefault(run_id, {})
        if key is not None:
            run_tags[key] = value
    return list(tags.values())


async def _move_to_starting(
    conn: sa_asyncio.AsyncConnection,
    chosen: Sequence[str],
    now: float,
    queued: Sequence[runs.Run],
    claimer: str,
) -> list[runs.Run]:
    """QUEUED -> STARTING for the chosen runs still QUEUED; the runs as stored, in order.

    Ids that were not read as QUEUED, and repeats, are skipped.
    """
    by_id = {run.run_id: run for run in queued}
    run_ids = [run_id for run_id in dict.fromkeys(chosen) if run_id in by_id]
    table = schema.runs
    moved: dict[str, sa.Row[Any]] = {}
    launch = _new_launch(claimer)  # one token a claim: the guard is (run id, token)
    for chunk in _chunks(run_ids):
        statement = (
            sa.update(table)
            .where(table.c.run_id.in_(chunk), table.c.status == S.QUEUED.value)
            .values(status=S.STARTING.value, updated_at=now, **launch)
            .returning(*table.c)
        )
        moved.update((row.run_id, row) for row in await conn.execute(statement))
    return [
        rows.run_from_row(moved[run_id], by_id[run_id].tags)
        for run_id in run_ids
        if run_id in moved
    ]


def _claim_event(run_id: str, now: float, claimer: str) -> events.NewEvent:
    return events.NewEvent(
        run_id=run_id,
        event_type=events.EventType.RUN_STARTING,
        timestamp=now,
        message=f"claimed by {claimer} for launch",
        data={"claimer": claimer},
    )


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _runs_query(run_filter: store.RunFilter) -> sa.Select[Any]:
    table = schema.runs
    query = sa.select(table).order_by(table.c.created_at.desc(), table.c.run_id.desc())
    if run_filter.statuses:
        query = query.where(table.c.status.in_(_as_statuses(run_filter.statuses)))
    if run_filter.job_name is not None:
        query = query.where(table.c.job_name == run_filter.job_name)
    if run_filter.root_run_id is not None:
        query = query.where(table.c.root_run_id == run_filter.root_run_id)
    for key, value in run_filter.tags.items():
        query = query.where(_has_tag(key, value))
    if run_filter.limit is not None:
        query = query.limit(run_filter.limit)
    return query


def _has_tag(key: str, value: str) -> sa.Exists:
    tags = schema.run_tags
    return sa.exists().where(
        tags.c.run_id == schema.runs.c.run_id, tags.c.key == key, tags.c.value == value
    )


def _events_query(
    after_id: int, limit: int | None, event_types: Collection[events.EventType]
) -> sa.Select[Any]:
    table = schema.event_log
    query = sa.select(table).where(table.c.id > after_id).order_by(table.c.id)
    if event_types:
        query = query.where(table.c.event_type.in_([t.value for t in event_types]))
    if limit is not None:
        query = query.limit(limit)
    return query


def _as_batch(event: events.NewEvent | Sequence[events.NewEvent] | None) -> list[events.NewEvent]:
    if event is None:
        return []
    if isinstance(event, events.NewEvent):
        return [event]
    return list(event)


def _as_statuses(
    statuses: runs.RunStatus | Collection[runs.RunStatus],
) -> list[runs.RunStatus]:
    if isinstance(statuses, runs.RunStatus):
        return [statuses]
    return list(statuses)


# the worker template's warm-up -------------------------------------------------------------
def warm_up() -> None:
    """Run a run worker's statements once, so that the processes forked after inherit
    what running them teaches SQLAlchemy and the interpreter (see `vigil.worker.template`).

    On an in-memory SQLite database through the synchronous driver, then compiled for
    PostgreSQL as well: no thread, no event loop, no connection or file left behind.
    """
    engine = sa.create_engine("sqlite://")
    try:
        schema.metadata.create_all(engine)
        with engine.begin() as conn:
            statements = _warm_up_run(conn)
    finally:
        engine.dispose()
    pg_dialect = postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]
    for statement in statements:
        statement.compile(dialect=pg_dialect)
    _warm_up_engines()


def _warm_up_engines() -> None:
    """Build (never connect) the async engines a worker builds, and drop them."""
    # A file URI names no directory to create; nothing connects, so nothing is opened.
    memory = sa.engine.URL.create("sqlite+aiosqlite", database="file:vigil-warm-up")
    server = sa.engine.URL.create("postgresql+asyncpg", host="127.0.0.1", database="warm-up")
    for url in (memory, server):
        target_mod.create_engine(target_mod.StoreTarget(url, ping_after_idle=1.0))


_Statement = sa.Insert | sa.Update | sa.Select[Any]
_WARM_TOKEN = "warm-up"  # noqa: S105 - a launch token, not a secret


def _warm_up_run(conn: sa.Connection) -> list[_Statement]:
    """A run's life in the worker's statements; the statements, to compile them again."""
    run = runs.Run(
        "warm-up",
        "job",
        S.STARTING,
        tags={"k": "v"},
        root_run_id="warm-up",
        launch_token=_WARM_TOKEN,
    )
    tag_rows = [{"run_id": run.run_id, "key": "k", "value": "v"}]
    update = store.RunUpdate(start_time=1.0, worker_host="host", worker_pid=1, worker_heartbeat=1.0)
    event = events.NewEvent(run.run_id, events.EventType.RUN_START, 1.0, message="warm-up")
    statements: list[_Statement] = [
        sa.insert(schema.runs).values(rows.run_values(run)),
        _start_statement(run.run_id, 1.0, update, _WARM_TOKEN),
        sa.select(schema.run_tags).where(schema.run_tags.c.run_id.in_([run.run_id])),
        _beat_statement(run.run_id, _WARM_TOKEN, 1.5),
        _end_statement(run.run_id, [S.STARTED], S.SUCCESS, 2.0, _WARM_TOKEN),
        _run_query(run.run_id),
        schema_version.version_query,
    ]
    conn.execute(statements[0])
    conn.execute(_insert_tags, tag_rows)
    rows.run_from_row(conn.execute(statements[1]).one(), {"k": "v"})
    conn.execute(statements[2]).all()
    conn.execute(_insert_events, rows.event_values([event]))
    conn.execute(_insert_events, rows.event_values([event, event]))
    assert conn.execute(statements[3]).rowcount == 1
    assert conn.execute(statements[4]).rowcount == 1
    rows.run_from_row(conn.execute(statements[5]).one(), {})
    notice = sa.select(sa.func.pg_notify(wakeup.CHANNEL, run.run_id))
    return [*statements, _insert_events, _events_order_lock, notice]
