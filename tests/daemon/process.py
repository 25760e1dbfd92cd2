"""Drive the real `vigil daemon run` as a process, and the CLI that watches it.

Processes started here are stopped by pid (`Popen.kill`) when the test ends, whatever
happened. Waits are conditions with a deadline (`tests.waiting.eventually`).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import pathlib
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import anyio

from tests.acceptance.harness import Instance
from tests.waiting import eventually

FAST = """\
scheduling:
  enabled: {scheduling}
daemon:
  heartbeat_interval: 0.3
  shutdown_grace: {grace}
  lease_ttl: {lease_ttl}
  restart_backoff: {{base: 0.1, factor: 2, cap: 0.4, jitter: 0.1}}
  loops:
{loops}http:
  enabled: {http_enabled}
  port: {http_port}
"""
TICKER = "    - type: tests.daemon.loops:Ticker\n      options: {interval: 0.2, timeout: 5}\n"
FLAKY = (
    "    - type: tests.daemon.loops:Flaky\n      options: {interval: 0.2, timeout: 5, every: 3}\n"
)
BLOCKER = "    - type: tests.daemon.loops:Blocker\n      options: {interval: 0.2, timeout: 0.6}\n"


def configure(
    instance: Instance,
    *loops: str,
    grace: float = 5.0,
    http_port: int | None = None,
    scheduling: bool = False,
    builtin_loops: bool = True,
    lease_ttl: float = 10.0,
) -> None:
    """Add a fast daemon section naming these test loops to the instance's vigil.yaml.

    HTTP stays off unless a port is given (tests run in parallel with other daemons); the
    scheduler and sensor loops too unless asked for (their own tests turn them on).
    `builtin_loops=False` turns the run monitor and retries loops off. `lease_ttl`: how
    long a killed daemon's work waits for another daemon (many daemons on PostgreSQL).
    """
    path = instance.home / "vigil.yaml"
    section = FAST.format(
        grace=grace,
        loops="".join(loops),
        http_enabled=str(http_port is not None).lower(),
        http_port=http_port or 9464,
        scheduling=str(scheduling).lower(),
        lease_ttl=lease_ttl,
    )
    if not builtin_loops:
        section += "run_monitoring: {enabled: false}\nrun_retries: {enabled: false}\n"
    path.write_text(path.read_text() + section)


@dataclasses.dataclass
class Daemon:
    """One `vigil daemon run` process; its stdout and stderr go to `log_path`."""

    process: subprocess.Popen[bytes]
    log_path: pathlib.Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def exit_code(self, deadline: float = 30.0) -> int:
        async def exited() -> bool:
            return self.process.poll() is not None

        await eventually(exited, deadline)
        return self.process.returncode

    async def logged(self, text: str, deadline: float = 30.0) -> None:
        async def found() -> bool:
            return text in self.log()

        await eventually(found, deadline)


class Daemons:
    """Starts daemons for one test; `stop_all` kills any still running, by pid."""

    def __init__(self, instance: Instance, logs_dir: pathlib.Path) -> None:
        self.instance = instance
        self._logs_dir = logs_dir
        self._started: list[Daemon] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> Daemon:
        log_path = self._logs_dir / f"daemon-{len(self._started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "vigil", "daemon", "run", *args],
                cwd=self.instance.cwd,
                env={**self.instance.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        daemon = Daemon(process, log_path)
        self._started.append(daemon)
        return daemon

    def stop_all(self) -> Iterator[Daemon]:
        for daemon in self._started:
            if daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait(timeout=30)
            yield daemon


async def vigil(instance: Instance, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process(
        [sys.executable, "-m", "vigil", *args],
        cwd=instance.cwd,
        env=instance.env,
        check=False,
    )


async def status_rows(instance: Instance) -> dict[str, dict[str, Any]]:
    """`vigil daemon status --json`, by loop name."""
    done = await vigil(instance, "daemon", "status", "--json")
    assert done.returncode == 0, done.stderr.decode()
    return {row["loop"]: row for row in json.loads(done.stdout)}


async def wait_for_rows(
    instance: Instance, want: dict[str, str], deadline: float = 30.0
) -> dict[str, dict[str, Any]]:
    """Wait until each named loop has the wanted state; returns the rows."""
    rows: dict[str, dict[str, Any]] = {}

    async def reached() -> bool:
        nonlocal rows
        rows = await status_rows(instance)
        return all(rows.get(name, {}).get("state") == state for name, state in want.items())

    try:
        await eventually(reached, deadline)
    except TimeoutError:
        raise AssertionError(f"loops never reached {want}: {rows}") from None
    return rows


def free_port() -> int:
    """A free TCP port on the loopback address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def http_get(port: int, path: str) -> tuple[int, str]:
    """GET a daemon's endpoint on the loopback address: its status and body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()
