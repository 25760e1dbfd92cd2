"""Run retention in SQL: which runs a rule lets go, and the statements that purge them.

`may_go(rule, cursor)` is the whole rule as one condition on a runs row: ended
before its status's time, not an end the retries loop has yet to pass (`cursor`, its
durable cursor, when the rule spares retries), not a run of a backfill still submitting,
and no run of its lineage (the runs sharing its root) that may not go. The purge picks a
batch with it, then deletes those runs that are still ended, in the same transaction.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import dml

from vigil import backfills, events, retention, runs
from vigil.storage import schema

E = events.EventType
_ENDS_RETRIED = (E.RUN_FAILURE.value, E.RUN_CANCELED.value)
_RETRIED_STATUSES = (runs.RunStatus.FAILURE.value, runs.RunStatus.CANCELED.value)
RETRIES_CURSOR_FLAG = "retries.cursor"  # the retries loop's durable cursor (instance flag)

_runs = schema.runs
_events = schema.event_log
_tags = schema.run_tags
_journal = schema.purged_runs


def _ended_in_time(table: sa.FromClause, rule: retention.Rule) -> sa.ColumnElement[bool]:
    """Ended (terminal statuses never change, so `updated_at` is the end) before its time."""
    return sa.or_(
        sa.false(),
        *(
            sa.and_(table.c.status == status.value, table.c.updated_at < before)
            for status, before in sorted(rule.ended_before.items())
        ),
    )


def _awaits_retry(table: sa.FromClause, cursor: int | None) -> sa.ColumnElement[bool]:
    """A FAILURE or CANCELED run whose end event is after the retries loop's cursor."""
    if cursor is None:
        return sa.false()
    end_after = sa.exists().where(
        _events.c.run_id == table.c.run_id,
        _events.c.id > cursor,
        _events.c.event_type.in_(_ENDS_RETRIED),
    )
    return sa.and_(table.c.status.in_(_RETRIED_STATUSES), end_after)


def _in_open_backfill(table: sa.FromClause) -> sa.ColumnElement[bool]:
    """A run of a backfill that is still submitting runs."""
    submitting = schema.backfills.c.status == backfills.BackfillStatus.SUBMITTING.value
    return sa.exists().where(
        _tags.c.run_id == table.c.run_id,
        _tags.c.key == runs.TAG_BACKFILL,
        _tags.c.value == schema.backfills.c.backfill_id,
        submitting,
    )


def _alone_may_go(
    table: sa.FromClause, rule: retention.Rule, cursor: int | None
) -> sa.ColumnElement[bool]:
    return sa.and_(
        _ended_in_time(table, rule),
        sa.not_(_awaits_retry(table, cursor)),
        sa.not_(_in_open_backfill(table)),
    )


def may_go(rule: retention.Rule, cursor: int | None) -> sa.ColumnElement[bool]:
    """The rule on a row of `runs`, its lineage included (see the module docstring)."""
    root = sa.func.coalesce(_runs.c.root_run_id, _runs.c.run_id)
    other = _runs.alias("lineage")
    kept_root = sa.exists().where(
        other.c.run_id == root, sa.not_(_alone_may_go(other, rule, cursor))
    )
    # The lineages with a run that may not go, read once per statement: a lookup per run
    # by `root_run_id` would be planned as a scan where most runs have none (SQLite).
    kept_lineages = sa.select(other.c.root_run_id).where(
        other.c.root_run_id.is_not(None), sa.not_(_alone_may_go(other, rule, cursor))
    )
    return sa.and_(
        _alone_may_go(_runs, rule, cursor), sa.not_(kept_root), root.not_in(kept_lineages)
    )


def batch_query(
    rule: retention.Rule, cursor: int | None, status: runs.RunStatus, limit: int
) -> sa.Select[Any]:
    """The ids of up to `limit` runs of one status that may go, oldest end first: one
    range of the (status, updated_at) index, read until enough are found."""
    ended = sa.and_(_runs.c.status == status.value, _runs.c.updated_at < rule.ended_before[status])
    return (
        sa.select(_runs.c.run_id)
        .where(ended, may_go(rule, cursor))
        .order_by(_runs.c.updated_at, _runs.c.run_id)
        .limit(limit)
    )


def delete_runs(run_ids: list[str]) -> dml.ReturningDelete[Any]:
    """Delete these runs, each only if it is still ended; returns the ids deleted (a run a
    concurrent purge took first is not)."""
    ended = _runs.c.status.in_(sorted(s.value for s in runs.TERMINAL_STATUSES))
    return sa.delete(_runs).where(_runs.c.run_id.in_(run_ids), ended).returning(_runs.c.run_id)


def delete_events(run_ids: list[str]) -> sa.Delete:
    return sa.delete(_events).where(_events.c.run_id.in_(run_ids))


def delete_tags(run_ids: list[str]) -> sa.Delete:
    return sa.delete(_tags).where(_tags.c.run_id.in_(run_ids))


def journal_rows(run_ids: list[str], now: float) -> list[dict[str, Any]]:
    return [{"run_id": run_id, "purged_at": now} for run_id in run_ids]


insert_journal = sa.insert(_journal)


def count_query(rule: retention.Rule, cursor: int | None) -> sa.Select[Any]:
    """How many runs may go now, and how many events they have."""
    chosen = sa.select(_runs.c.run_id).where(may_go(rule, cursor)).subquery()
    events_of = sa.select(sa.func.count()).where(_events.c.run_id.in_(sa.select(chosen.c.run_id)))
    return sa.select(
        sa.select(sa.func.count()).select_from(chosen).scalar_subquery(),
        events_of.scalar_subquery(),
    )


def pending_query(limit: int) -> sa.Select[Any]:
    return (
        sa.select(_journal.c.run_id).order_by(_journal.c.purged_at, _journal.c.run_id).limit(limit)
    )


def forget_statement(run_ids: list[str]) -> sa.Delete:
    return sa.delete(_journal).where(_journal.c.run_id.in_(run_ids))


def cursor_query() -> sa.Select[Any]:
    flags = schema.instance_flags
    return sa.select(flags.c.value).where(flags.c.name == RETRIES_CURSOR_FLAG)
