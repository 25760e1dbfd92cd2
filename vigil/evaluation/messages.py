"""What crosses the pipe between the daemon and an evaluation process: one JSON object a line.

Each message is a frozen type with one codec, `to_json()` and `from_json(data)`, used on
both sides; `from_json` raises `ValueError` naming the field that is missing or wrong. The
process sends first, once:

- `Catalog`: `{"ok": true, "location", "schedules": [...], "sensors": [...], "jobs":
  [JobInfo]}`, the `describe()` of each schedule and sensor and each job's `JobInfo`
  `{name, description, steps: [{name, inputs}] in topological order, tags, partitions}`
  (`partitions` the `describe()` of its partitions, or null); or
  `LoadFailure`: `{"ok": false, "error"}` when the code location failed to load (the
  process then exits).

Then the daemon writes one request a line (`request_from_json` reads any of them):

- `ScheduleRequest`: `{"kind": "schedule", "name", "scheduled_time"}`
- `SensorRequest`: `{"kind": "sensor", "name", "cursor", "last_run_key", "last_tick_time"}`
- `RunStatusRequest`: `{"kind": "run_status", "name", "items": [RunStatusItem], "new_cursor"}`
  with each `RunStatusItem` `{run_id, job_name, status, tags, event_id, timestamp, message}`;
  `new_cursor` is the daemon's own (the cursor it commits if the tick ends well).
- `RunCheckRequest`: `{"kind": "run_check", "job", "run_config", "tags"}` (the CLI's: check
  a run before it is submitted)

and the process answers each with one `Answer`: `{"ok": true, "requests": [RequestedRun],
"skip": reason or null, "cursor": str or null, "cursor_updated": bool}` with each
`RequestedRun` `{job, run_config, tags, run_key}`, or `{"ok": false, "error": text}`. A
run check is answered with the one run it checked (its tags merged over the job's), or a
failed answer whose error is one line (`no job named ...`, `run config: ...`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Self

from vigil import partitions as partitions_mod
from vigil import runs

JSON = dict[str, Any]
NONE = type(None)


def _object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def _field(data: Mapping[str, Any], what: str, key: str, *kinds: type) -> Any:
    """`data[key]`, checked to be one of `kinds` (a bool is not a number)."""
    if key not in data:
        raise ValueError(f"{what}: missing field '{key}'")
    value = data[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ValueError(f"{what}: field '{key}' has the wrong type ({value!r})")
    return value


def _text(data: Mapping[str, Any], what: str, key: str) -> str:
    found: str = _field(data, what, key, str)
    return found


def _maybe_text(data: Mapping[str, Any], what: str, key: str) -> str | None:
    found: str | None = _field(data, what, key, str, NONE)
    return found


def _number(data: Mapping[str, Any], what: str, key: str) -> float:
    return float(_field(data, what, key, int, float))


def _list(data: Mapping[str, Any], what: str, key: str) -> list[Any]:
    found: list[Any] = _field(data, what, key, list)
    return found


def _objects(data: Mapping[str, Any], what: str, key: str) -> list[Mapping[str, Any]]:
    return [_object(item, f"{what}: {key}[{i}]") for i, item in enumerate(_list(data, what, key))]


def _strings(data: Mapping[str, Any], what: str, key: str) -> dict[str, str]:
    found = dict(_field(data, what, key, dict))
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        raise ValueError(f"{what}: field '{key}' must map strings to strings")
    return found


def _ok(data: Any, what: str) -> tuple[Mapping[str, Any], bool]:
    found = _object(data, what)
    return found, _field(found, what, "ok", bool)


@dataclasses.dataclass(frozen=True, slots=True)
class StepInfo:
    """One step of a job: its name and the steps whose outputs it takes."""

    name: str
    inputs: tuple[str, ...] = ()

    def to_json(self) -> JSON:
        return {"name": self.name, "inputs": list(self.inputs)}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        found, what = _object(data, "step"), "step"
        inputs = _list(found, what, "inputs")
        if not all(isinstance(i, str) for i in inputs):
            raise ValueError(f"{what}: field 'inputs' must list strings")
        return cls(_text(found, what, "name"), tuple(inputs))


@dataclasses.dataclass(frozen=True, slots=True)
class JobInfo:
    """What the CLI shows and checks of a job without importing it: steps in order, tags."""

    name: str
    steps: tuple[StepInfo, ...] = ()
    description: str | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The `describe()` of the job's partitions (`partitions.from_description`), or None.
    partitions: Mapping[str, Any] | None = None

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def partitions_def(self) -> partitions_mod.PartitionsDef | None:
        """The job's partitions, rebuilt from their description (no user code)."""
        return None if self.partitions is None else partitions_mod.from_description(self.partitions)

    def to_json(self) -> JSON:
        return {
            "name": self.name,
            "steps": [s.to_json() for s in self.steps],
            "description": self.description,
            "tags": dict(self.tags),
            "partitions": None if self.partitions is None else dict(self.partitions),
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        found, what = _object(data, "job"), "job"
        described = found.get("partitions")
        if described is not None and not isinstance(described, Mapping):
            raise ValueError(f"{what}: field 'partitions' has the wrong type ({described!r})")
        return cls(
            _text(found, what, "name"),
            tuple(StepInfo.from_json(s) for s in _objects(found, what, "steps")),
            _maybe_text(found, what, "description"),
            _strings(found, what, "tags"),
            None if described is None else dict(described),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Catalog:
    """What a code location defines: the `describe()` of its schedules and sensors, and
    its jobs."""

    location: str
    schedules: tuple[Mapping[str, Any], ...] = ()
    sensors: tuple[Mapping[str, Any], ...] = ()
    jobs: tuple[JobInfo, ...] = ()

    def to_json(self) -> JSON:
        return {
            "ok": True,
            "location": self.location,
            "schedules": [dict(s) for s in self.schedules],
            "sensors": [dict(s) for s in self.sensors],
            "jobs": [j.to_json() for j in self.jobs],
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        found, ok = _ok(data, "catalog")
        if not ok:
            raise ValueError("catalog: field 'ok' is false (a load failure, not a catalog)")
        return cls(
            _text(found, "catalog", "location"),
            tuple(_objects(found, "catalog", "schedules")),
            tuple(_objects(found, "catalog", "sensors")),
            tuple(JobInfo.from_json(j) for j in _objects(found, "catalog", "jobs")),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class LoadFailure:
    """The code location failed to load: the process's first and last line."""

    error: str

    def to_json(self) -> JSON:
        return {"ok": False, "error": self.error}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        found, ok = _ok(data, "load failure")
        if ok:
            raise ValueError("load failure: field 'ok' is true (a catalog, not a failure)")
        return cls(_text(found, "load failure", "error"))


def loaded_from_json(data: Any) -> Catalog | LoadFailure:
    """The first line of a process: its catalog, or why its code location failed to load."""
    _, ok = _ok(data, "first line")
    return Catalog.from_json(data) if ok else LoadFailure.from_json(data)


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleRequest:
    """Call a schedule's function for its tick at `scheduled_time` (epoch seconds)."""

    name: str
    scheduled_time: float

    def to_json(self) -> JSON:
        return {"kind": "schedule", "name": self.name, "scheduled_time": self.scheduled_time}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        found = _object(data, "schedule request")
        what = "schedule request"
        return cls(_text(found, what, "name"), _number(found, what, "scheduled_time"))


@dataclasses.dataclass(frozen=True, slots=True)
class SensorRequest:
    """Call a sensor's function with its stored cursor, last run key and last tick time."""

    name: str
    cursor: str | None = None
    last_run_key: str | None = None
    last_tick_time: float | None = None

    def to_json(self) -> JSON:
        return {
            "kind": "sensor",
            "name": self.name,
            "cursor": self.cursor,
            "last_run_key": self.last_run_key,
            "last_tick_time": self.last_tick_time,
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        found, what = _object(data, "sensor request"), "sensor request"
        last_tick = _field(found, what, "last_tick_time", int, float, NONE)
        return cls(
            _text(found, what, "name"),
            _maybe_text(found, what, "cursor"),
            _maybe_text(found, what, "last_run_key"),
            None if last_tick is None else float(last_tick),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RunStatusItem:
    """One run that reached the status a run status sensor watches, and its end event."""

    run_id: str
    job_name: str
    status: runs.RunStatus
    tags: Mapping[str, str]
    event_id: int
    timestamp: float
    message: str

    def to_json(self) -> JSON:
        return {
            "run_id": self.run_id,
            "job_name": self.job_name,
            "status": self.status.value,
            "tags": dict(self.tags),
            "event_id": self.event_id,
            "timestamp": self.timestamp,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        found, what = _object(data, "run status item"), "run status item"
        return cls(
            _text(found, what, "run_id"),
            _text(found, what, "job_name"),
            _status(found, what),
            _strings(found, what, "tags"),
            _field(found, what, "event_id", int),
            _number(found, what, "timestamp"),
            _text(found, what, "message"),
        )


def _status(data: Mapping[str, Any], what: str) -> runs.RunStatus:
    status = _text(data, what, "status")
    try:
        return runs.RunStatus(status)
    except ValueError:
        raise ValueError(f"{what}: field 'status' is not a run status ({status!r})") from None


@dataclasses.dataclass(frozen=True, slots=True)
class RunStatusRequest:
    """Call a run status sensor's function once for each of `items`."""

    name: str
    items: tuple[RunStatusItem, ...] = ()
    new_cursor: str | None = None

    def to_json(self) -> JSON:
        return {
            "kind": "run_status",
            "name": self.name,
            "items": [i.to_json() for i in self.items],
            "new_cursor": self.new_cursor,
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        found, what = _object(data, "run status request"), "run status request"
        return cls(
            _text(found, what, "name"),
            tuple(RunStatusItem.from_json(i) for i in _objects(found, what, "items")),
            _maybe_text(found, what, "new_cursor"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RunCheckRequest:
    """Check a run of `job` with this config and these tags, as `vigil run launch` would
    submit it: the job exists here and the config validates against its steps' models."""

    job: str
    run_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> JSON:
        return {
            "kind": "run_check",
            "job": self.job,
            "run_config": dict(self.run_config),
            "tags": dict(self.tags),
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        found, what = _object(data, "run check request"), "run check request"
        return cls(
            _text(found, what, "job"),
            dict(_field(found, what, "run_config", dict)),
            _strings(found, what, "tags"),
        )


Request = ScheduleRequest | SensorRequest | RunStatusRequest | RunCheckRequest
REQUEST_KINDS: Mapping[str, type[Request]] = {
    "schedule": ScheduleRequest,
    "sensor": SensorRequest,
    "run_status": RunStatusRequest,
    "run_check": RunCheckRequest,
}


def request_from_json(data: Any) -> Request:
    """Any request, by its `kind`."""
    kind = _text(_object(data, "request"), "request", "kind")
    found = REQUEST_KINDS.get(kind)
    if found is None:
        raise ValueError(f"request: field 'kind' is not one of {sorted(REQUEST_KINDS)} ({kind!r})")
    return found.from_json(data)


@dataclasses.dataclass(frozen=True, slots=True)
class RequestedRun:
    """A run the function asked for, its job picked and its config checked by the process."""

    job: str
    run_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    run_key: str | None = None

    def to_json(self) -> JSON:
        return {
            "job": self.job,
            "run_config": dict(self.run_config),
            "tags": dict(self.tags),
            "run_key": self.run_key,
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        found, what = _object(data, "requested run"), "requested run"
        return cls(
            _text(found, what, "job"),
            dict(_field(found, what, "run_config", dict)),
            _strings(found, what, "tags"),
            _maybe_text(found, what, "run_key"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """The process's answer to one request: the runs asked for, a skip reason and a sensor's
    cursor; or, when `error` is set, why the function (or the check of its answer) failed."""

    requests: tuple[RequestedRun, ...] = ()
    skip: str | None = None
    cursor: str | None = None
    cursor_updated: bool = False
    error: str | None = None

    @classmethod
    def failed(cls, error: str) -> Self:
        return cls(error=error)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> JSON:
        if self.error is not None:
            return {"ok": False, "error": self.error}
        return {
            "ok": True,
            "requests": [r.to_json() for r in self.requests],
            "skip": self.skip,
            "cursor": self.cursor,
            "cursor_updated": self.cursor_updated,
        }

    @classmethod
    def from_json(cls, data: Any) -> Self:
        found, ok = _ok(data, "answer")
        if not ok:
            return cls.failed(_text(found, "answer", "error"))
        return cls(
            tuple(RequestedRun.from_json(r) for r in _objects(found, "answer", "requests")),
            _maybe_text(found, "answer", "skip"),
            _maybe_text(found, "answer", "cursor"),
            _field(found, "answer", "cursor_updated", bool),
        )
