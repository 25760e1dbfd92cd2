"""The daemon's end of one evaluation process: start it, ask it, kill it.

`start` launches `python -m vigil.evaluation.child` with pipes and reads the catalog line;
`call` writes one request line and reads one answer line within a timeout. Each line is
decoded here, once, into the types of `messages`. A process that passes the timeout is
killed (`EvaluationTimeout`); one that exits or breaks the protocol (a line that does not
decode) is an `EvaluationError`. Either way the process is gone and the owner starts a new
one.

The process leads its own process group, and `kill` kills the group: what user code forked
goes with it. With `output`, what the process writes on its stderr (user code's prints
included: the child points its fd 1 there) is read through a pipe by a thread and handed
to `output` line by line, at most OUTPUT_LIMIT bytes per process; the rest is read and
dropped, and one line `... N more bytes of output cut` says so when the pipe closes.
Without it, the process shares the owner's stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from vigil import errors
from vigil.evaluation import messages

MAX_LINE = 64 * 1024 * 1024
OUTPUT_LIMIT = 1024 * 1024  # bytes of a process's output handed on; the rest is cut
OUTPUT_DRAIN = 2.0  # seconds to wait, after a kill, for the output's pipe to close
M = TypeVar("M")
Output = Callable[[str], None]


class EvaluationProcess:
    def __init__(
        self, spec: str, environ: Mapping[str, str], cwd: str, output: Output | None = None
    ) -> None:
        self._spec = spec
        self._environ = dict(environ)
        self._cwd = cwd
        self._output = output
        self._process: anyio.abc.Process | None = None
        self._lines: BufferedByteReceiveStream | None = None
        self._pump: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(
        self,
        timeout: float,  # noqa: ASYNC109 - a process deadline
    ) -> messages.Catalog | messages.LoadFailure:
        """Start the process and return its catalog line (which may say the load failed)."""
        command = [sys.executable, "-m", "vigil.evaluation.child", self._spec]
        read_end, write_end = os.pipe() if self._output is not None else (None, None)
        try:
            self._process = await anyio.open_process(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=write_end,
                cwd=self._cwd,
                env=self._environ,
                start_new_session=True,
            )
        finally:
            if write_end is not None:
                os.close(write_end)
        if read_end is not None and self._output is not None:
            self._pump = threading.Thread(
                target=copy_output, args=(read_end, self._output), daemon=True
            )
            self._pump.start()
        assert self._process.stdout is not None
        self._lines = BufferedByteReceiveStream(self._process.stdout)
        return await self._read(timeout, "loaded its code location", messages.loaded_from_json)

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
        return await self._read(timeout, "answered", messages.Answer.from_json)

    async def _read(
        self,
        timeout: float,  # noqa: ASYNC109
        doing: str,
        decode: Callable[[Any], M],
    ) -> M:
        assert self._lines is not None
        try:
            with anyio.fail_after(timeout):
                line = await self._lines.receive_until(b"\n", MAX_LINE)
        except TimeoutError:
            await self.kill()
            raise errors.EvaluationTimeout(f"timed out after {timeout:g} s") from None
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound) as exc:
            code = await self.kill()
            raise errors.EvaluationError(
                f"the evaluation process {_exit(code)} before it had {doing}"
            ) from exc
        try:
            return decode(json.loads(line))
        except ValueError as exc:
            await self.kill()
            raise errors.EvaluationError(
                f"the evaluation process broke the protocol before it had {doing}: {exc}"
            ) from None

    async def kill(self) -> int | None:
        """Kill the process and its process group, reap it; its exit code."""
        process, self._process = self._process, None
        pump, self._pump = self._pump, None
        if process is None:
            return None
        with anyio.CancelScope(shield=True):
            _kill_group(process.pid)
            code = await process.wait()
            await process.aclose()
            if pump is not None:
                await anyio.to_thread.run_sync(pump.join, OUTPUT_DRAIN)
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


def _exit(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _kill_group(pid: int) -> None:
    """SIGKILL the process's group (it leads it; unreaped, its id cannot be reused)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def copy_output(fd: int, output: Output, limit: int = OUTPUT_LIMIT) -> None:
    """Read `fd` to its end, handing `output` whole lines (a line longer than what is left
    in pieces) until `limit` bytes were handed, then one line counting the bytes cut."""
    bound = _Bound(output, limit)
    pending = b""
    with open(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            if bound.full:
                bound.cut += len(chunk)
                continue
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                bound.hand(line + b"\n")
            if len(pending) >= bound.room:
                bound.hand(pending)
                pending = b""
    bound.hand(pending)
    if bound.cut:
        output(f"... {bound.cut} more bytes of output cut")


class _Bound:
    def __init__(self, output: Output, limit: int) -> None:
        self._output = output
        self.room = limit
        self.cut = 0

    @property
    def full(self) -> bool:
        return self.room <= 0

    def hand(self, data: bytes) -> None:
        if not data:
            return
        kept = data[: max(self.room, 0)]
        if kept:
            self._output(kept.rstrip(b"\n").decode(errors="replace"))
        self.room -= len(kept)
        self.cut += len(data) - len(kept)
