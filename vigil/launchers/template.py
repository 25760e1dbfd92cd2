"""The launcher's side of the worker template (see `vigil.worker.template`)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from vigil import errors

CLOSE_TIMEOUT = 5.0


class TemplateClient:
    """Starts the template process on first use and asks it to fork workers.

    `spawn` blocks (the first call waits for the template's imports): call it from a
    worker thread in async code. Calls are serialized.
    """

    def __init__(self, python: str, environ: Mapping[str, str], cwd: pathlib.Path) -> None:
        self._argv = [python, "-m", "vigil", "worker", "template"]
        self._environ = dict(environ)
        self._cwd = cwd
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: pathlib.Path, log: pathlib.Path
    ) -> int:
        """Fork a worker running `vigil <argv>`; returns its pid."""
        request = {"argv": list(argv), "env": dict(env), "cwd": str(cwd), "log": str(log)}
        with self._lock:
            reply = self._ask(json.dumps(request))
        if "pid" not in reply:
            raise errors.LaunchError(f"the worker template could not fork: {reply.get('error')}")
        return int(reply["pid"])

    def _ask(self, line: str) -> dict[str, Any]:
        proc = self._running()
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            answer = proc.stdout.readline()
        except OSError as exc:
            answer = ""
            detail = str(exc)
        else:
            detail = "it exited"
        if not answer:
            self._proc = None
            raise errors.LaunchError(f"the worker template is gone ({detail})")
        reply: dict[str, Any] = json.loads(answer)
        return reply

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
        return self._proc

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
        if proc.stdout is not None:
            proc.stdout.close()
