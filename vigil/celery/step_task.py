"""The step task of the celery executor, executed by `vigil celery worker` beside run tasks.

The task runs in a Celery pool process and starts `python -m vigil worker step` (the step
process, `vigil.worker.step`) in a process group of its own, its stdout and stderr on the
step's compute-log files on this machine, the request and the report in a private
temporary directory. It waits for the step process, then returns a `StepReport`: the
events the attempt emitted and its outcome, or no outcome when the step process died
(the run worker's executor reports that as a crash, with the exit code or signal).

A revoke with termination signals the pool process: SIGTERM goes on to the step process's
group, which gets `terminate_grace` seconds before SIGKILL. On Linux the step process is
killed if the pool process dies, so it never outlives its task.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import types
from typing import Any

import celery

from vigil import filemodes
from vigil.celery import step as step_mod
from vigil.celery import task as task_mod
from vigil.config import secrets
from vigil.executors import attempt
from vigil.worker import step as step_process


class _Terminated(Exception):
    """SIGTERM reached the task while it waited for its step process."""


def register(app: celery.Celery, context: task_mod.WorkerContext) -> None:
    """Register the step task on `app`, starting step processes with `context`."""

    def run_step(**kwargs: Any) -> dict[str, Any]:
        return execute(context, step_mod.StepRequest.from_json(kwargs)).to_json()

    # Acknowledged when it starts: a step task is never given again to another worker
    # (the run worker's executor decides retries); a pool process that dies marks it FAILURE.
    app.task(name=step_mod.TASK_NAME, acks_late=False, typing=False)(run_step)


def execute(context: task_mod.WorkerContext, request: step_mod.StepRequest) -> step_mod.StepReport:
    """Run the step process for `request`, wait for it, read its report."""
    with tempfile.TemporaryDirectory(prefix="vigil-step-") as scratch:
        request_path = pathlib.Path(scratch) / "request.json"
        report_path = pathlib.Path(scratch) / "report.jsonl"
        request_path.write_text(json.dumps(request.to_json()), encoding="utf-8")
        report_path.touch(mode=0o600)
        child = _start(context, request, request_path, report_path)
        code = _wait(child, request.terminate_grace)
        found, outcome = step_process.read_report(report_path)
    return step_mod.StepReport(
        host=socket.gethostname(),
        pid=child.pid,
        exit_code=code,
        events=tuple(step_mod.event_from_json(e, request.run_id, request.step) for e in found),
        outcome=None if outcome is None else step_mod.outcome_from_json(outcome),
    )


def _start(
    context: task_mod.WorkerContext,
    request: step_mod.StepRequest,
    request_path: pathlib.Path,
    report_path: pathlib.Path,
) -> subprocess.Popen[bytes]:
    args = ["worker", "step", "--request", str(request_path), "--report", str(report_path)]
    env, secret = secrets.split(dict(context.environ))
    env["VIGIL_HOME"] = str(context.home)
    secret_fd = secrets.hand_over(secret) if secret else None
    if secret_fd is not None:
        args += ["--secret-fd", str(secret_fd)]
    stdout_path, stderr_path = attempt.log_paths(context.logs_dir, request.run_id, request.step)
    try:
        with (
            filemodes.private_open(stdout_path, "ab") as out,
            filemodes.private_open(stderr_path, "ab") as err,
        ):
            return subprocess.Popen(
                [context.python, "-m", "vigil", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=context.working_directory,
                env=env,
                close_fds=True,
                pass_fds=() if secret_fd is None else (secret_fd,),
                process_group=0,
                preexec_fn=task_mod.die_with_parent(),
            )
    finally:
        if secret_fd is not None:
            os.close(secret_fd)


def _wait(child: subprocess.Popen[bytes], grace: float) -> int:
    """The step process's exit code; on SIGTERM its group is asked to stop, and killed
    after `grace` seconds."""
    try:
        with _raising_on_sigterm():
            return child.wait()
    except _Terminated:
        _signal_group(child, signal.SIGTERM)
    try:
        return child.wait(grace)
    except subprocess.TimeoutExpired:
        _signal_group(child, signal.SIGKILL)
        return child.wait()


@contextlib.contextmanager
def _raising_on_sigterm() -> Any:
    def handler(signum: int, frame: types.FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signum)
