"""`vigil queue ...`: the queued runs in launch order, and pausing the queue.

The coordinator and launchers are imported when a command runs, not by `--help`.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import click

from vigil import display, errors
from vigil.cli import common, ids, output
from vigil.coordinators import admission

if TYPE_CHECKING:
    from vigil.coordinators import queued
    from vigil.storage import store as store_mod

T = TypeVar("T")


@click.group("queue", invoke_without_command=True)
@output.option
@click.pass_context
@common.handle_errors
def queue_group(ctx: click.Context, as_json: bool) -> None:
    """List queued runs in launch order, each with the reason it waits."""
    if ctx.invoked_subcommand is not None:
        return
    entries = _queue_entries()
    if as_json:
        output.emit([_entry_dict(e) for e in entries])
        return
    if not entries:
        click.echo("no queued runs")
    for entry in entries:
        why = entry.reason or "launches next"
        job = display.printable(entry.run.job_name)
        click.echo(f"{ids.short(entry.run.run_id)}  {job:<20} {display.printable(why)}")


@queue_group.command("pause")
@output.option
@common.handle_errors
def pause(as_json: bool) -> None:
    """Stop launching queued runs (submissions are still queued)."""
    _with_coordinator(lambda coordinator: coordinator.set_paused(True))
    _print_paused(True, as_json)


@queue_group.command("resume")
@output.option
@common.handle_errors
def resume(as_json: bool) -> None:
    """Launch queued runs again."""
    _with_coordinator(lambda coordinator: coordinator.set_paused(False))
    _print_paused(False, as_json)


def _print_paused(paused: bool, as_json: bool) -> None:
    if as_json:
        output.emit({"paused": paused})
    else:
        click.echo("queue paused" if paused else "queue resumed")


def _queue_entries() -> list[admission.QueueEntry]:
    """The queue with the reasons: on a glance at the store when the quick read knows the
    limits (the built-in queued coordinator's), else through the configured coordinator."""
    where = common.state().quick
    if where is None or where.queue is None:
        return _with_coordinator(lambda coordinator: coordinator.queue())
    tag_limits = tuple(admission.TagLimit(**limit) for limit in where.queue.tag_limits)
    limits = admission.Limits(where.queue.max_concurrent_runs, tag_limits)

    async def explain(store: store_mod.Glance) -> list[admission.QueueEntry]:
        return admission.explain(
            await store.queued_runs(),
            await store.in_flight_tags(),
            limits,
            paused=bool(await store.get_flag(admission.PAUSED_FLAG)),
            now=time.time(),
        )

    return common.read_store(explain)


def _with_coordinator(action: Callable[[queued.QueuedCoordinator], Awaitable[T]]) -> T:
    from vigil import assembly
    from vigil.coordinators import queued

    st = common.state()

    async def main() -> T:
        async with common.opened_store(st.settings) as store:
            ctx = assembly.launch_context(st.settings, st.environ, pathlib.Path.cwd())
            launcher = assembly.build_launcher(st.settings, ctx)
            coordinator = assembly.build_coordinator(st.settings, store, launcher, time.time)
            if not isinstance(coordinator, queued.QueuedCoordinator):
                raise errors.ConfigError(
                    f"run_coordinator.type is {st.settings.run_coordinator.type!r}: "
                    "runs are launched at once, never queued (use type: queued)"
                )
            return await action(coordinator)

    return common.run_async(main)


def _entry_dict(entry: admission.QueueEntry) -> dict[str, object]:
    return {
        "run_id": entry.run.run_id,
        "job": entry.run.job_name,
        "priority": admission.priority_of(entry.run.tags),
        "created_at": output.instant(entry.run.created_at),
        "waiting": entry.reason,
    }
