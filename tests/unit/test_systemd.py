"""The sd_notify protocol against a real unix datagram socket, as systemd would bind it."""

from __future__ import annotations

import functools
import os
import pathlib
import socket
from collections.abc import Iterator

import anyio
import pytest

from vigil.daemon import systemd


@pytest.fixture
def notify_socket(tmp_path: pathlib.Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX/SOCK_DGRAM socket in tmp_path and its NOTIFY_SOCKET value."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)
        receiver.settimeout(10)
        yield receiver, path


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"vigil-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(b"\0" + name.encode())
        receiver.settimeout(10)
        yield receiver, "@" + name


def received(receiver: socket.socket) -> list[str]:
    """Every datagram waiting on the socket, decoded (the sends are synchronous)."""
    datagrams = []
    receiver.setblocking(False)
    try:
        while True:
            datagrams.append(receiver.recv(4096).decode())
    except BlockingIOError:
        return datagrams
    finally:
        receiver.settimeout(10)


def test_ready_status_watchdog_stopping(notify_socket: tuple[socket.socket, str]) -> None:
    receiver, path = notify_socket
    notifier = systemd.Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("5 loops running")
    assert notifier.status("all 5 loops healthy")
    assert notifier.watchdog()
    assert notifier.reloading()
    assert notifier.stopping("draining, 2 iterations running")
    assert received(receiver) == [
        "READY=1\nSTATUS=5 loops running",
        "STATUS=all 5 loops healthy",
        "WATCHDOG=1",
        "RELOADING=1",
        "STOPPING=1\nSTATUS=draining, 2 iterations running",
    ]


def test_status_is_one_line(notify_socket: tuple[socket.socket, str]) -> None:
    receiver, path = notify_socket
    systemd.Notifier.from_environ({"NOTIFY_SOCKET": path}).status("queue failing\nTraceback...")
    assert received(receiver) == ["STATUS=queue failing"]


def test_abstract_socket(abstract_socket: tuple[socket.socket, str]) -> None:
    receiver, address = abstract_socket
    notifier = systemd.Notifier.from_environ({"NOTIFY_SOCKET": address})
    assert notifier.address == b"\0" + address[1:].encode()
    assert notifier.ready()
    assert received(receiver) == ["READY=1"]


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:99"}])
def test_no_socket_is_a_no_op(environ: dict[str, str]) -> None:
    notifier = systemd.Notifier.from_environ(environ)
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()


def test_a_vanished_socket_is_reported_not_raised(tmp_path: pathlib.Path) -> None:
    notifier = systemd.Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert not notifier.ready()


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    environ: dict[str, str], interval: float | None
) -> None:
    assert systemd.watchdog_interval(environ, pid=4242) == interval


class ManualSleep:
    """The clock's wait: records each wait; the `ticks`-th one blocks until cancelled."""

    def __init__(self, ticks: int) -> None:
        self.ticks = ticks
        self.waits: list[float] = []
        self.done = anyio.Event()

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) == self.ticks:
            self.done.set()
            await anyio.sleep_forever()


async def test_keep_reporting_pings_only_while_healthy(
    notify_socket: tuple[socket.socket, str],
) -> None:
    receiver, path = notify_socket
    notifier = systemd.Notifier.from_environ({"NOTIFY_SOCKET": path})
    health = iter([True, False, True])
    summaries = iter(["3 loops healthy", "loop queue is hung: 95s", "loop queue is hung: 95s"])
    sleep = ManualSleep(ticks=3)
    report = functools.partial(
        systemd.keep_reporting,
        notifier,
        15.0,
        healthy=lambda: next(health),
        summary=lambda: next(summaries),
        watchdog=True,
        sleep=sleep,
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(report)
            await sleep.done.wait()
            group.cancel_scope.cancel()
    assert sleep.waits == [15.0, 15.0, 15.0]
    assert received(receiver) == [
        "WATCHDOG=1\nSTATUS=3 loops healthy",
        "STATUS=loop queue is hung: 95s",  # no ping while a loop is hung
        "WATCHDOG=1",  # the status did not change
    ]


@pytest.mark.parametrize("watchdog", [15.0, None])
async def test_lifecycle_ready_reports_then_stopping(
    notify_socket: tuple[socket.socket, str], watchdog: float | None
) -> None:
    receiver, path = notify_socket
    notifier = systemd.Notifier.from_environ({"NOTIFY_SOCKET": path})
    stop, summary, sleep = anyio.Event(), ["2 loops healthy"], ManualSleep(ticks=1)
    lifecycle = functools.partial(
        systemd.notify_lifecycle,
        notifier,
        summary=lambda: summary[0],
        healthy=lambda: True,
        wait_stopping=stop.wait,
        watchdog_interval=watchdog,
        sleep=sleep,
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(lifecycle)
            await sleep.done.wait()
            summary[0] = "draining: 1 iteration running"
            stop.set()
            await anyio.wait_all_tasks_blocked()
            group.cancel_scope.cancel()
    ping = "WATCHDOG=1\n" if watchdog else ""
    assert received(receiver) == [
        "READY=1\nSTATUS=2 loops healthy",
        f"{ping}STATUS=2 loops healthy",
        "STOPPING=1\nSTATUS=draining: 1 iteration running",
    ]
    assert sleep.waits == [watchdog or systemd.STATUS_INTERVAL]
