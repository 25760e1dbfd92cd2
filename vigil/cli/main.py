"""The `vigil` command."""

from __future__ import annotations

import os
import pathlib

import click

from vigil.cli import common, daemon, definitions, instance, run, worker
from vigil.config import loader


@click.group()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=None,
    help="The instance directory (default: $VIGIL_HOME, else ./.vigil).",
)
@click.version_option(package_name="vigil")
@click.pass_context
def cli(ctx: click.Context, home: pathlib.Path | None) -> None:
    """vigil: deploy and operate Python data pipelines."""
    environ = dict(os.environ)
    resolved = home.absolute() if home is not None else loader.home_from_env(environ)
    ctx.obj = common.CliState(home=resolved, environ=environ)


cli.add_command(run.run_group)
cli.add_command(instance.instance_group)
cli.add_command(instance.config_group)
cli.add_command(definitions.definitions_group)
cli.add_command(definitions.job_group)
cli.add_command(worker.worker_group)
cli.add_command(daemon.daemon_group)


def main() -> None:
    cli(prog_name="vigil")
