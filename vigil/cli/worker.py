"""`vigil worker run RUN_ID`: the run worker process the launchers start.

The worker's parts (settings, store, executor) are imported when a command runs, so
`vigil worker --help` stays light; the worker template imports them once, before it forks.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import click

from vigil import errors, runs
from vigil.cli import common

if TYPE_CHECKING:
    from vigil.config import settings as settings_mod


@click.group("worker")
def worker_group() -> None:
    """The run worker (started by launchers, not by hand)."""


@worker_group.command("run")
@click.argument("run_id")
@click.option("--resume", is_flag=True, help="Continue a STARTED run whose worker died.")
@click.option("--token", default=None, help="The launch token this worker was started with.")
@click.option(
    "--secret-fd",
    type=int,
    default=None,
    help="A descriptor holding the secret settings variables (see vigil.config.secrets).",
)
@common.handle_errors
def run(run_id: str, resume: bool, token: str | None, secret_fd: int | None) -> None:
    """Execute one run to its end."""
    from vigil import assembly
    from vigil.worker import patience, worker

    st = common.state()
    settings = _settings_without_secret_variables(st.home, secret_fd)
    executor = assembly.build_executor(settings)

    async def main() -> runs.RunStatus:
        # The first transaction (the run's start) checks the schema: see `open_store`.
        async with common.opened_store(settings, worker=True) as store:
            outage = settings.run_worker.store_outage_timeout
            env = worker.WorkerEnv(
                settings=settings,
                store=patience.PatientStore(store, outage),
                executor=executor,
                base_dir=pathlib.Path.cwd(),
                token=token,
            )
            return await worker.run_worker(env, run_id, resume=resume)

    status = common.run_async(main)
    click.echo(f"{run_id} {status}")
    if status is not runs.RunStatus.SUCCESS:
        raise SystemExit(common.EXIT_FAILURE)


def _settings_without_secret_variables(
    home: pathlib.Path, secret_fd: int | None
) -> settings_mod.InstanceSettings:
    """The settings, built with the secret variables handed over on `secret_fd` and those
    of this process's own environment, which are removed from it first: user code loaded
    later (and the step processes forked from this one) finds none in `os.environ`."""
    from vigil.config import loader, secrets

    secret = secrets.scrub(os.environ)
    if secret_fd is not None:
        secret |= secrets.take_over(secret_fd)
    with secrets.overlaid(os.environ, secret):
        return loader.load_settings(home)


@worker_group.command("template", hidden=True)
@click.option("--tethered", is_flag=True, help="Workers die with the template (Celery).")
def template(tethered: bool) -> None:
    """Serve fork requests from a launcher on stdin (see vigil.worker.template)."""
    from vigil.config import loader, secrets
    from vigil.storage import sql
    from vigil.worker import template as template_mod

    root = click.get_current_context().find_root().command

    def run_command(argv: Sequence[str]) -> int:
        try:
            root.main(args=list(argv), prog_name="vigil")
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return 0

    home = common.state().home

    def build_settings(secret: Mapping[str, str]) -> None:
        # Workers forked with this environment and these secrets take these settings as
        # they are, unless vigil.yaml changed since (see `loader.load_settings`).
        with contextlib.suppress(errors.ConfigError), secrets.overlaid(os.environ, secret):
            loader.load_settings(home)

    # Before the first fork, so that every worker inherits it done (see the module doc).
    sql.warm_up()
    template_mod.serve(
        run_command, sys.stdin, sys.stdout, prepare=build_settings, tethered=tethered
    )
