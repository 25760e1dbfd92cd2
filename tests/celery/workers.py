"""Real `vigil celery worker` processes for a test, each in a process group of its own.

A worker is ready when Celery logs that it is; each is stopped by its pid at the end,
its whole group (the pool processes and the run workers they started) with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import subprocess
import sys

from tests.acceptance.harness import Instance
from tests.waiting import eventually

STOP_DEADLINE = 30.0


@dataclasses.dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log_path: pathlib.Path
    stopped: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def ready(self, deadline: float = 60.0) -> None:
        async def up() -> bool:
            assert self.process.poll() is None, f"worker {self.name} exited:\n{self.log()}"
            return f"{self.name} ready." in self.log()

        await eventually(up, deadline, interval=0.1)

    def stop(self) -> None:
        """SIGTERM to the worker's group, SIGKILL to what is left of it at the deadline.
        Once only: a group id, once all its processes are gone, may be another's."""
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_DEADLINE)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # pool processes or run workers left behind
        self.process.wait(STOP_DEADLINE)


class Workers:
    """Starts `vigil celery worker` processes on an instance; `stop_all` stops them."""

    def __init__(self, instance: Instance, logs_dir: pathlib.Path) -> None:
        self.instance = instance
        self._logs_dir = logs_dir
        self._started: list[Worker] = []

    async def start(self, *args: str, name: str | None = None) -> Worker:
        """Start a worker (`args`: its options) and wait until it is ready."""
        worker = self._spawn(name or f"w{len(self._started)}-{os.getpid()}@test", args)
        self._started.append(worker)
        await worker.ready()
        return worker

    def _spawn(self, name: str, args: tuple[str, ...]) -> Worker:
        log_path = self._logs_dir / f"celery-{len(self._started)}.log"
        command = [sys.executable, "-m", "vigil", "celery", "worker", "--name", name, *args]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=self.instance.cwd,
                env=self.instance.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Worker(name, process, log_path)

    def stop_all(self) -> list[Worker]:
        for worker in self._started:
            worker.stop()
        return self._started
