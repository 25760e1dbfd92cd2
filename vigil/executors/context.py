"""The context a step receives when it asks for a `context` parameter."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

import pydantic

from vigil import events
from vigil.executors import base


class StepLog:
    """Logs of one step attempt, sent as LOG events; cheap enough for a hot loop."""

    __slots__ = ("_clock", "_run_id", "_sink", "_step")

    def __init__(
        self, sink: base.EventSink, run_id: str, step: str, clock: Callable[[], float]
    ) -> None:
        self._sink = sink
        self._run_id = run_id
        self._step = step
        self._clock = clock

    def debug(self, message: str, **data: Any) -> None:
        self._emit("DEBUG", message, data)

    def info(self, message: str, **data: Any) -> None:
        self._emit("INFO", message, data)

    def warning(self, message: str, **data: Any) -> None:
        self._emit("WARNING", message, data)

    def error(self, message: str, **data: Any) -> None:
        self._emit("ERROR", message, data)

    def _emit(self, level: str, message: str, data: dict[str, Any]) -> None:
        self._sink.emit(
            events.NewEvent(
                self._run_id, events.EventType.LOG, self._clock(), self._step, level, message, data
            )
        )


@dataclasses.dataclass(frozen=True, slots=True)
class StepContext:
    """Who is running (run, job, step, attempt), the step's config, and its log; for a run
    of a partitioned job, its partition key (tag `vigil/partition`) and, for time
    partitions, the key's window [start, end) as aware datetimes in the partitions' zone."""

    run_id: str
    job_name: str
    step: str
    attempt: int
    config: pydantic.BaseModel | None
    log: StepLog
    partition_key: str | None = None
    partition_window: tuple[datetime.datetime, datetime.datetime] | None = None
