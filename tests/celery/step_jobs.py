"""Jobs for the celery executor tests. Every step records, in `records/` under the working
directory of the process running it (the Celery worker's), which process ran which attempt:
its pid, its parent (the pool process) and that one's parent (the Celery worker).

- diamond: source -> left, right -> join (join receives both outputs through storage).
- raising: a step that raises.
- killable: source -> patient (retried once): attempt 1 waits to be killed, attempt 2 ends.
- lingering: one step that waits to be canceled.
- routed: plain -> gpu, whose tag sends its task to the Celery queue `gpu`.
- resumable: counted -> stall: stall waits to be killed the first time it runs, in any
  attempt of any run worker, and ends the next (each execution is a line in
  `records/RUN-STEP.runs`).
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import threading

import psutil

from vigil import Definitions, RetryPolicy, StepContext, job, step

RECORDS = "records"


def record(context: StepContext, **extra: object) -> None:
    """Write what this process is, atomically, as RECORDS/RUN-STEP-ATTEMPT.json."""
    directory = pathlib.Path.cwd() / RECORDS
    directory.mkdir(exist_ok=True)
    parent = os.getppid()
    data = {
        "run_id": context.run_id,
        "step": context.step,
        "attempt": context.attempt,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "parent": parent,
        "grandparent": psutil.Process(parent).ppid(),
        **extra,
    }
    name = f"{context.run_id}-{context.step}-{context.attempt}.json"
    scratch = directory / f".{name}"
    scratch.write_text(json.dumps(data))
    scratch.replace(directory / name)


@step
def source(context: StepContext) -> int:
    record(context)
    context.log.info("source computed", value=20)
    return 20


@step
def left(context: StepContext, source: int) -> int:
    record(context, received=source)
    return source + 1


@step
def right(context: StepContext, source: int) -> int:
    record(context, received=source)
    return source * 2


@step
def join(context: StepContext, left: int, right: int) -> int:
    record(context, received=[left, right])
    return left + right


@step
def raising(context: StepContext) -> None:
    record(context)
    raise ValueError("bad input on purpose")


@step(retry=RetryPolicy(max_retries=1))
def patient(context: StepContext, source: int) -> int:
    record(context, received=source)
    if context.attempt == 1:
        threading.Event().wait(600)  # until the test kills this process
    return source + 2


@step
def linger(context: StepContext) -> None:
    record(context)
    threading.Event().wait(600)  # until canceled


@step
def plain(context: StepContext) -> str:
    record(context)
    return "plain"


@step(tags={"vigil/celery_queue": "gpu"})
def gpu(context: StepContext, plain: str) -> str:
    record(context, received=plain)
    return plain + "+gpu"


def executions(run_id: str, step: str, cwd: pathlib.Path | None = None) -> int:
    """How many times the step has started in the run, by the processes working in `cwd`
    (by default this process's working directory)."""
    path = (cwd or pathlib.Path.cwd()) / RECORDS / f"{run_id}-{step}.runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def count_execution(context: StepContext) -> int:
    """Add this execution of the step to its count; the count, this one included."""
    directory = pathlib.Path.cwd() / RECORDS
    directory.mkdir(exist_ok=True)
    with (directory / f"{context.run_id}-{context.step}.runs").open("a") as counts:
        counts.write(f"{os.getpid()}\n")
    return executions(context.run_id, context.step)


@step
def counted(context: StepContext) -> int:
    count_execution(context)
    return 20


@step
def stall(context: StepContext, counted: int) -> int:
    if count_execution(context) == 1:
        threading.Event().wait(600)  # until the test kills this machine
    return counted + 1


defs = Definitions(
    jobs=[
        job("diamond", [source, left, right, join]),
        job("raising", [raising]),
        job("killable", [source, patient]),
        job("lingering", [linger]),
        job("routed", [plain, gpu]),
        job("resumable", [counted, stall]),
    ]
)
