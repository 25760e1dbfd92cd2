"""Calling schedule and sensor functions and checking their answers (in the child process).

`handle` takes one request and gives one answer, the types of `messages` (where the wire
format is described): the runs asked for, or `Answer.failed` with why: one line naming the
function and what was expected when its answer is wrong (`BadAnswer`), the traceback of
the user's own frames when the function raised. Each requested run's job and config are
checked here, where the code is loaded, so the daemon never imports it.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import time
import traceback
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from vigil import errors, runs
from vigil import partitions as partitions_mod
from vigil.definitions import definitions as definitions_mod
from vigil.definitions import job as job_mod
from vigil.definitions import requests as requests_mod
from vigil.definitions import schedule as schedule_mod
from vigil.definitions import sensor as sensor_mod
from vigil.evaluation import messages

T = TypeVar("T")
_VIGIL_DIR = pathlib.Path(__file__).resolve().parent.parent


class BadAnswer(Exception):
    """A function's answer vigil cannot use; the message names the function and what was
    expected."""


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
    described = None if job.partitions is None else job.partitions.describe()
    return messages.JobInfo(job.name, steps, job.description, dict(job.tags), described)


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
    except BadAnswer as exc:
        return messages.Answer.failed(str(exc))
    except Exception as exc:
        return messages.Answer.failed(_raised(request, exc))


def _raised(request: messages.Request, exc: Exception) -> str:
    """The function's name and error, and the traceback from the user's first frame on."""
    if isinstance(request, messages.RunCheckRequest):  # run_check answers its own errors
        return "".join(traceback.format_exception(exc))
    kind = "schedule" if isinstance(request, messages.ScheduleRequest) else "sensor"
    tb = exc.__traceback__
    while tb is not None and _is_vigil(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    # An error with no user frame at all is vigil's own: its whole traceback is kept.
    shown = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
    return f"{kind} '{request.name}' raised {type(exc).__name__}: {exc}\n{shown}"


def _is_vigil(filename: str) -> bool:
    return pathlib.Path(filename).resolve().is_relative_to(_VIGIL_DIR)


def _schedule(
    defs: definitions_mod.Definitions, request: messages.ScheduleRequest
) -> messages.Answer:
    s = _find(defs.get_schedule(request.name), "schedule", request.name)
    where = f"schedule '{s.name}'"
    when = datetime.datetime.fromtimestamp(request.scheduled_time, s.zone)
    job = defs.get_job(s.job)
    default = None if job.partitions is None else job.partitions.last_complete(when)
    context = schedule_mod.ScheduleContext(s.name, when, default)
    result = s.fn(context) if s.wants_context else s.fn()
    found, skip = normalize(result, where)
    if result is None:
        found = [requests_mod.RunRequest()]
    if job.partitions is not None and found:
        found, skip = _targeted(job, where, found, default, when)
    return _answer(defs, (s.job,), where, found, skip, request.scheduled_time)


def _targeted(
    job: job_mod.JobDef,
    where: str,
    found: list[requests_mod.RunRequest],
    default: str | None,
    when: datetime.datetime,
) -> tuple[list[requests_mod.RunRequest], str | None]:
    """A schedule's requests of a partitioned job, each with its partition: the one it
    names in its tags, or the last complete at the tick; the run key holds the partition.
    Requests that name none when no partition is complete yet are dropped (the tick skips)."""
    targeted: list[requests_mod.RunRequest] = []
    for r in found:
        key = _tags_of(r, where).get(runs.TAG_PARTITION, default)
        if key is None and isinstance(job.partitions, partitions_mod.StaticPartitions):
            raise BadAnswer(
                f"{where}: job '{job.name}' has static partitions: name one in "
                f"RunRequest(tags={{'{runs.TAG_PARTITION}': KEY}})"
            )
        if key is not None:
            run_key = key if r.run_key is None else f"{r.run_key}:{key}"
            tags = {**r.tags, runs.TAG_PARTITION: key}
            targeted.append(dataclasses.replace(r, run_key=run_key, tags=tags))
    if targeted:
        return targeted, None
    return [], f"no partition of job '{job.name}' is complete at {when.isoformat(sep=' ')}"


def _tags_of(request: requests_mod.RunRequest, where: str) -> Mapping[str, Any]:
    if not isinstance(request.tags, Mapping):
        raise BadAnswer(f"{where}: run request tags must be a mapping (got {request.tags!r})")
    return request.tags


def _sensor(defs: definitions_mod.Definitions, request: messages.SensorRequest) -> messages.Answer:
    s = _find(defs.get_sensor(request.name), "sensor", request.name)
    context = sensor_mod.SensorContext(
        s.name, request.cursor, request.last_run_key, request.last_tick_time
    )
    result = s.fn(context) if s.wants_context else s.fn()
    found, skip = normalize(result, f"sensor '{s.name}'")
    answer = _answer(defs, s.jobs, f"sensor '{s.name}'", found, skip, time.time())
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
    return _answer(defs, s.jobs, where, found, None if found else "no run requested", time.time())


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
        return [], _reason(result, where)
    if isinstance(result, requests_mod.RunRequest):
        return [result], None
    if isinstance(result, Iterable) and not isinstance(result, str | bytes | Mapping):
        items = list(result)
        found = [i for i in items if isinstance(i, requests_mod.RunRequest)]
        skips = [_reason(i, where) for i in items if isinstance(i, requests_mod.SkipReason)]
        if len(found) + len(skips) == len(items):
            return found, (skips[0] if skips and not found else None)
    shown = repr(result)
    shown = shown if len(shown) <= 200 else shown[:197] + "..."
    raise BadAnswer(
        f"{where} returned {shown}: expected a RunRequest, a list of them, a SkipReason or None"
    )


def _reason(skip: requests_mod.SkipReason, where: str) -> str:
    if not isinstance(skip.message, str):
        raise BadAnswer(f"{where} returned {skip!r}: a skip reason is a string")
    return skip.message


def _answer(
    defs: definitions_mod.Definitions,
    jobs: tuple[str, ...],
    where: str,
    found: list[requests_mod.RunRequest],
    skip: str | None,
    now: float,
) -> messages.Answer:
    """`now` is when a partition must be complete by (a schedule's: its tick)."""
    checked = tuple(_checked(defs, jobs, where, r, now) for r in found)
    return messages.Answer(checked, skip if not checked else None)


def _checked(
    defs: definitions_mod.Definitions,
    jobs: tuple[str, ...],
    where: str,
    request: requests_mod.RunRequest,
    now: float,
) -> messages.RequestedRun:
    job_name = _job_of(jobs, where, request)
    job = defs.get_job(job_name)
    try:
        job.validate_run_config(request.run_config)
    except errors.RunConfigError as exc:
        raise BadAnswer(f"{where} asked for job '{job_name}' with a bad {exc}") from None
    tags = {**job.tags, **request.tags}
    bad = [k for k, v in tags.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise BadAnswer(f"{where}: run request tags must be strings (bad: {bad})")
    if request.run_key is not None and not isinstance(request.run_key, str):
        raise BadAnswer(f"{where}: a run key must be a string (got {request.run_key!r})")
    _check_partition(job, where, tags.get(runs.TAG_PARTITION), now)
    return messages.RequestedRun(job_name, dict(request.run_config), tags, request.run_key)


def _check_partition(job: job_mod.JobDef, where: str, key: str | None, now: float) -> None:
    """A run of a partitioned job names one of its partitions; others name none."""
    if job.partitions is None:
        if key is not None:
            raise BadAnswer(
                f"{where} asked for partition {key!r} of job '{job.name}', which has no partitions"
            )
        return
    if key is None:
        raise BadAnswer(
            f"{where} asked for partitioned job '{job.name}' without a partition: "
            f"name one in RunRequest(tags={{'{runs.TAG_PARTITION}': KEY}})"
        )
    try:
        job.partitions.check(key, now)
    except errors.PartitionError as exc:
        raise BadAnswer(f"{where} asked for job '{job.name}': {exc}") from None


def _job_of(jobs: tuple[str, ...], where: str, request: requests_mod.RunRequest) -> str:
    if request.job is not None:
        if request.job not in jobs:
            raise BadAnswer(f"{where} asked for job '{request.job}', not one of its jobs {jobs}")
        return request.job
    if len(jobs) != 1:
        raise BadAnswer(f"{where} has jobs {jobs}: name one in RunRequest(job=...)")
    return jobs[0]


def _keyed(request: requests_mod.RunRequest, default: str) -> requests_mod.RunRequest:
    if request.run_key is not None:
        return request
    return requests_mod.RunRequest(default, request.run_config, request.tags, request.job)


def _find(found: T | None, kind: str, name: str) -> T:
    if found is None:
        raise BadAnswer(f"this code location has no {kind} named '{name}'")
    return found
