"""A launcher whose "worker" never starts the run: a process that only sleeps.

It stands for a worker stuck before it could mark its run STARTED (a hung import, a
machine that stalled). Health checks, terminate and kill are the subprocess launcher's.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import psutil

from vigil import launchers, runs


class StuckLauncher(launchers.SubprocessLauncher):
    async def launch(self, run: runs.Run) -> Mapping[str, Any]:
        child = subprocess.Popen(  # noqa: ASYNC220 - a fork+exec, it does not block
            [sys.executable, "-c", "import signal; signal.pause()"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return {
            "launcher": "stuck",
            "host": socket.gethostname(),
            "pid": child.pid,
            "process_start_time": psutil.Process(child.pid).create_time(),
        }
