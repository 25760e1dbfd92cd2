"""`vigil celery worker`: Celery's own worker, configured by vigil, executing run tasks
and the step tasks of the celery executor.

It takes the instance's settings (the Celery launcher's options: broker, default queue)
and starts each run it receives as a run worker process of its own (`vigil.celery.task`).
Celery is imported when the command runs, so `vigil --help` stays light.
"""

from __future__ import annotations

import os
import pathlib
import socket

import click

from vigil import errors
from vigil.cli import common


@click.group("celery")
def celery_group() -> None:
    """Celery workers that execute runs sent by the celery launcher."""


@celery_group.command("worker")
@click.option(
    "--queues",
    default=None,
    help="Comma-separated Celery queues to take runs from (default: the launcher's queue).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=None,
    help="Runs executed at once (pool processes; default: the number of CPUs).",
)
@click.option("--name", default=None, help="The Celery node name (default: vigil-PID@HOST).")
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@common.handle_errors
def worker(queues: str | None, concurrency: int | None, name: str | None, loglevel: str) -> None:
    """Run a Celery worker that executes runs, each in a run worker process of its own."""
    from vigil import launchers, plugins
    from vigil.celery import app as app_mod
    from vigil.celery import options as options_mod
    from vigil.celery import step_task
    from vigil.celery import task as task_mod

    st = common.state()
    settings = st.settings
    if settings.run_launcher.type != "celery":
        raise errors.ConfigError(
            f"run_launcher.type: vigil celery worker needs the celery launcher "
            f"(this instance's is {settings.run_launcher.type!r})"
        )
    _, launcher_options = plugins.build(
        "run_launcher", settings.run_launcher, launchers.BUILTIN_LAUNCHERS, launchers.RunLauncher
    )
    assert isinstance(launcher_options, options_mod.CeleryOptions)
    app = app_mod.build_app(launcher_options)
    context = task_mod.WorkerContext(
        home=settings.home.absolute(),
        logs_dir=settings.compute_logs_dir.absolute(),
        working_directory=pathlib.Path.cwd(),
        environ=dict(os.environ),
    )
    task_mod.register(app, context)
    step_task.register(app, context)
    argv = _worker_argv(queues or launcher_options.queue, concurrency, name, loglevel)
    app.worker_main(argv)


def _worker_argv(
    queues: str, concurrency: int | None, name: str | None, loglevel: str
) -> list[str]:
    chosen = [queue.strip() for queue in queues.split(",") if queue.strip()]
    if not chosen:
        raise click.BadParameter("name at least one queue", param_hint="--queues")
    argv = [
        "worker",
        f"--queues={','.join(chosen)}",
        f"--hostname={name or f'vigil-{os.getpid()}@{socket.gethostname()}'}",
        f"--loglevel={loglevel.upper()}",
        "--pool=prefork",
        "--without-gossip",
        "--without-mingle",
    ]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    return argv
