"""`vigil daemon status` and `vigil daemon liveness-check`: reading the heartbeats.

Kept apart from `daemon run` so these answer fast: they import neither the loops nor the
HTTP, metrics and systemd modules.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import click

from vigil import errors
from vigil.cli import common, output
from vigil.daemon import status as status_mod
from vigil.storage import store as store_mod

if TYPE_CHECKING:
    import anyio

FOLLOW_POLL = 1.0  # seconds between two reads of the heartbeats by `status --follow`


@click.command("status")
@click.option("--follow", "-f", is_flag=True, help="Print a line whenever a loop changes.")
@click.option("--json", "as_json", is_flag=True, help="Rows as JSON (one object a line with -f).")
@common.handle_errors
def status(follow: bool, as_json: bool) -> None:
    """One row a loop: state, last iteration, heartbeat age, daemon, last error.

    Then one line a daemon: state, start, heartbeat age, loops, units of work it owns by
    kind."""
    interval = common.heartbeat_interval()
    if not follow:
        _print_rows(common.read_store(lambda store: _read_rows(store, interval)), as_json)
        return

    async def main() -> None:
        import anyio  # only --follow waits: the one-shot answer stays without it

        # Listening before the first rows print: a Ctrl-C right after them ends cleanly.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
            async with common.opened_store(common.state().settings) as store:
                found = await _read_rows(store, interval)
                _print_rows(found, as_json, lines=True)
                await _follow(store, interval, as_json, found, received)

    common.run_async(main)


async def _read_rows(
    store: store_mod.HeartbeatReader, interval: float
) -> list[status_mod.StatusRow]:
    return status_mod.rows(await store.list_heartbeats(), time.time(), interval)


async def _read_beats(store: store_mod.HeartbeatReader) -> list[store_mod.Heartbeat]:
    return await store.list_heartbeats()


def _print_rows(
    found: Sequence[status_mod.StatusRow], as_json: bool, *, lines: bool = False
) -> None:
    """The table; or JSON: an array, or one object a line (`lines`, for --follow)."""
    if not as_json:
        click.echo(status_mod.table(found))
    elif lines:
        for row in found:
            output.emit_line(status_mod.row_dict(row))
    else:
        output.emit([status_mod.row_dict(row) for row in found])


async def _follow(
    store: store_mod.HeartbeatReader,
    interval: float,
    as_json: bool,
    found: Sequence[status_mod.StatusRow],
    received: AsyncIterator[signal.Signals],
) -> None:
    """Print the rows that change, every FOLLOW_POLL seconds, until SIGINT or SIGTERM."""
    import anyio

    seen, _ = status_mod.changes({}, found)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancel_on_signal, received, tg.cancel_scope)
        while True:
            await anyio.sleep(FOLLOW_POLL)
            try:
                rows = await _read_rows(store, interval)
            except errors.StoreUnavailable as exc:
                click.echo(f"store unavailable: {exc}", err=True)
                continue
            seen, changed = status_mod.changes(seen, rows)
            for row in changed:
                _print_change(row, as_json)


def _print_change(row: status_mod.StatusRow, as_json: bool) -> None:
    if as_json:
        output.emit_line(status_mod.row_dict(row))
    else:
        click.echo(status_mod.change_line(row, time.time()))


async def _cancel_on_signal(
    received: AsyncIterator[signal.Signals], scope: anyio.CancelScope
) -> None:
    async for _ in received:
        scope.cancel()
        return


@click.command("liveness-check")
@click.option(
    "--any",
    "any_daemon",
    is_flag=True,
    help="Live while at least one daemon of the instance is (not only this one).",
)
@click.option(
    "--pid",
    type=click.IntRange(min=1),
    default=None,
    help="Check the daemon with this pid on this host (default: every daemon on this host).",
)
@output.option
@common.handle_errors
def liveness_check(any_daemon: bool, pid: int | None, as_json: bool) -> None:
    """Exit 0 ("ok: ...") while this daemon's loops are live; 1 with the reason otherwise.

    This daemon: the daemons whose heartbeats name this host (and --pid); when none ever
    ran on this host, the store's newest and live ones. With --any: exit 0 while at least
    one daemon of the instance is live. Not live: no heartbeats, or a loop (or the daemon)
    down, hung or stopped. For a container HEALTHCHECK or a Kubernetes liveness probe.
    """
    if any_daemon and pid is not None:
        raise click.UsageError("--any and --pid exclude each other: choose one")
    interval = common.heartbeat_interval()
    beats = common.read_store(_read_beats)
    live, line = _judge(beats, interval, any_daemon, pid)
    if as_json:
        output.emit({"live": live, "message": line})
    else:
        click.echo(line)
    if not live:
        raise SystemExit(common.EXIT_FAILURE)


def _judge(
    beats: Sequence[store_mod.Heartbeat], interval: float, any_daemon: bool, pid: int | None
) -> tuple[bool, str]:
    now = time.time()
    if any_daemon:
        return status_mod.liveness_any(status_mod.rows(beats, now, interval))
    host = socket.gethostname()
    mine = status_mod.this_daemon(beats, host, pid)
    missing = f"no heartbeats of a daemon with pid {pid} on {host}" if pid else None
    found = status_mod.rows(mine, now, interval)
    return status_mod.liveness(found, missing or status_mod.NO_HEARTBEATS)
