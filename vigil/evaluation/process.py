"""The daemon's end of one evaluation process: start it, ask it, kill it.

`start` launches `python -m vigil.evaluation.child` with pipes and reads the catalog line;
`call` writes one request line and reads one answer line within a timeout. Each line is
decoded here, once, into the types of `messages`. A process that passes the timeout is
killed (`EvaluationTimeout`); one that exits or breaks the protocol (a line that does not
decode) is an `EvaluationError`. Either way the process is gone and the owner starts a new
one.

Whatever user code prints (the child points its fd 1 to fd 2) comes back on a pipe and is
handed to `output` a line at a time, with the instigator being evaluated (`KIND:NAME`),
while the parent waits for a line of the protocol: at most `OUTPUT_LIMIT` bytes in the
life of one process, lines cut at `LINE_LIMIT`; the rest is read and dropped (so the
child never blocks on a full pipe) and counted in one note line.
Nothing user code prints reaches the daemon's or the CLI's own streams unbounded. The
child leads a process group of its own, killed whole with it, so processes user code
forked do not outlive it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from vigil import errors
from vigil.config import secrets
from vigil.evaluation import messages

MAX_LINE = 64 * 1024 * 1024
OUTPUT_LIMIT = 1024 * 1024
LINE_LIMIT = 8 * 1024
EXIT_GRACE = 0.5  # seconds a line may still arrive after the child exited
EXIT_WAIT = 5.0  # seconds a child that closed its pipe has to exit before it is killed
M = TypeVar("M")
Line = Callable[[str], None]
# A line of output and the instigator whose evaluation printed it (None: while loading).
Output = Callable[[str, str | None], None]


class OutputBound:
    """The child's output as lines, at most `limit` bytes of it; the rest only counted."""

    def __init__(self, emit: Line, limit: int = OUTPUT_LIMIT, line_limit: int = LINE_LIMIT):
        self._emit = emit
        self._limit = limit
        self._line_limit = line_limit
        self._partial = b""
        self._passed = 0
        self.dropped = 0
        self._reported = 0

    def feed(self, data: bytes) -> None:
        if self._passed >= self._limit:
            self.dropped += len(data)
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)
        if len(self._partial) > self._line_limit:
            self._line(self._partial)
            self._partial = b""

    def flush(self) -> None:
        """Emit a partial last line, and a note of what was dropped since the last note."""
        if self._partial:
            self._line(self._partial)
            self._partial = b""
        if self.dropped > self._reported:
            self._emit(f"... {self.dropped - self._reported} more bytes of output cut")
            self._reported = self.dropped

    def _line(self, line: bytes) -> None:
        room = self._limit - self._passed
        if room <= 0:
            self.dropped += len(line) + 1
            return
        kept = line[: min(room, self._line_limit)]
        self._passed += len(kept) + 1
        self.dropped += len(line) - len(kept)
        self._emit(kept.decode("utf-8", "replace").rstrip("\r"))


def _ignore(line: str, instigator: str | None) -> None:
    pass


def instigator_of(request: messages.Request) -> str | None:
    """The instigator (`KIND:NAME`) a request evaluates; None for a run check."""
    if isinstance(request, messages.RunCheckRequest):
        return None
    kind = "schedule" if isinstance(request, messages.ScheduleRequest) else "sensor"
    return f"{kind}:{request.name}"


