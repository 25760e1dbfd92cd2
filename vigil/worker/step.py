"""The step process of the celery executor: one attempt of one step, in a process of its own.

`vigil worker step` runs here, started by the step task on a Celery worker's machine with
its stdout and stderr on the step's compute-log files. It loads the code location, builds a
one-step plan from the request (inputs read from the storage root by the digests their
runs recorded), runs the attempt, and writes each event and then the outcome to the report
file, one JSON line each, flushed as they come: a process that dies leaves the events it
emitted, and no outcome (the step task reports it as a crash).
"""

from __future__ import annotations

import json
import pathlib
import random
import sys
import threading
import time
from typing import IO, Any

from vigil import blobs, errors, events, proctitle
from vigil.celery import step as step_mod
from vigil.config import settings as settings_mod
from vigil.definitions import job as job_mod
from vigil.definitions import workspace as workspace_mod
from vigil.executors import attempt, base
from vigil.executors import outputs as outputs_mod
from vigil.executors import plan as plan_mod


class ReportSink:
    """Events as JSON lines on the report file (thread-safe), then the outcome."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file
        self._lock = threading.Lock()

    def emit(self, event: events.NewEvent) -> None:
        self._write({"event": step_mod.event_to_json(event)})

    def report(self, outcome: attempt.Outcome) -> None:
        self._write({"outcome": step_mod.outcome_to_json(outcome)})

    def _write(self, line: dict[str, Any]) -> None:
        text = json.dumps(line, default=repr)
        with self._lock:
            self._file.write(text + "\n")
            self._file.flush()


def run(
    settings: settings_mod.InstanceSettings,
    base_dir: pathlib.Path,
    request: step_mod.StepRequest,
    report_path: pathlib.Path,
) -> None:
    """Run the attempt the request names; its events and outcome go to `report_path`."""
    proctitle.name_process("s", request.run_id, request.step)
    with report_path.open("a", encoding="utf-8") as file:
        sink = ReportSink(file)
        try:
            plan = _plan(settings, base_dir, request)
            services = _services(settings, sink)
            outcome = attempt.run(plan, request.step, request.attempt, services, sink)
        except BaseException as exc:
            outcome = attempt.Failure.from_exception(exc)
        sink.report(outcome)
    _upload_logs(settings, request)


def read_report(report_path: pathlib.Path) -> tuple[list[list[Any]], dict[str, Any] | None]:
    """The events and the outcome (None if none was written) a report file holds."""
    found: list[list[Any]] = []
    outcome: dict[str, Any] | None = None
    for line in report_path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut short by a process that died mid-write
            continue
        if "event" in entry:
            found.append(entry["event"])
        elif "outcome" in entry:
            outcome = entry["outcome"]
    return found, outcome


def _plan(
    settings: settings_mod.InstanceSettings,
    base_dir: pathlib.Path,
    request: step_mod.StepRequest,
) -> plan_mod.StepPlan:
    job = _job(settings, base_dir, request)
    configs = {} if request.config is None else {"steps": {request.step: request.config}}
    config = job.validate_run_config(configs)[request.step]
    return plan_mod.StepPlan(
        run_id=request.run_id,
        job=job,
        steps=(request.step,),
        step_configs={request.step: config},
        input_runs={name: source for name, (source, _) in request.inputs.items()},
        input_digests={name: digest for name, (_, digest) in request.inputs.items()},
        partition_key=request.partition_key,
        partition_window=_window(job, request.partition_key),
        code_location=request.code_location,
    )


def _job(
    settings: settings_mod.InstanceSettings,
    base_dir: pathlib.Path,
    request: step_mod.StepRequest,
) -> job_mod.JobDef:
    for location in settings.workspace:
        if location.location_name == request.code_location:
            loaded = workspace_mod.load_location(location, base_dir)
            return loaded.definitions.get_job(request.job_name)
    raise errors.DefinitionError(
        f"run {request.run_id}: code location {request.code_location!r} is not in the "
        "workspace of this Celery worker's vigil.yaml"
    )


def _window(job: job_mod.JobDef, key: str | None) -> Any:
    if key is None or job.partitions is None:
        return None
    return job.partitions.window(key)


def _services(settings: settings_mod.InstanceSettings, sink: ReportSink) -> base.ExecutionServices:
    root = blobs.open_root(settings.outputs_url, "storage_dir")
    return base.ExecutionServices(
        sink=sink,
        outputs=outputs_mod.PickleOutputStore(root),
        compute_logs_dir=settings.compute_logs_dir,
        clock=time.time,
        rand=random.random,
    )


def _upload_logs(settings: settings_mod.InstanceSettings, request: step_mod.StepRequest) -> None:
    """Copy the step's log files to `logs_dir` when it is not a directory of this machine;
    a failure is told on stderr (the logs stay here), the attempt's outcome stands."""
    root = blobs.open_root(settings.compute_logs_url, "logs_dir")
    if root.is_local:
        return
    for path in attempt.log_paths(settings.compute_logs_dir, request.run_id, request.step):
        try:
            if path.is_file():
                root.upload(f"{request.run_id}/{request.step}/{path.name}", path)
        except Exception as exc:
            print(f"vigil: could not upload {path.name} to {root.url}: {exc}", file=sys.stderr)
