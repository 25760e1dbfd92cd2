"""Between frozen records and table rows: the values to write and the records read back.

JSON columns take plain dicts and lists; `step_selection` is a tuple in the record and a
list in the row. These run on hot paths, so they do no more than convert.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from vigil import events, runs
from vigil.storage import store

# The runs table has one column per Run field; tags live in their own table.
RUN_COLUMNS = tuple(f.name for f in dataclasses.fields(runs.Run) if f.name != "tags")


def event_values(batch: Sequence[events.NewEvent]) -> list[dict[str, Any]]:
    return [
        {
            "run_id": e.run_id,
            "event_type": e.event_type.value,
            "step": e.step,
            "level": e.level,
            "timestamp": e.timestamp,
            "message": e.message,
            "data": dict(e.data),
        }
        for e in batch
    ]


def heartbeat_values(heartbeat: store.Heartbeat) -> dict[str, Any]:
    values = dataclasses.asdict(heartbeat)
    values["info"] = dict(heartbeat.info)
    return values


def update_values(update: store.RunUpdate) -> dict[str, Any]:
    values = {k: v for k, v in dataclasses.asdict(update).items() if v is not None}
    if "launcher_info" in values:
        values["launcher_info"] = dict(values["launcher_info"])
    return values


def run_values(run: runs.Run) -> dict[str, Any]:
    values = {name: getattr(run, name) for name in RUN_COLUMNS}
    values["status"] = run.status.value
    values["run_config"] = dict(run.run_config)
    values["launcher_info"] = dict(run.launcher_info)
    if run.step_selection is not None:
        values["step_selection"] = list(run.step_selection)
    return values


def run_from_row(row: sa.Row[Any], tags: Mapping[str, str]) -> runs.Run:
    values = row._asdict()
    values["status"] = runs.RunStatus(values["status"])
    if values["step_selection"] is not None:
        values["step_selection"] = tuple(values["step_selection"])
    return runs.Run(tags=dict(tags), **values)


def event_from_row(row: sa.Row[Any]) -> events.Event:
    return events.Event(
        event_id=row.id,
        run_id=row.run_id,
        event_type=events.EventType(row.event_type),
        timestamp=row.timestamp,
        step=row.step,
        level=row.level,
        message=row.message,
        data=row.data,
    )
