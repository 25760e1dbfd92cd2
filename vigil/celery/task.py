"""The run task, executed by `vigil celery worker`: one run worker process per run.

The task runs in a Celery pool process and starts `python -m vigil worker run RUN_ID`
(the same command the subprocess launcher starts), so a run never shares an interpreter
with another. The run worker records its own host and pid when it starts the run; the task
waits for it and ends when the run ends. Celery terminates a revoked task by signalling
its pool process: the task forwards SIGTERM to the run worker, which ends the run CANCELED,
and returns when it has. On Linux the run worker is killed if the pool process dies, so it
never outlives its task (a vanished Celery worker takes its runs with it).

`RunRequest` is the one codec of what crosses the broker.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import celery

from vigil import filemodes
from vigil.celery import app as app_mod
from vigil.config import secrets

PR_SET_PDEATHSIG = 1  # prctl(2)
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


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerContext:
    """Where the Celery worker starts run workers: built by `vigil celery worker`."""

    home: pathlib.Path
    logs_dir: pathlib.Path
    working_directory: pathlib.Path
    environ: Mapping[str, str]
    python: str = sys.executable


def register(app: celery.Celery, context: WorkerContext) -> None:
    """Register the run task on `app`, running runs with `context`."""

    def run(**kwargs: Any) -> dict[str, Any]:
        return execute(context, RunRequest.from_kwargs(kwargs))

    app.task(name=app_mod.TASK_NAME, acks_late=True, typing=False)(run)


def execute(context: WorkerContext, request: RunRequest) -> dict[str, Any]:
    """Start the run's worker, wait for it (forwarding SIGTERM), return how it ended."""
    log_path = context.logs_dir / request.run_id / "worker.log"
    filemodes.private_dirs(log_path.parent)
    child = _start(context, request, log_path)
    code = _wait_forwarding(child)
    return {
        "run_id": request.run_id,
        "host": socket.gethostname(),
        "pid": child.pid,
        "exit_code": code,
    }


def _start(
    context: WorkerContext, request: RunRequest, log_path: pathlib.Path
) -> subprocess.Popen[bytes]:
    args = ["worker", "run", request.run_id, *(["--resume"] if request.resume else [])]
    if request.token is not None:
        args += ["--token", request.token]
    env, secret = secrets.split(dict(context.environ))
    env["VIGIL_HOME"] = str(context.home)
    secret_fd = secrets.hand_over(secret) if secret else None
    if secret_fd is not None:
        args += ["--secret-fd", str(secret_fd)]
    try:
        with filemodes.private_open(log_path, "ab") as log:
            return subprocess.Popen(
                [context.python, "-m", "vigil", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=context.working_directory,
                env=env,
                close_fds=True,
                pass_fds=() if secret_fd is None else (secret_fd,),
                preexec_fn=die_with_parent(),  # the pool process runs no other threads
            )
    finally:
        if secret_fd is not None:
            os.close(secret_fd)


def die_with_parent() -> Callable[[], None] | None:
    """In the child before exec: SIGKILL it when its parent (the pool process) dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    return arm


def _wait_forwarding(child: subprocess.Popen[bytes]) -> int:
    """The child's exit code, SIGTERM forwarded to it meanwhile."""
    with _forwarding(child):
        return child.wait()


@contextlib.contextmanager
def _forwarding(child: subprocess.Popen[bytes]) -> Iterator[None]:
    def forward(signum: int, frame: types.FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
