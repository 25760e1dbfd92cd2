"""Calling schedule and sensor functions and checking their answers (in the child process).

`handle` takes one request and gives one answer, the types of `messages` (where the wire
format is described): the runs asked for, or `Answer.failed` with the traceback of the
function (or the check) that failed. Each requested run's job and config are checked here,
where the code is loaded, so the daemon never imports it.
"""

from __future__ import annotations

import dataclasses
import datetime
import traceback
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from vigil import errors
from vigil.definitions import definitions as definitions_mod
from vigil.definitions import job as job_mod
from vigil.definitions import requests as requests_mod
from vigil.definitions import schedule as schedule_mod
from vigil.definitions import sensor as sensor_mod
from vigil.evaluation import messages

T = TypeVar("T")


def catalog(location: str, defs: definitions_mod.Definitions) -> messages.Catalog:
    """The first line a child sends: what its code location defines."""
    return messages.Catalog(
        location,
        tuple(s.describe() for s in defs.schedules),
        tuple(s.describe() for s in defs.sensors),
        tuple(job_info(j) for j in defs.jobs),
    )


def job_info(job: job_mod.JobDef) -> messages.JobInfo:
    steps = tuple(messages.StepInfo(name, job.upstream(name)) for name in job.topological_order())
    return messages.JobInfo(job.name, steps, job.description, dict(job.tags))


def handle(defs: definitions_mod.Definitions, request: messages.Request) -> messages.Answer:
    """Answer one request; any error (the user's or a bad answer) becomes a failed answer."""
    try:
        match request:
            case messages.ScheduleRequest():
                return _schedule(defs, request)
            case messages.SensorRequest():
                return _sensor(defs, request)
            case messages.RunStatusRequest():
                return _run_status(defs, request)
            case messages.RunCheckRequest():
                return run_check(defs, request)
    except Exception:
        return messages.Answer.failed(traceback.format_exc())


def _schedule(
    defs: definitions_mod.Definitions, request: messages.ScheduleRequest
) -> messages.Answer:
    s = _find(defs.get_schedule(request.name), "schedule", request.name)
    when = datetime.datetime.fromtimestamp(request.scheduled_time, s.zone)
    result = s.fn(schedule_mod.ScheduleContext(s.name, when)) if s.wants_context else s.fn()
    found, skip = normalize(result, f"schedule '{s.name}'")
    if result is None:
        found = [requests_mod.RunRequest()]
    return _answer(defs, (s.job,), f"schedule '{s.name}'", found, skip)


def _sensor(defs: definitions_mod.Definitions, request: messages.SensorRequest) -> messages.Answer:
    s = _find(defs.get_sensor(request.name), "sensor", request.name)
    context = sensor_mod.SensorContext(
        s.name, request.cursor, request.last_run_key, request.last_tick_time
    )
    result = s.fn(context) if s.wants_context else s.fn()
    found, skip = normalize(result, f"sensor '{s.name}'")
    answer = _answer(defs, s.jobs, f"sensor '{s.name}'", found, skip)
    return dataclasses.replace(answer, cursor=context.cursor, cursor_updated=context.cursor_updated)


def _run_status(
    defs: definitions_mod.Definitions, request: messages.RunStatusRequest
) -> messages.Answer:
    s = _find(defs.get_sensor(request.name), "sensor", request.name)
    where = f"sensor '{s.name}'"
    found: list[requests_mod.RunRequest] = []
    for item in request.items:
        context = sensor_mod.RunStatusSensorContext(
            sensor_name=s.name,
            run_id=item.run_id,
            job_name=item.job_name,
            status=item.status,
            tags=dict(item.tags),
            event_id=item.event_id,
            event_time=datetime.datetime.fromtimestamp(item.timestamp, datetime.UTC),
            message=item.message,
        )
        made, _ = normalize(s.fn(context) if s.wants_context else s.fn(), where)
        found += [_keyed(r, f"run:{item.run_id}/{i}") for i, r in enumerate(made)]
    return _answer(defs, s.jobs, where, found, None if found else "no run requested")


def run_check(
    defs: definitions_mod.Definitions, request: messages.RunCheckRequest
) -> messages.Answer:
    """The run as it will be submitted (its tags over the job's), or one line saying why not.

    A config model of the user's that raises something else than a validation error is
    reported as a bad run config too, in one line.
    """
    try:
        job = defs.get_job(request.job)
        job.validate_run_config(request.run_config)
    except errors.VigilError as exc:
        return messages.Answer.failed(str(exc))
    except Exception as exc:
        return messages.Answer.failed(f"run config: job '{request.job}': {_one_line(exc)}")
    tags = {**job.tags, **request.tags}
    return messages.Answer((messages.RequestedRun(job.name, dict(request.run_config), tags),))


def _one_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


def normalize(result: Any, where: str) -> tuple[list[requests_mod.RunRequest], str | None]:
    """Run requests and a skip reason from whatever the function returned."""
    if result is None:
        return [], None
    if isinstance(result, requests_mod.SkipReason):
        return [], result.message
    if isinstance(result, requests_mod.RunRequest):
        return [result], None
    if isinstance(result, Iterable) and not isinstance(result, str | bytes | Mapping):
        items = list(result)
        found = [i for i in items if isinstance(i, requests_mod.RunRequest)]
        skips = [i.message for i in items if isinstance(i, requests_mod.SkipReason)]
        if len(found) + len(skips) == len(items):
            return found, (skips[0] if skips and not found else None)
    raise TypeError(
        f"{where} returned {result!r}: expected a RunRequest, a list of them, a SkipReason or None"
    )


def _answer(
    defs: definitions_mod.Definitions,
    jobs: tuple[str, ...],
    where: str,
    found: list[requests_mod.RunRequest],
    skip: str | None,
) -> messages.Answer:
    checked = tuple(_checked(defs, jobs, where, r) for r in found)
    return messages.Answer(checked, skip if not checked else None)


def _checked(
    defs: definitions_mod.Definitions,
    jobs: tuple[str, ...],
    where: str,
    request: requests_mod.RunRequest,
) -> messages.RequestedRun:
    job_name = _job_of(jobs, where, request)
    job = defs.get_job(job_name)
    job.validate_run_config(request.run_config)
    tags = {**job.tags, **request.tags}
    bad = [k for k, v in tags.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"{where}: run request tags must be strings (bad: {bad})")
    if request.run_key is not None and not isinstance(request.run_key, str):
        raise TypeError(f"{where}: a run key must be a string (got {request.run_key!r})")
    return messages.RequestedRun(job_name, dict(request.run_config), tags, request.run_key)


def _job_of(jobs: tuple[str, ...], where: str, request: requests_mod.RunRequest) -> str:
    if request.job is not None:
        if request.job not in jobs:
            raise ValueError(f"{where} asked for job '{request.job}', not one of its jobs {jobs}")
        return request.job
    if len(jobs) != 1:
        raise ValueError(f"{where} has jobs {jobs}: name one in RunRequest(job=...)")
    return jobs[0]


def _keyed(request: requests_mod.RunRequest, default: str) -> requests_mod.RunRequest:
    if request.run_key is not None:
        return request
    return requests_mod.RunRequest(default, request.run_config, request.tags, request.job)


def _find(found: T | None, kind: str, name: str) -> T:
    if found is None:
        raise LookupError(f"this code location has no {kind} named '{name}'")
    return found
