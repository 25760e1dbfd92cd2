"""The launcher's side of the worker template (see `vigil.worker.template`)."""

from __future__ import annotations

import contextlib
import json
import pathlib
import queue
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vigil import errors

CLOSE_TIMEOUT = 5.0
ExitObserver = Callable[[int, int], None]  # (pid, exit code; negative: killed by that signal)


class TemplateClient:
    """Starts the template process on first use and asks it to fork workers.

    `spawn` blocks (the first call waits for the template's imports): call it from a
    worker thread in async code. Calls are serialized. A reader thread takes the template's
    lines: replies go to the waiting `spawn`, exit notices to `on_exit` (in that thread).
    """

    def __init__(
        self,
        python: str,
        environ: Mapping[str, str],
        cwd: pathlib.Path,
        on_exit: ExitObserver | None = None,
        tethered: bool = False,
    ) -> None:
        self._argv = [python, "-m", "vigil", "worker", "template"]
        if tethered:
            self._argv.append("--tethered")
        self._environ = dict(environ)
        self._cwd = cwd
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._replies: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()

    @property
    def pid(self) -> int | None:
        """The template process's pid, while it runs."""
        proc = self._proc
        return proc.pid if proc is not None else None

    def start(self) -> None:
        """Start the template now (it imports meanwhile), not at the first `spawn`."""
        with self._lock:
            self._running()

    def alive(self) -> bool:
        """Whether the template process runs (started and not exited)."""
        proc = self._proc
        return proc is not None and proc.poll() is None

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: pathlib.Path,
        log: pathlib.Path,
        secret: Mapping[str, str] | None = None,
    ) -> int:
        """Fork a worker running `vigil <argv>`; returns its pid. `secret` variables go to
        the worker on a descriptor, never into its environment (`--secret-fd`)."""
        request: dict[str, Any] = {
            "argv": list(argv),
            "env": dict(env),
            "cwd": str(cwd),
            "log": str(log),
        }
        if secret:
            request["secrets"] = dict(secret)
        with self._lock:
            reply = self._ask(json.dumps(request))
        if "pid" not in reply:
            raise errors.LaunchError(f"the worker template could not fork: {reply.get('error')}")
        return int(reply["pid"])

    def _ask(self, line: str) -> dict[str, Any]:
        proc = self._running()
        assert proc.stdin is not None
        try:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
        except OSError as exc:
            self._forget(proc)
            raise errors.LaunchError(f"the worker template is gone ({exc})") from exc
        reply = self._replies.get()
        if reply is None:
            self._forget(proc)
            raise errors.LaunchError("the worker template is gone (it exited)")
        return reply

    def _forget(self, proc: subprocess.Popen[str]) -> None:
        """Drop a template that went away, reaping it (killed if it lingers)."""
        self._proc = None
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _running(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                self._argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,
                cwd=self._cwd,
                env=self._environ,
                text=True,
                close_fds=True,
            )
            self._replies = queue.SimpleQueue()
            reader = threading.Thread(
                target=self._read,
                args=(self._proc, self._replies),
                name="vigil-template-reader",
                daemon=True,
            )
            reader.start()
        return self._proc

    def _read(
        self, proc: subprocess.Popen[str], replies: queue.SimpleQueue[dict[str, Any] | None]
    ) -> None:
        """Until the template's stdout ends: replies to `replies`, exit notices to `on_exit`."""
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                message: dict[str, Any] = json.loads(line)
                if "exited" not in message:
                    replies.put(message)
                elif self._on_exit is not None:
                    self._on_exit(int(message["exited"]), int(message["code"]))
        except (OSError, ValueError):
            pass
        finally:
            replies.put(None)
            proc.stdout.close()

    def close(self) -> None:
        """Stop the template (its workers live on in their own sessions)."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
