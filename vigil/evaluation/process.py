"""The daemon's end of one evaluation process: start it, ask it, kill it.

`start` launches `python -m vigil.evaluation.child` with pipes and reads the catalog line;
`call` writes one request line and reads one answer line within a timeout. Each line is
decoded here, once, into the types of `messages`. A process that passes the timeout is
killed (`EvaluationTimeout`); one that exits or breaks the protocol (a line that does not
decode) is an `EvaluationError`. Either way the process is gone and the owner starts a new
one.
"""

from __future__ import annotations

import json
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
M = TypeVar("M")


class EvaluationProcess:
    def __init__(self, spec: str, environ: Mapping[str, str], cwd: str) -> None:
        self._spec = spec
        # User code runs there and needs no store: no secret settings variable.
        self._environ = secrets.public(environ)
        self._cwd = cwd
        self._process: anyio.abc.Process | None = None
        self._lines: BufferedByteReceiveStream | None = None

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
            stderr=None,
            cwd=self._cwd,
            env=self._environ,
        )
        assert self._process.stdout is not None
        self._lines = BufferedByteReceiveStream(self._process.stdout)
        return await self._read(timeout, "to load its code location", messages.loaded_from_json)

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
        return await self._read(timeout, "to answer", messages.Answer.from_json)

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
                f"the evaluation process exited ({_exit(code)}) {doing}"
            ) from exc
        try:
            return decode(json.loads(line))
        except ValueError as exc:
            await self.kill()
            raise errors.EvaluationError(
                f"the evaluation process broke the protocol {doing}: {exc}"
            ) from None

    async def kill(self) -> int | None:
        """Kill the process (if it runs) and reap it; its exit code."""
        process, self._process = self._process, None
        if process is None:
            return None
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
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


def _exit(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"
