"""The systemd notify protocol (`sd_notify`), for a daemon run as a `Type=notify` service.

systemd names a unix datagram socket in `NOTIFY_SOCKET` (a path, or an abstract socket
written with a leading '@'); the service sends newline-separated `KEY=VALUE` assignments to
it: `READY=1`, `STOPPING=1`, `STATUS=...`, `WATCHDOG=1`. Without `NOTIFY_SOCKET` every
call is a no-op, so the daemon calls these unconditionally.

The environment is read once, at the edge: the CLI passes its mapping to
`Notifier.from_environ` and `watchdog_interval`. Children inherit `NOTIFY_SOCKET` unless the
launcher leaves it out of their environment; with `NotifyAccess=main` in the unit systemd
ignores whatever they send anyway.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping

import anyio

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 1.0  # seconds a send may block when systemd's queue is full
STATUS_INTERVAL = 10.0  # seconds between STATUS= updates when no watchdog is set


@dataclasses.dataclass(frozen=True, slots=True)
class Notifier:
    """Sends notifications to `address` (a socket path or an abstract name); None: no-op."""

    address: str | bytes | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        return cls(socket_address(environ.get("NOTIFY_SOCKET", "")))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` assignments in one datagram; True when systemd got them."""
        if self.address is None or not assignments:
            return False
        message = "\n".join(assignments).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendto(message, self.address)
        except OSError as exc:
            logger.warning(
                "cannot notify systemd: %s",
                exc,
                extra={"event": "systemd.notify_failed", "error": str(exc)},
            )
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """The daemon is up (its loops have started)."""
        return self.notify("READY=1", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """The daemon began its shutdown."""
        return self.notify("STOPPING=1", *_status(status))

    def reloading(self) -> bool:
        """The daemon began reloading its configuration; `ready()` again when done."""
        return self.notify("RELOADING=1")

    def status(self, line: str) -> bool:
        """A one-line summary shown by `systemctl status` (only the first line is sent)."""
        return self.notify(*_status(line))

    def watchdog(self) -> bool:
        """Proof of progress: send it only while every loop is healthy."""
        return self.notify("WATCHDOG=1")


def socket_address(value: str) -> str | bytes | None:
    """The address in `NOTIFY_SOCKET`: a path, '@name' (abstract: b'\\0name') or None."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode("utf-8")
    if value:
        logger.warning(
            "NOTIFY_SOCKET=%s is not a unix socket path or abstract name; not notifying",
            value,
            extra={"event": "systemd.unsupported_socket"},
        )
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between two `WATCHDOG=1` pings (half of `WATCHDOG_USEC`), or None.

    None when systemd set no watchdog, when the value is not a positive integer, or when
    `WATCHDOG_PID` names another process (the watchdog is for that process, not this one).
    """
    watchdog_pid = environ.get("WATCHDOG_PID")
    if watchdog_pid is not None and watchdog_pid.strip() != str(pid):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2_000_000


async def notify_lifecycle(
    notifier: Notifier,
    *,
    summary: Callable[[], str],
    healthy: Callable[[], bool],
    wait_stopping: Callable[[], Awaitable[None]],
    watchdog_interval: float | None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> None:
    """A daemon service, started once the loops run; ends only when cancelled.

    READY=1 with `summary()` at once; then every `watchdog_interval` (or `STATUS_INTERVAL`
    without a watchdog) `keep_reporting`; STOPPING=1 as soon as `wait_stopping()` returns,
    reporting on through the drain until the daemon cancels it.
    """
    notifier.ready(summary())
    interval = watchdog_interval or STATUS_INTERVAL
    report = functools.partial(
        keep_reporting,
        notifier,
        interval,
        healthy=healthy,
        summary=summary,
        watchdog=watchdog_interval is not None,
        sleep=sleep,
    )
    async with anyio.create_task_group() as group:
        group.start_soon(report)
        await wait_stopping()
        notifier.stopping(summary())
        await anyio.sleep_forever()


async def keep_reporting(
    notifier: Notifier,
    interval: float,
    *,
    healthy: Callable[[], bool],
    summary: Callable[[], str],
    watchdog: bool,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> None:
    """Every `interval`, forever: WATCHDOG=1 if `watchdog` and `healthy()`; STATUS= when
    `summary()` changed. While `healthy()` is false no ping is sent, so systemd restarts a
    daemon whose loops stopped making progress once `WatchdogSec` passes. `sleep` is the
    clock's wait."""
    shown: str | None = None
    while True:
        assignments = ["WATCHDOG=1"] if watchdog and healthy() else []
        line = summary()
        if line != shown:
            assignments.extend(_status(line))
            shown = line
        notifier.notify(*assignments)
        await sleep(interval)


def _status(line: str | None) -> tuple[str, ...]:
    if line is None:
        return ()
    first = line.strip().splitlines()[0] if line.strip() else ""
    return (f"STATUS={first}",)
