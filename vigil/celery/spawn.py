"""How a Celery pool process starts its run workers: forked from a warm template.

Each pool process of `vigil celery worker` starts its own worker template when the pool
process starts (`vigil worker template --tethered`, the subprocess launcher's template: see
`vigil.worker.template`), and the run task asks it to fork the run's worker: a process of
its own per run, without an interpreter's cold start. The template's exit notices tell the
task how its worker ended.

Lifetimes form a chain: the template belongs to its pool process (it ends when the pool
process closes its stdin or dies, and ignores SIGTERM and SIGINT sent to the Celery
worker's process group), and each worker it forks is SIGKILLed by the kernel when the
template ends (`PR_SET_PDEATHSIG`). So a pool process that dies (a revoke with SIGKILL, a
Celery worker killed) still takes its run worker down, as when the worker was its own
child. Secrets reach the worker on a descriptor, never in its argv or environment.

If the template cannot fork (it failed to start or died), the run worker is started cold,
`python -m vigil worker run ...` as a child of the pool process, and a warning is logged.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping

import psutil

from vigil import errors, filemodes
from vigil.config import secrets
from vigil.launchers import exits, template

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl(2)
POLL = 1.0  # seconds between checks that a forked worker's template still runs


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerContext:
    """Where the Celery worker starts run workers: built by `vigil celery worker`."""

    home: pathlib.Path
    logs_dir: pathlib.Path
    working_directory: pathlib.Path
    environ: Mapping[str, str]
    python: str = sys.executable

    def worker_env(self) -> tuple[dict[str, str], dict[str, str]]:
        """The run worker's environment, and the secret variables it gets on a descriptor."""
        env, secret = secrets.split(dict(self.environ))
        env["VIGIL_HOME"] = str(self.home)
        return env, secret


class RunWorker:
    """A started run worker: its pid, a signal to it, and its exit code when it ends."""

    pid: int

    def signal(self, signum: int) -> None:
        raise NotImplementedError

    def wait(self) -> int | None:
        """Block until the worker ends: its exit code (negative: a signal), None if unknown."""
        raise NotImplementedError


class ColdWorker(RunWorker):
    """A run worker started as a fresh interpreter, a child of the pool process."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self.pid = child.pid
        self._child = child

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._child.send_signal(signum)

    def wait(self) -> int | None:
        return self._child.wait()


class ForkedWorker(RunWorker):
    """A run worker forked by the template; its exit is told by the template's notices."""

    def __init__(
        self, pid: int, since: float, board: exits.ExitBoard, tmpl: template.TemplateClient
    ) -> None:
        self.pid = pid
        self._since = since
        self._board = board
        self._template = tmpl
        self._process = _process(pid)

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def wait(self) -> int | None:
        while True:
            code = self._board.wait_code(self.pid, self._since, POLL)
            if code is not None:
                return code
            if not self._template.alive() and not self._running():
                return None  # the template died, and the kernel killed its worker

    def _running(self) -> bool:
        proc = self._process
        try:
            return proc is not None and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


class Spawner:
    """Starts run workers for the pool process it lives in (one template per process)."""

    def __init__(self, context: WorkerContext) -> None:
        self._context = context
        self._template: template.TemplateClient | None = None
        self._board: exits.ExitBoard | None = None  # made with the template, per process
        self._owner = 0

    def warm(self) -> None:
        """Start this process's template (called when a pool process starts)."""
        try:
            self._client()[0].start()
        except OSError as exc:
            logger.warning("cannot start the worker template: %s", exc)

    def close(self) -> None:
        """Stop this process's template (called when a pool process exits)."""
        if self._template is not None and self._owner == os.getpid():
            self._template.close()

    def _client(self) -> tuple[template.TemplateClient, exits.ExitBoard]:
        """This process's template client and the board of its exit notices (a forked
        pool process makes its own)."""
        if self._template is None or self._board is None or self._owner != os.getpid():
            env, _ = self._context.worker_env()
            self._board = exits.ExitBoard()
            self._template = template.TemplateClient(
                self._context.python,
                env,
                self._context.working_directory,
                self._board.record,
                tethered=True,
            )
            self._owner = os.getpid()
        return self._template, self._board

    def start(self, run_id: str, args: list[str], log_path: pathlib.Path) -> RunWorker:
        """Start the run worker of `vigil <args>`: forked from the template, else cold."""
        filemodes.private_dirs(log_path.parent)
        client, board = self._client()
        env, secret = self._context.worker_env()
        since = time.time()
        try:
            pid = client.spawn(args, env, self._context.working_directory, log_path, secret)
        except (errors.LaunchError, OSError) as exc:
            logger.warning(
                "run %s: worker template unavailable (%s); starting its worker cold",
                run_id,
                exc,
                extra={"event": "run_worker.cold_start", "run_id": run_id, "error": str(exc)},
            )
            return ColdWorker(cold_start(self._context, args, log_path))
        return ForkedWorker(pid, since, board, client)


def cold_start(
    context: WorkerContext, args: list[str], log_path: pathlib.Path
) -> subprocess.Popen[bytes]:
    """`python -m vigil <args>` as a child of this process, dying with it (Linux)."""
    env, secret = context.worker_env()
    secret_fd = secrets.hand_over(secret) if secret else None
    if secret_fd is not None:
        args = [*args, "--secret-fd", str(secret_fd)]
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
                preexec_fn=_die_with_parent(),  # only prctl: safe beside the reader thread
            )
    finally:
        if secret_fd is not None:
            os.close(secret_fd)


def _die_with_parent() -> Callable[[], None] | None:
    """In the child before exec: SIGKILL it when its parent (the pool process) dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    return arm


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
