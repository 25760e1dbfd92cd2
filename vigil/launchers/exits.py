"""Exits of the workers a launcher started, told to async code the moment they happen.

Threads record exits (the template client's reader, a waiter per Popen child); an async
task waits for the next one. A self-pipe joins the two: a record writes a byte, `wait`
waits until the pipe is readable and drains it. The exit codes are kept (the last
`KEPT`, with when they were recorded) so a health check can say how a worker ended; a code
recorded before a worker started belongs to an earlier process with that pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import anyio

KEPT = 1000


class ExitBoard:
    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._changed = threading.Condition()
        self._codes: dict[int, tuple[int, float]] = {}
        self._closed = False

    def record(self, pid: int, code: int) -> None:
        """A worker exited with `code` (negative: the signal that killed it). Any thread."""
        with self._changed:
            self._codes.pop(pid, None)  # re-inserted last: the oldest go first
            self._codes[pid] = (code, time.time())
            while len(self._codes) > KEPT:
                del self._codes[next(iter(self._codes))]
            self._changed.notify_all()
            if self._closed:
                return
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._write_fd, b"x")

    def code(self, pid: int, started: float | None = None) -> int | None:
        """The exit code of `pid`, if it exited after `started` (the process start time)."""
        with self._changed:
            return self._code(pid, started)

    def _code(self, pid: int, started: float | None) -> int | None:
        code, at = self._codes.get(pid, (None, 0.0))
        if code is None or (started is not None and at < started):
            return None
        return code

    def wait_code(self, pid: int, started: float | None, timeout: float) -> int | None:
        """`code`, waiting up to `timeout` seconds for it to be recorded (blocks a thread)."""
        with self._changed:
            self._changed.wait_for(lambda: self._code(pid, started) is not None, timeout)
            return self._code(pid, started)

    async def wait(self) -> None:
        """Return once an exit was recorded since the last `wait` returned."""
        while not self._drain():
            await anyio.wait_readable(self._read_fd)

    def _drain(self) -> bool:
        got = False
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read_fd, 512):
                got = True
        return got

    async def close(self) -> None:
        with self._changed:
            if self._closed:
                return
            self._closed = True
        anyio.notify_closing(self._read_fd)
        os.close(self._read_fd)
        os.close(self._write_fd)


def describe(pid: int, code: int | None) -> str:
    """How a worker ended, in words: its exit code or the signal that killed it."""
    if code is None:
        return f"worker pid {pid} is gone"
    if code < 0:
        return f"worker pid {pid} was killed by signal {signal.Signals(-code).name}"
    return f"worker pid {pid} exited with code {code}"