class EvaluationProcess:
    def __init__(
        self, spec: str, environ: Mapping[str, str], cwd: str, output: Output = _ignore
    ) -> None:
        self._spec = spec
        # User code runs there and needs no store: no secret settings variable.
        self._environ = secrets.public(environ)
        self._cwd = cwd
        self._process: anyio.abc.Process | None = None
        self._lines: BufferedByteReceiveStream | None = None
        self._asking: str | None = None  # the instigator of the request being answered
        self._output = OutputBound(lambda line: output(line, self._asking))
        self.started = False  # its code location loaded (its catalog line was read)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(
        self,
        timeout: float,  # noqa: ASYNC109 - a process deadline
    ) -> messages.Catalog | messages.LoadFailure:
        """Start the process and return its catalog line (which may say the load failed)."""
        command = [sys.executable, "-m", "vigil.evaluation.child", self._spec]
        self._process = await anyio.open_process(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self._cwd,
            env=self._environ,
            start_new_session=True,
        )
        assert self._process.stdout is not None
        self._lines = BufferedByteReceiveStream(self._process.stdout)
        hello = await self._read(timeout, "to load its code location", messages.loaded_from_json)
        self.started = True
        return hello

    async def call(
        self,
        request: messages.Request,
        timeout: float,  # noqa: ASYNC109
    ) -> messages.Answer:
        """One request, one answer; kills the process past `timeout` (EvaluationTimeout)."""
        process = self._process
        if process is None or process.stdin is None:
            raise errors.EvaluationError("the evaluation process is not running")
        try:
            await process.stdin.send(json.dumps(request.to_json()).encode() + b"\n")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            await self.kill()
            raise errors.EvaluationError(f"the evaluation process is gone ({exc})") from None
        self._asking = instigator_of(request)
        try:
            return await self._read(timeout, "to answer", messages.Answer.from_json)
        finally:
            self._asking = None

    async def _read(
        self,
        timeout: float,  # noqa: ASYNC109
        doing: str,
        decode: Callable[[Any], M],
    ) -> M:
        assert self._lines is not None
        try:
            with anyio.fail_after(timeout):
                line = await self._receive_line(self._lines)
        except TimeoutError:
            await self.kill()
            raise errors.EvaluationTimeout(f"timed out after {timeout:g} s") from None
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound) as exc:
            ended = not isinstance(exc, anyio.DelimiterNotFound)
            code = await self._exited() if ended else await self.kill()
            raise errors.EvaluationError(
                f"the evaluation process exited ({_exit(code)}) {doing}"
            ) from exc
        try:
            return decode(json.loads(line))
        except ValueError as exc:
            await self.kill()
            raise errors.EvaluationError(
                f"the evaluation process broke the protocol {doing}: {exc}"
            ) from None

    async def _receive_line(self, lines: BufferedByteReceiveStream) -> bytes:
        """The next protocol line, passing the child's output on meanwhile. A child that
        exits ends the wait even when processes it forked still hold its pipe open."""
        line, ended = b"", None
        async with anyio.create_task_group() as tg:
            reading = anyio.CancelScope()
            tg.start_soon(self._pass_output)
            tg.start_soon(self._end_reading_on_exit, reading)
            try:
                with reading:
                    line = await lines.receive_until(b"\n", MAX_LINE)
                if reading.cancelled_caught:
                    raise anyio.EndOfStream
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound) as exc:
                ended = exc  # raised below: a task group would wrap it in a group
            finally:
                tg.cancel_scope.cancel()
                self._output.flush()
        if ended is not None:
            raise ended
        return line

    async def _end_reading_on_exit(self, reading: anyio.CancelScope) -> None:
        process = self._process
        if process is None:
            return
        await process.wait()
        await anyio.sleep(EXIT_GRACE)  # a line written just before the exit is still read
        reading.cancel()

    async def _pass_output(self) -> None:
        process = self._process
        if process is None or process.stderr is None:
            return
        try:
            while True:
                self._output.feed(await process.stderr.receive())
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return

    async def _exited(self) -> int | None:
        """The exit code of a child whose pipe ended: it is exiting (a Python interpreter
        closes its files before it exits, `sys.exit` in user code included), so it is given
        `EXIT_WAIT` to end on its own and say how, and is killed only past that."""
        process = self._process
        if process is not None:
            with anyio.move_on_after(EXIT_WAIT, shield=True):
                await process.wait()
        return await self.kill()

    async def kill(self) -> int | None:
        """Kill the process (if it runs) and reap it; its exit code.

        The process leads its own process group (`start_new_session`): the whole group is
        SIGKILLed, so what user code forked dies with it (also after the leader exited on
        its own: the group id stays reserved while a member lives).
        """
        process, self._process = self._process, None
        if process is None:
            return None
        with anyio.CancelScope(shield=True):
            # Not `process.kill()`: it polls (reaps) the child itself, and the event loop's
            # watcher, finding it gone, reports exit code 255 instead of the real one.
            _kill_group(process.pid)
            code = await process.wait()
            await process.aclose()
        return code

    async def close(self) -> None:
        """Close its stdin so it exits on its own; kill it if it does not within 5 s."""
        process = self._process
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            if process.stdin is not None:
                await process.stdin.aclose()
            with anyio.move_on_after(5):
                await process.wait()
            await self.kill()


def _kill_group(pid: int) -> None:
    """Kill the child and what user code forked: the child leads a process group of its
    own, which it cannot leave (a session leader), and a group id stays reserved while any
    member lives, so it never names another process."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _exit(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"
