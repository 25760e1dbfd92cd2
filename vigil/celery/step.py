"""What crosses the broker for one step attempt on the celery executor, and its codec.

`StepRequest` is the step task's message: which attempt of which step of which run, the
code location and job to load, the step's validated config (as JSON), and where each input
is read from (run and digest). `StepReport` is the task's result: the Celery worker's host,
the step process's pid and exit code, the events the attempt emitted (LOG events) and its
outcome, None when the step process died without reporting one. Light: no Celery import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vigil import events
from vigil.executors import attempt

TASK_NAME = "vigil.step"


@dataclasses.dataclass(frozen=True, slots=True)
class StepRequest:
    run_id: str
    code_location: str
    job_name: str
    step: str
    attempt: int
    config: Mapping[str, Any] | None
    inputs: Mapping[str, tuple[str, str]]  # upstream -> (source run, digest)
    partition_key: str | None = None
    terminate_grace: float = 5.0  # SIGTERM to SIGKILL of the step process on revoke

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["inputs"] = {name: list(source) for name, source in self.inputs.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepRequest:
        inputs = {str(k): (str(v[0]), str(v[1])) for k, v in dict(data["inputs"]).items()}
        config = data.get("config")
        return cls(
            run_id=str(data["run_id"]),
            code_location=str(data["code_location"]),
            job_name=str(data["job_name"]),
            step=str(data["step"]),
            attempt=int(data["attempt"]),
            config=None if config is None else dict(config),
            inputs=inputs,
            partition_key=data.get("partition_key"),
            terminate_grace=float(data.get("terminate_grace", 5.0)),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class StepReport:
    host: str
    pid: int | None
    exit_code: int | None
    events: tuple[events.NewEvent, ...]
    outcome: attempt.Outcome | None

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "pid": self.pid,
            "exit_code": self.exit_code,
            "events": [event_to_json(e) for e in self.events],
            "outcome": None if self.outcome is None else outcome_to_json(self.outcome),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], run_id: str, step: str) -> StepReport:
        outcome = data.get("outcome")
        return cls(
            host=str(data.get("host", "")),
            pid=data.get("pid"),
            exit_code=data.get("exit_code"),
            events=tuple(event_from_json(e, run_id, step) for e in data.get("events", ())),
            outcome=None if outcome is None else outcome_from_json(outcome),
        )


def event_to_json(event: events.NewEvent) -> list[Any]:
    return [
        event.event_type.value,
        event.timestamp,
        event.level,
        event.message,
        dict(event.data),
    ]


def event_from_json(fields: list[Any], run_id: str, step: str) -> events.NewEvent:
    kind, timestamp, level, message, data = fields
    return events.NewEvent(
        run_id, events.EventType(kind), float(timestamp), step, str(level), str(message), data
    )


def outcome_to_json(outcome: attempt.Outcome) -> dict[str, Any]:
    if isinstance(outcome, attempt.Success):
        return {"ok": True, "locator": outcome.locator, "type": outcome.type_name,
                "digest": outcome.digest}  # fmt: skip
    return {
        "ok": False,
        "error_type": outcome.error_type,
        "message": outcome.message,
        "traceback": outcome.traceback,
        "details": dict(outcome.details),
    }


def outcome_from_json(data: Mapping[str, Any]) -> attempt.Outcome:
    if data["ok"]:
        return attempt.Success(str(data["locator"]), str(data["type"]), str(data["digest"]))
    return attempt.Failure(
        str(data["error_type"]),
        str(data["message"]),
        str(data.get("traceback", "")),
        dict(data.get("details", {})),
    )
