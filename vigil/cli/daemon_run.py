"""`vigil daemon run`: the daemon in the foreground."""

from __future__ import annotations

import asyncio
import dataclasses
import faulthandler
import logging
import os
import pathlib
import random
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence

import anyio
import click

from vigil import assembly, errors
from vigil.cli import common
from vigil.config import loader
from vigil.config import settings as settings_mod
from vigil.daemon import (
    builtin,
    extension,
    extras,
    heartbeat,
    leases,
    logs,
    precedence,
    runtime,
    startup,
)
from vigil.daemon import clock as clock_mod
from vigil.daemon.loops import instigation
from vigil.evaluation import pool
from vigil.launchers import process

logger = logging.getLogger(__name__)
EXIT_ALREADY_RUNNING = 3  # another daemon is live on this store
CLOSE_DEADLINE = 10.0  # seconds the evaluators, the launcher and the store each get to close
EXIT_DEADLINE = 10.0  # seconds the process gets to end once the daemon is done


@click.command("run")
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    default="text",
    show_default=True,
    help="Readable lines, or one JSON object a line (keys event, loop, run_id).",
)
@click.option(
    "--log-level",
    type=click.Choice(logs.LEVELS),
    default=None,
    help="The least level of the lines logged (default: daemon.log_level, info).",
)
@common.handle_errors
def run(log_format: logs.LogFormat, log_level: str | None) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT.

    The first signal drains the loops (within daemon.shutdown_grace) and exits 0; a second
    one exits at once (128 + the signal number). SIGHUP reloads the workspace. Exits 3 when
    another daemon is live on the same store.
    """
    st = common.state()
    settings = st.settings
    resolved = extension.resolve_loops(settings.daemon)
    logs.configure(log_format, sys.stderr, logs.level_of(log_level or settings.daemon.log_level))
    clock = clock_mod.SystemClock()
    identity = heartbeat.new_identity(clock.now())
    controls = runtime.Controls(
        reload_workspace=lambda: _read_workspace(st.home), force_exit=_exit_at_once
    )

    async def main() -> None:
        target = loader.store_target(settings)
        store = await startup.open_store_patiently(
            target, settings.daemon.restart_backoff, random.random
        )
        launch_context = assembly.launch_context(settings, st.environ, pathlib.Path.cwd())
        launcher = assembly.build_launcher(settings, launch_context)
        evaluators = _evaluators(settings, st.environ)
        try:
            exported = extras.new_metrics(identity)
            coordinator = assembly.build_coordinator(
                settings, store, launcher, clock.now, identity.daemon_id, exported
            )
            first = precedence.Precedence()  # schedules and sensors before backfill chunks
            keeper = leases.Keeper(store, identity, clock, settings.daemon.lease_ttl)
            built = builtin.build(settings, store, coordinator, clock, first, keeper)
            shared = instigation.Instigation(
                evaluators, store, coordinator, clock, exported, first, keeper
            )
            instigators = builtin.instigation(shared, settings.scheduling)
            context = extension.LoopContext(store, clock, settings.workspace)
            loops = [*built.loops, *instigators.loops, *extension.build_loops(resolved, context)]
            for each in loops:  # a change of the daemons on the store may change its share
                keeper.watch(each.wake)
            daemon = runtime.Daemon(
                settings.daemon,
                store,
                loops,
                identity=identity,
                clock=clock,
                rand=random.random,
                probe=store.ping,
                keeper=keeper,
                alone=target.is_sqlite,
            )
            added = extras.build(
                settings, st.environ, daemon, store, exported, coordinator, built, shared
            )
            services = [*built.services, *instigators.services, *added.services]
            await daemon.run(dataclasses.replace(added, services=services), controls)
        finally:
            with anyio.CancelScope(shield=True):
                await _close_all(evaluators.close, launcher.close, store.close)
                await _end_stray_tasks(CLOSE_DEADLINE)
            guard.arm()

    guard = _ExitGuard(EXIT_DEADLINE)
    try:
        common.run_async(main)
    except errors.DaemonAlreadyRunning as exc:
        guard.code = EXIT_ALREADY_RUNNING
        common.fail(str(exc), EXIT_ALREADY_RUNNING)
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        raise SystemExit(128 + signal.SIGINT) from None


async def _close_all(*closers: Callable[[], Awaitable[None]]) -> None:
    """Close each in turn, giving up on one that takes longer than CLOSE_DEADLINE."""
    for close in closers:
        with anyio.move_on_after(CLOSE_DEADLINE) as scope:
            await close()
        if scope.cancelled_caught:
            logger.error(
                "%s did not finish within %s s; going on",
                close.__qualname__,
                CLOSE_DEADLINE,
                extra={"event": "daemon.close_timeout"},
            )


async def _end_stray_tasks(deadline: float) -> None:
    """Cancel the tasks libraries left behind, again while one catches its cancellation.

    A driver connection invalidated by a cancellation at shutdown (SQLAlchemy's aiosqlite
    adapter) leaves a task closing it; aiosqlite's `close` then awaits a second future in
    its `finally`, which its stopped thread never resolves. asyncio cancels each left-over
    task once when the loop closes, so that task would hold the process forever.
    """
    me = asyncio.current_task()
    with anyio.move_on_after(deadline):
        while stray := [t for t in asyncio.all_tasks() if t is not me and not t.done()]:
            for task in stray:
                task.cancel()
            await asyncio.wait(stray, timeout=0.1)


class _ExitGuard:
    """Once the daemon is done, its process must end.

    If tearing the interpreter down hangs (a driver's thread that never finishes, say), the
    guard writes every thread's stack to stderr, so the cause can be found, and exits with
    the status due. Armed only after the daemon stopped and closed everything.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.code = 0

    def arm(self) -> None:
        timer = threading.Timer(self.deadline, self._fire)
        timer.daemon = True
        timer.start()

    def _fire(self) -> None:
        sys.stderr.write(
            f"vigil: the daemon stopped but its process did not end within {self.deadline} s; "
            f"the threads' stacks follow; exiting {self.code}\n"
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(self.code)


def _evaluators(
    settings: settings_mod.InstanceSettings, environ: Mapping[str, str]
) -> pool.EvaluatorPool:
    """The code locations' evaluation processes (started when a loop first needs them)."""
    scheduling = settings.scheduling
    return pool.build(
        settings.workspace,
        pathlib.Path.cwd(),
        {k: v for k, v in environ.items() if k not in process.DAEMON_ONLY_ENV},
        processes=scheduling.processes_per_location,
        max_concurrent=scheduling.max_concurrent_evaluations,
        retry_after=scheduling.load_retry,
        load_timeout=scheduling.load_timeout,
    )


def _read_workspace(home: pathlib.Path) -> Sequence[settings_mod.CodeLocationSettings]:
    return loader.load_settings(home).workspace


def _exit_at_once(signum: signal.Signals) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signum)
