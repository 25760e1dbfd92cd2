"""The default launcher: each run's worker is a local subprocess in its own session.

No shell is involved; the worker is a new session leader so the CLI or daemon that
launched it may exit; its pid and process start time are recorded, so a reused pid is
never taken for the worker. Those facts are the run's `launcher_info`, a JSON mapping in
the store (other launchers record their own); `ProcessInfo` is this launcher's typed view of
it, the one codec both for writing it and reading it back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

import anyio
import psutil
import pydantic

from vigil import errors, filemodes, runs
from vigil.config import secrets
from vigil.launchers import base, exits, template

START_TIME_TOLERANCE = 0.05  # seconds; psutil rounds the start time to clock ticks
NOTICE_WAIT = 1.0  # seconds to wait for the exit code of a worker of ours being reaped
# The service manager's handles belong to the daemon, never to the workers it launches.
DAEMON_ONLY_ENV = frozenset({"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS"})
# Handles of workers still running when their launcher closed. Workers outlive launchers
# on purpose; keeping the handles stops Python from warning that they are still running.
_OUTLIVING: list[subprocess.Popen[bytes]] = []


class SubprocessOptions(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    python: str = pydantic.Field(default=sys.executable, description="interpreter for workers")
    env: dict[str, str] = pydantic.Field(default_factory=dict, description="extra worker env")
    prefork: bool = pydantic.Field(
        default=True, description="fork workers from a pre-imported template process"
    )


class SubprocessLauncher(base.RunLauncher):
    Options = SubprocessOptions
    supports_resume: ClassVar[bool] = True

    def __init__(self, options: pydantic.BaseModel, context: base.LaunchContext) -> None:
        super().__init__(options, context)
        assert isinstance(options, SubprocessOptions)
        self._opts = options
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._exits = exits.ExitBoard()
        self._template = template.TemplateClient(
            options.python, self._worker_env()[0], context.working_directory, self._exits.record
        )

    async def launch(self, run: runs.Run) -> Mapping[str, Any]:
        return await self._spawn(run, resume=False)

    async def resume(self, run: runs.Run) -> Mapping[str, Any]:
        return await self._spawn(run, resume=True)

    async def _spawn(self, run: runs.Run, resume: bool) -> Mapping[str, Any]:
        self._reap()
        args = ["worker", "run", run.run_id, *(["--resume"] if resume else [])]
        if run.launch_token is not None:
            args += ["--token", run.launch_token]
        log_path = self.context.logs_dir / run.run_id / "worker.log"
        try:
            filemodes.private_dirs(log_path.parent)
            if self._opts.prefork:
                pid = await anyio.to_thread.run_sync(self._fork_from_template, args, log_path)
            else:
                pid = self._popen(args, log_path)
        except OSError as exc:
            raise errors.LaunchError(f"cannot start a worker for run {run.run_id}: {exc}") from exc
        return ProcessInfo(socket.gethostname(), pid, _start_time(pid), str(log_path)).to_info()

    def _fork_from_template(self, args: list[str], log_path: pathlib.Path) -> int:
        env, secret = self._worker_env()
        return self._template.spawn(args, env, self.context.working_directory, log_path, secret)

    def _popen(self, args: list[str], log_path: pathlib.Path) -> int:
        env, secret = self._worker_env()
        secret_fd = secrets.hand_over(secret) if secret else None
        if secret_fd is not None:
            args = [*args, "--secret-fd", str(secret_fd)]
        try:
            child = self._start(args, env, log_path, secret_fd)
        finally:
            if secret_fd is not None:
                os.close(secret_fd)
        self._children[child.pid] = child
        waiter = threading.Thread(
            target=self._await_child, args=(child,), name=f"vigil-wait-{child.pid}", daemon=True
        )
        waiter.start()
        return child.pid

    def _start(
        self, args: list[str], env: dict[str, str], log_path: pathlib.Path, secret_fd: int | None
    ) -> subprocess.Popen[bytes]:
        with filemodes.private_open(log_path, "ab") as log:
            return subprocess.Popen(
                [self._opts.python, "-m", "vigil", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.context.working_directory,
                env=env,
                start_new_session=True,
                close_fds=True,
                pass_fds=() if secret_fd is None else (secret_fd,),
            )

    def _await_child(self, child: subprocess.Popen[bytes]) -> None:
        self._exits.record(child.pid, child.wait())

    def _worker_env(self) -> tuple[dict[str, str], dict[str, str]]:
        """The worker's environment, and the secret variables it gets on a descriptor
        instead (see `vigil.config.secrets`)."""
        env = {k: v for k, v in self.context.environ.items() if k not in DAEMON_ONLY_ENV}
        env["VIGIL_HOME"] = str(self.context.home)
        env.update(self._opts.env)
        return secrets.split(env)

    async def terminate(self, run: runs.Run) -> bool:
        proc = self._worker_process(run)
        if proc is None:
            return False
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            return False
        return True

    async def kill(self, run: runs.Run) -> bool:
        """SIGKILL the worker's process group (the worker leads its own session)."""
        proc = self._worker_process(run)
        if proc is None:
            return False
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        return True

    async def wait_for_exits(self) -> None:
        await self._exits.wait()

    async def close(self) -> None:
        """Stop the template; workers outlive the launcher by design (own sessions)."""
        await anyio.to_thread.run_sync(self._template.close)
        self._reap()
        _OUTLIVING.extend(self._children.values())
        self._children.clear()
        await self._exits.close()

    async def check_worker_health(self, run: runs.Run) -> base.HealthCheck:
        info = ProcessInfo.from_info(run.launcher_info)
        if info.host not in (None, socket.gethostname()):
            return base.HealthCheck(base.WorkerHealth.UNKNOWN, f"worker is on {info.host}")
        if info.pid is None:
            return base.HealthCheck(base.WorkerHealth.UNKNOWN, "no worker pid recorded yet")
        self._reap()
        try:
            proc = self._worker_process(run)
        except psutil.AccessDenied:
            return base.HealthCheck(base.WorkerHealth.UNKNOWN, "no permission to inspect worker")
        if proc is None:
            started = info.process_start_time
            since = started - START_TIME_TOLERANCE if started is not None else None
            code = await self._exit_code(info.pid, since)
            return base.HealthCheck(base.WorkerHealth.DEAD, exits.describe(info.pid, code))
        return base.HealthCheck(base.WorkerHealth.RUNNING, f"pid {proc.pid}")

    async def _exit_code(self, pid: int, since: float | None) -> int | None:
        """How the worker ended, if known; a worker of ours not yet reaped is waited for.

        A worker this launcher started is reaped at once by its parent (the template, or a
        waiter thread here), which records its exit code: a zombie of that parent means the
        code is a moment away.
        """
        code = self._exits.code(pid, since)
        if code is None and self._reaped_by_us(pid):
            code = await anyio.to_thread.run_sync(self._exits.wait_code, pid, since, NOTICE_WAIT)
        return code

    def _reaped_by_us(self, pid: int) -> bool:
        try:
            proc = psutil.Process(pid)
            return proc.status() == psutil.STATUS_ZOMBIE and proc.ppid() in (
                os.getpid(),
                self._template.pid,
            )
        except psutil.Error:
            return False

    def _worker_process(self, run: runs.Run) -> psutil.Process | None:
        """The live worker process, checked by pid and start time; None if gone."""
        info = ProcessInfo.from_info(run.launcher_info)
        if info.pid is None:
            return None
        started = info.process_start_time
        try:
            proc = psutil.Process(info.pid)
            if started is not None and abs(proc.create_time() - started) > START_TIME_TOLERANCE:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.NoSuchProcess:
            return None
        return proc

    def _reap(self) -> None:
        """Forget exited children (their waiter threads reaped them and kept the code)."""
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[pid]


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A worker process as this launcher records it in `launcher_info`."""

    host: str | None
    pid: int | None
    process_start_time: float | None = None
    log: str | None = None

    def to_info(self) -> dict[str, Any]:
        return {
            "launcher": "subprocess",
            "host": self.host,
            "pid": self.pid,
            "process_start_time": self.process_start_time,
            "log": self.log,
        }

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> ProcessInfo:
        """Read back a launcher_info (missing keys: None; a launch not recorded has none)."""
        pid, started, log = info.get("pid"), info.get("process_start_time"), info.get("log")
        return cls(
            host=info.get("host"),
            pid=None if pid is None else int(pid),
            process_start_time=None if started is None else float(started),
            log=None if log is None else str(log),
        )


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None
