"""`vigil daemon run`: the daemon in the foreground."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import random
import signal
import sys
from collections.abc import Mapping, Sequence

import anyio
import click

from vigil import assembly, errors
from vigil.cli import common
from vigil.config import loader
from vigil.config import settings as settings_mod
from vigil.daemon import builtin, extension, extras, heartbeat, logs, runtime, startup
from vigil.daemon import clock as clock_mod
from vigil.daemon.loops import instigation
from vigil.evaluation import pool
from vigil.launchers import process

EXIT_ALREADY_RUNNING = 3  # another daemon is live on this store


@click.command("run")
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    default="text",
    show_default=True,
    help="Readable lines, or one JSON object a line (keys event, loop, run_id).",
)
@common.handle_errors
def run(log_format: logs.LogFormat) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT.

    The first signal drains the loops (within daemon.shutdown_grace) and exits 0; a second
    one exits at once (128 + the signal number). SIGHUP reloads the workspace. Exits 3 when
    another daemon is live on the same store.
    """
    st = common.state()
    settings = st.settings
    resolved = extension.resolve_loops(settings.daemon)
    logs.configure(log_format, sys.stderr)
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
            coordinator = assembly.build_coordinator(settings, store, launcher, clock.now)
            built = builtin.build(settings, coordinator, clock, identity.address)
            shared = instigation.Instigation(evaluators, store, coordinator, clock)
            instigators = builtin.instigation(shared, settings.scheduling)
            context = extension.LoopContext(store, clock, settings.workspace)
            loops = [*built.loops, *instigators.loops, *extension.build_loops(resolved, context)]
            daemon = runtime.Daemon(
                settings.daemon, store, loops, identity=identity, clock=clock, rand=random.random
            )
            added = extras.build(settings, st.environ, daemon, store, coordinator, built, shared)
            services = [*built.services, *instigators.services, *added.services]
            await daemon.run(dataclasses.replace(added, services=services), controls)
        finally:
            with anyio.CancelScope(shield=True):
                await evaluators.close()
                await launcher.close()
                await store.close()

    try:
        common.run_async(main)
    except errors.DaemonAlreadyRunning as exc:
        common.fail(str(exc), EXIT_ALREADY_RUNNING)
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        raise SystemExit(128 + signal.SIGINT) from None


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
    )


def _read_workspace(home: pathlib.Path) -> Sequence[settings_mod.CodeLocationSettings]:
    return loader.load_settings(home).workspace


def _exit_at_once(signum: signal.Signals) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signum)
