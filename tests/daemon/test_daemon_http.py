"""The real daemon process for machines: /metrics, /healthz, /readyz, and systemd notify."""

from __future__ import annotations

import pathlib
import signal
import socket
from collections.abc import Iterator

import anyio
import pytest

from tests.acceptance.harness import Instance
from tests.daemon.process import BLOCKER, TICKER, Daemons, configure, free_port, http_get
from tests.waiting import eventually


async def answers(
    port: int, path: str, status: int, containing: str = "", deadline: float = 30.0
) -> str:
    """Wait until `path` answers `status` with a body containing `containing`; the body.

    The server may still be starting, and the loops still settling, when the test asks.
    """
    body = ""

    async def reached() -> bool:
        nonlocal body
        try:
            code, body = await anyio.to_thread.run_sync(http_get, port, path)
        except OSError:
            return False
        return code == status and containing in body

    await eventually(reached, deadline)
    return body


async def test_metrics_health_and_readiness_are_served(
    instance: Instance, daemons: Daemons
) -> None:
    port = free_port()
    configure(instance, TICKER, http_port=port)
    daemon = daemons.start()
    await answers(port, "/readyz", 200)
    assert (await answers(port, "/healthz", 200)).startswith("ok: ")
    exposition = await answers(port, "/metrics", 200)
    for sample in (
        'vigil_loop_iterations_total{loop="ticker"}',
        "vigil_daemon_start_time_seconds",
        "vigil_build_info{",
        "vigil_store_errors_total",
        "vigil_runs_launched_total",
    ):
        assert sample in exposition, sample
    assert "run_id" not in exposition
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0


async def test_a_hung_loop_fails_health_as_it_stops_the_watchdog(
    instance: Instance, daemons: Daemons
) -> None:
    port = free_port()
    configure(instance, BLOCKER, http_port=port)
    daemon = daemons.start()
    reason = await answers(port, "/healthz", 503, containing="hung")
    assert reason.startswith("loop blocker is hung: iteration running for ")
    assert reason.count("\n") == 1  # one line
    assert "blocker" in await answers(port, "/readyz", 503, containing="hung")
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0


@pytest.fixture
def notify_socket(tmp_path: pathlib.Path) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0)
    yield sock
    sock.close()


async def test_systemd_hears_ready_watchdog_status_and_stopping(
    sqlite_instance: Instance, daemons: Daemons, notify_socket: socket.socket
) -> None:
    # A daemon stopped in the first moments of its start can hang on SQLite (a known
    # shutdown bug, likelier with more loops); this test is about the notifications.
    configure(sqlite_instance, TICKER, builtin_loops=False)
    env = {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "400000"}
    daemon = daemons.start(env=env)
    heard: list[str] = []

    async def received(fragment: str) -> bool:
        with anyio.move_on_after(0.2):
            await anyio.wait_readable(notify_socket)
        while True:
            try:
                heard.extend(notify_socket.recv(4096).decode().splitlines())
            except BlockingIOError:
                break
        return any(fragment in line for line in heard)

    await eventually(lambda: received("READY=1"))
    await eventually(lambda: received("WATCHDOG=1"))
    assert any(line.startswith("STATUS=") for line in heard)
    daemon.send(signal.SIGTERM)
    await eventually(lambda: received("STOPPING=1"))
    assert await daemon.exit_code() == 0
    assert heard.index("READY=1") < max(i for i, line in enumerate(heard) if line == "WATCHDOG=1")


async def test_idle_slow_and_malformed_clients_never_keep_a_scrape_out(
    sqlite_instance: Instance, daemons: Daemons
) -> None:
    port = free_port()
    configure(sqlite_instance, TICKER, http_port=port, builtin_loops=False)
    daemon = daemons.start()
    await answers(port, "/metrics", 200)
    idle = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(64)]
    try:
        for stream in idle[:8]:  # a few trickle a request, never finishing it
            await stream.send(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        with anyio.fail_after(10):  # generous: an answer takes milliseconds
            status, body = await anyio.to_thread.run_sync(http_get, port, "/metrics")
        assert status == 200
        assert 'vigil_loop_iterations_total{loop="ticker"}' in body
        for data, answer in REFUSED:
            assert (await exchange(port, data)).startswith(answer), data[:40]
    finally:
        for stream in idle:
            await stream.aclose()
    assert (await answers(port, "/healthz", 200)).startswith("ok: ")  # still serving
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0
    assert "Traceback" not in daemon.log()


REFUSED = [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", b"HTTP/1.1 414 "),
    (b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n", b"HTTP/1.1 431 "),
    (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", b"HTTP/1.1 400 "),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"HTTP/1.1 400 "),
    (b"DELETE /metrics HTTP/1.1\r\n\r\n", b"HTTP/1.1 405 "),
]


async def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read the answer until the server closes."""
    received = bytearray()
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(data)
        try:
            while True:
                received += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return bytes(received)
