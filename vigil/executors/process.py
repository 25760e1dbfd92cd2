"""One step attempt in its own forked process, seen from both sides.

The parent forks (the worker already has the user's code imported, so the child has it
too), forwards the child's events from a pipe to the sink, and waits for the child's exit
through a pidfd. The child becomes its own process group leader, sends its fd 1 and 2 to
the step's compute-log files, runs the attempt, reports the outcome over the pipe and
leaves with `os._exit`. A child that dies without reporting is a crash: the failure names
its exit code or signal. However the wait ends, the child is stopped and reaped.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import signal
import sys
import threading
from typing import Any, NoReturn

import anyio

from vigil import events, filemodes, proctitle
from vigil.executors import attempt, base
from vigil.executors import plan as plan_mod

_FORK = multiprocessing.get_context("fork")
_EVENT, _RESULT = 0, 1
_DRAIN_BATCH = 512
_CRASH = "StepProcessCrashed"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

Connection = multiprocessing.connection.Connection


async def run_attempt(
    plan: plan_mod.StepPlan,
    step: str,
    number: int,
    services: base.ExecutionServices,
    grace: float,
) -> attempt.Outcome:
    """Fork, follow and reap one attempt of `step`; stop the child if cancelled."""
    reader, writer = _FORK.Pipe(duplex=False)
    proc = _FORK.Process(
        target=_child_main,
        args=(writer, plan, step, number, services, os.getpid()),
        name=f"vigil-step-{step}",
    )
    try:
        proc.start()
    except OSError as exc:
        reader.close()
        return attempt.Failure.from_exception(exc)
    finally:
        writer.close()
    return await _follow_and_reap(proc, reader, _Follower(plan, step, services.sink), grace)


async def _follow_and_reap(
    proc: multiprocessing.context.ForkProcess,
    reader: Connection,
    follower: _Follower,
    grace: float,
) -> attempt.Outcome:
    with contextlib.suppress(OSError):
        os.setpgid(proc.pid or 0, proc.pid or 0)
    exit_fd, own_fd = _exit_fd(proc)
    try:
        await follower.follow(reader, exit_fd)
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(proc, exit_fd, grace)
        exitcode = proc.exitcode
        reader.close()
        if own_fd:
            os.close(exit_fd)
        proc.close()
    return follower.outcome or crash(exitcode)


class _Follower:
    """Forwards a child's events to the sink and keeps the outcome it reports."""

    def __init__(self, plan: plan_mod.StepPlan, step: str, sink: base.EventSink) -> None:
        self._run_id = plan.run_id
        self._step = step
        self._sink = sink
        self.outcome: attempt.Outcome | None = None

    async def follow(self, reader: Connection, exit_fd: int) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump, reader)
            await anyio.wait_readable(exit_fd)
            tg.cancel_scope.cancel()
        self._drain(reader, limit=None)

    async def _pump(self, reader: Connection) -> None:
        while True:
            await anyio.wait_readable(reader.fileno())
            if not self._drain(reader, limit=_DRAIN_BATCH):
                return

    def _drain(self, reader: Connection, limit: int | None) -> bool:
        """Handle what the pipe holds now (up to `limit` messages); False at end of file."""
        handled = 0
        try:
            while (limit is None or handled < limit) and reader.poll():
                self._handle(reader.recv())
                handled += 1
        except EOFError:
            return False
        return True

    def _handle(self, message: tuple[int, Any]) -> None:
        kind, payload = message
        if kind == _RESULT:
            self.outcome = payload
            return
        event_type, timestamp, level, text, data = payload
        self._sink.emit(
            events.NewEvent(
                self._run_id, events.EventType(event_type), timestamp, self._step, level, text, data
            )
        )


def _exit_fd(proc: multiprocessing.context.ForkProcess) -> tuple[int, bool]:
    """A descriptor readable once the child exits: a pidfd, else the process sentinel.

    A pidfd does not depend on the child's descendants closing inherited pipe ends.
    """
    try:
        return os.pidfd_open(proc.pid or 0), True
    except (AttributeError, OSError):
        return proc.sentinel, False


async def _stop(proc: multiprocessing.context.ForkProcess, exit_fd: int, grace: float) -> None:
    """SIGTERM the child's group, SIGKILL it after `grace` seconds, then reap the child."""
    if proc.exitcode is None:
        _signal_group(proc, signal.SIGTERM)
        with anyio.move_on_after(grace):
            await anyio.wait_readable(exit_fd)
        if proc.exitcode is None:
            _signal_group(proc, signal.SIGKILL)
            await anyio.wait_readable(exit_fd)
    proc.join()


def _signal_group(proc: multiprocessing.context.ForkProcess, signum: int) -> None:
    pid = proc.pid or 0
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def crash(exitcode: int | None) -> attempt.Failure:
    """The failure of a step process that exited (code or signal) without reporting."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        message = f"step process was killed by signal {name}"
        return attempt.Failure(_CRASH, message, details={"signal": name})
    message = f"step process exited with code {exitcode} without reporting a result"
    return attempt.Failure(_CRASH, message, details={"exit_code": exitcode})


# --- the child side: everything below runs in the forked process ---------------------------


class _PipeSink:
    """The child's event sink: events go to the parent over the pipe, one lock for threads."""

    def __init__(self, writer: Connection) -> None:
        self._writer = writer
        self._lock = threading.Lock()

    def emit(self, event: events.NewEvent) -> None:
        fields = (event.event_type.value, event.timestamp, event.level, event.message)
        try:
            with self._lock:
                self._writer.send((_EVENT, (*fields, dict(event.data))))
        except OSError:
            raise
        except Exception:  # data that does not pickle: send its text instead
            safe = {key: repr(value) for key, value in event.data.items()}
            with self._lock:
                self._writer.send((_EVENT, (*fields, safe)))

    def report(self, outcome: attempt.Outcome) -> None:
        with self._lock:
            self._writer.send((_RESULT, outcome))


def _child_main(
    writer: Connection,
    plan: plan_mod.StepPlan,
    step: str,
    number: int,
    services: base.ExecutionServices,
    worker_pid: int,
) -> NoReturn:
    _die_with_worker(worker_pid)
    sink = _PipeSink(writer)
    code = 0
    try:
        _prepare_child(services, plan.run_id, step)
        outcome = attempt.run(plan, step, number, services, sink)
    except BaseException as exc:
        outcome = attempt.Failure.from_exception(exc)
    try:
        sink.report(outcome)
    except BaseException:
        code = 1
    _flush_std_streams()
    os._exit(code)


def _die_with_worker(worker_pid: int) -> None:
    """Linux: the kernel SIGKILLs this step process when its worker dies, however it dies.

    A worker killed with SIGKILL cannot stop its steps; without this they would run on,
    orphaned. If the worker is already gone by now, leave at once.
    """
    if proctitle.PRCTL is None:
        return
    proctitle.PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != worker_pid:
        os._exit(1)


def _prepare_child(services: base.ExecutionServices, run_id: str, step: str) -> None:
    proctitle.name_process("s", run_id, step)
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)  # the parent's event loop must not hear our signals
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stdout_path, stderr_path = attempt.log_paths(services.compute_logs_dir, run_id, step)
    for fd, path in ((1, stdout_path), (2, stderr_path)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, filemodes.FILE_MODE)
        os.dup2(target, fd)
        os.close(target)
    # Fresh stream objects: the inherited ones may hold the parent's buffered text or locks.
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
