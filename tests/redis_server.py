"""A throwaway redis-server on a free loopback port, started and stopped by pid.

Nothing is persisted (`--save ""`, `--appendonly no`); the server's files live in a new
temporary directory, deleted when it stops. `start(port=...)` restarts one on the port a
stopped server had (a broker that went away and came back). A redis service the system
may run is never used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

START_DEADLINE_SECONDS = 30
STOP_DEADLINE_SECONDS = 30


class RedisNotFound(RuntimeError):
    """No redis-server binary: the Celery tests need a real broker."""


@dataclasses.dataclass(frozen=True)
class Server:
    port: int
    directory: pathlib.Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid


def find_binary() -> str:
    found = os.environ.get("VIGIL_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if found is None:
        raise RedisNotFound(
            "the Celery tests need redis-server: install it (apt-get install redis-server) "
            "or set VIGIL_TEST_REDIS_SERVER to its path"
        )
    return found


def start(port: int | None = None) -> Server:
    """Start a server (on `port`, else a free one); ready when it returns."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="vigil-redis-"))
    port = port or _free_port()
    command = [
        find_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--protected-mode", "yes",
    ]  # fmt: skip
    log = (directory / "server.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    log.close()
    server = Server(port=port, directory=directory, process=process)
    try:
        _wait_ready(server)
    except BaseException:
        stop(server)
        raise
    return server


def _wait_ready(server: Server) -> None:
    """Until the server answers PING on its port (or it exits, or the deadline passes)."""
    end = time.monotonic() + START_DEADLINE_SECONDS
    while not _answers(server.port):
        if server.process.poll() is not None:
            log = (server.directory / "server.log").read_text(errors="replace")
            raise RuntimeError(f"redis-server exited ({server.process.returncode}):\n{log}")
        if time.monotonic() > end:
            raise RuntimeError(f"redis-server did not answer on port {server.port}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(0.05)  # a wait on the process, not a sleep


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def stop(server: Server) -> None:
    """Stop the server by its pid (SIGKILL if it does not exit) and delete its directory.
    Stopping it again does nothing (its pid, once reaped, is never signalled)."""
    server.process.send_signal(signal.SIGTERM)  # a no-op once the process was reaped
    try:
        server.process.wait(STOP_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    shutil.rmtree(server.directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
