"""The run task, executed by `vigil celery worker`: one run worker process per run.

The task runs in a Celery pool process and starts the run's `vigil worker run RUN_ID`
(the command the subprocess launcher starts), forked from the pool process's warm worker
template, or as a fresh interpreter if the template is unavailable (`vigil.celery.spawn`),
so a run never shares an interpreter with another. The run worker records its own host and
pid when it starts the run; the task waits for it and ends when the run ends. Celery
terminates a revoked task by signalling its pool process: the task forwards SIGTERM to the
run worker, which ends the run CANCELED, and returns when it has. On Linux the run worker
is killed if the pool process dies, so it never outlives its task (a vanished Celery
worker takes its runs with it).

`RunRequest` is the one codec of what crosses the broker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import socket
import types
from collections.abc import Iterator, Mapping
from typing import Any

import celery
import celery.signals

from vigil.celery import app as app_mod
from vigil.celery import spawn

FORWARDED = (signal.SIGTERM,)


@dataclasses.dataclass(frozen=True, slots=True)
class RunRequest:
    """A run task's message: the run, the launch token its worker must hold, resume or not."""

    run_id: str
    token: str | None
    resume: bool = False

    def to_kwargs(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "token": self.token, "resume": self.resume}

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> RunRequest:
        token = kwargs.get("token")
        return cls(
            run_id=str(kwargs["run_id"]),
            token=None if token is None else str(token),
            resume=bool(kwargs.get("resume", False)),
        )

    @property
    def task_id(self) -> str:
        """One task id per launch: the run and its launch token."""
        return f"{self.run_id}:{self.token or 'untokened'}:{'resume' if self.resume else 'launch'}"


WorkerContext = spawn.WorkerContext


def register(app: celery.Celery, context: WorkerContext) -> None:
    """Register the run task on `app`, running runs with `context`."""

    spawner = spawn.Spawner(context)

    def run(**kwargs: Any) -> dict[str, Any]:
        return execute(context, RunRequest.from_kwargs(kwargs), spawner)

    def warm(**_: Any) -> None:
        spawner.warm()

    def close(**_: Any) -> None:
        spawner.close()

    app.task(name=app_mod.TASK_NAME, acks_late=True, typing=False)(run)
    # Each pool process starts its template as it starts, so the first run is warm too.
    celery.signals.worker_process_init.connect(warm, weak=False)
    celery.signals.worker_process_shutdown.connect(close, weak=False)


def execute(context: WorkerContext, request: RunRequest, spawner: spawn.Spawner) -> dict[str, Any]:
    """Start the run's worker, wait for it (forwarding SIGTERM), return how it ended."""
    log_path = context.logs_dir / request.run_id / "worker.log"
    args = ["worker", "run", request.run_id, *(["--resume"] if request.resume else [])]
    if request.token is not None:
        args += ["--token", request.token]
    child = spawner.start(request.run_id, args, log_path)
    code = _wait_forwarding(child)
    return {
        "run_id": request.run_id,
        "host": socket.gethostname(),
        "pid": child.pid,
        "exit_code": code,
    }


def _wait_forwarding(child: spawn.RunWorker) -> int | None:
    """The child's exit code, SIGTERM forwarded to it meanwhile."""
    with _forwarding(child):
        return child.wait()


@contextlib.contextmanager
def _forwarding(child: spawn.RunWorker) -> Iterator[None]:
    def forward(signum: int, frame: types.FrameType | None) -> None:
        child.signal(signal.SIGTERM)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
