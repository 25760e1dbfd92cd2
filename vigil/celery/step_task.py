"""The step task of the celery executor, executed by `vigil celery worker` beside run tasks.

The task runs in a Celery pool process and forks the step process (`vigil.worker.step`):
a process group of its own, killed by the kernel if the pool process dies (Linux), its
stdout and stderr on the step's compute-log files on this machine, its settings built from
the worker's environment with the secret variables taken out of `os.environ` (as a run
worker's are). It imports the code location itself, so each attempt runs the code as it
is now and the pool process never imports user code. The task waits for it, then returns a
`StepReport`: the events the attempt emitted and its outcome, or no outcome when the step
process died (the run worker's executor reports that as a crash, with its signal or exit
code). Request and report pass through a private temporary directory.

A revoke with termination signals the pool process: SIGTERM goes on to the step process's
group, which gets `terminate_grace` seconds before SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import select
import signal
import socket
import sys
import tempfile
import traceback
import types
from collections.abc import Iterator
from typing import Any, NoReturn

import celery

from vigil import filemodes, proctitle
from vigil.celery import spawn
from vigil.celery import step as step_mod
from vigil.config import loader, secrets
from vigil.executors import attempt
from vigil.worker import step as step_process


class _Terminated(Exception):
    """SIGTERM reached the task while it waited for its step process."""


def register(app: celery.Celery, context: spawn.WorkerContext) -> None:
    """Register the step task on `app`, starting step processes with `context`."""

    def run_step(**kwargs: Any) -> dict[str, Any]:
        return execute(context, step_mod.StepRequest.from_json(kwargs)).to_json()

    # Acknowledged when it starts: a step task is never given again to another worker
    # (the run worker's executor decides retries); a pool process that dies marks it FAILURE.
    app.task(name=step_mod.TASK_NAME, acks_late=False, typing=False)(run_step)


def execute(context: spawn.WorkerContext, request: step_mod.StepRequest) -> step_mod.StepReport:
    """Fork the step process for `request`, wait for it, read its report."""
    with tempfile.TemporaryDirectory(prefix="vigil-step-") as scratch:
        report_path = pathlib.Path(scratch) / "report.jsonl"
        report_path.touch(mode=0o600)
        logs = attempt.log_paths(context.logs_dir, request.run_id, request.step)
        pool_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            _child(context, request, report_path, logs, pool_pid)
        code = _wait(pid, request.terminate_grace)
        found, outcome = step_process.read_report(report_path)
    return step_mod.StepReport(
        host=socket.gethostname(),
        pid=pid,
        exit_code=code,
        events=tuple(step_mod.event_from_json(e, request.run_id, request.step) for e in found),
        outcome=None if outcome is None else step_mod.outcome_from_json(outcome),
    )


def _wait(pid: int, grace: float) -> int:
    """The step process's exit code (negative: the signal that killed it); on SIGTERM its
    group is asked to stop, and killed after `grace` seconds."""
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    exit_fd = os.pidfd_open(pid)
    try:
        try:
            with _raising_on_sigterm():
                return _reap(pid)
        except _Terminated:
            _signal_group(pid, signal.SIGTERM)
        ready, _, _ = select.select([exit_fd], [], [], grace)
        if not ready:
            _signal_group(pid, signal.SIGKILL)
        return _reap(pid)
    finally:
        os.close(exit_fd)


def _reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@contextlib.contextmanager
def _raising_on_sigterm() -> Iterator[None]:
    def handler(signum: int, frame: types.FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


# --- the child side: everything below runs in the forked step process ---------------------


def _child(
    context: spawn.WorkerContext,
    request: step_mod.StepRequest,
    report_path: pathlib.Path,
    logs: tuple[pathlib.Path, pathlib.Path],
    pool_pid: int,
) -> NoReturn:
    code = 1
    try:
        _prepare(pool_pid, logs)
        os.chdir(context.working_directory)
        secret = secrets.scrub(os.environ)
        with secrets.overlaid(os.environ, secret):
            settings = loader.load_settings(context.home)
        step_process.run(settings, context.working_directory, request, report_path)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _prepare(pool_pid: int, logs: tuple[pathlib.Path, pathlib.Path]) -> None:
    """Own process group, death with the pool process, default signals, logs on fds 1, 2."""
    os.setpgid(0, 0)
    if proctitle.PRCTL is not None:
        proctitle.PRCTL(spawn.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != pool_pid:
            os._exit(1)
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for fd, path in zip((1, 2), logs, strict=True):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, filemodes.FILE_MODE)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
