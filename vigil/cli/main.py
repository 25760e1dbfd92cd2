"""The `vigil` command."""

from __future__ import annotations

import os
import pathlib

import click

from vigil.cli import common, lazy
from vigil.config import loader

COMMANDS = {
    "run": "vigil.cli.run:run_group",
    "instance": "vigil.cli.instance:instance_group",
    "config": "vigil.cli.instance:config_group",
    "definitions": "vigil.cli.definitions:definitions_group",
    "job": "vigil.cli.definitions:job_group",
    "worker": "vigil.cli.worker:worker_group",
    "daemon": "vigil.cli.daemon:daemon_group",
    "queue": "vigil.cli.queue:queue_group",
    "schedule": "vigil.cli.instigators:schedule_group",
    "sensor": "vigil.cli.instigators:sensor_group",
    "backfill": "vigil.cli.backfill:backfill_group",
    "partitions": "vigil.cli.backfill:partitions_command",
}


@click.group(cls=lazy.LazyGroup, lazy_subcommands=COMMANDS)
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


def main() -> None:
    cli(prog_name="vigil")
