"""The `vigil` command."""

from __future__ import annotations

import os
import pathlib

import click

from vigil import version
from vigil.cli import common, lazy
from vigil.config import home as home_mod

COMMANDS = {
    "run": "vigil.cli.run:run_group",
    "instance": "vigil.cli.instance:instance_group",
    "config": "vigil.cli.instance:config_group",
    "definitions": "vigil.cli.definitions:definitions_group",
    "job": "vigil.cli.definitions:job_group",
    "worker": "vigil.cli.worker:worker_group",
    "celery": "vigil.cli.celery:celery_group",
    "daemon": "vigil.cli.daemon:daemon_group",
    "queue": "vigil.cli.queue:queue_group",
    "schedule": "vigil.cli.instigators:schedule_group",
    "sensor": "vigil.cli.instigators:sensor_group",
    "backfill": "vigil.cli.backfill:backfill_group",
    "partitions": "vigil.cli.backfill:partitions_command",
}

# Each command's first line of help, for `vigil --help` without importing the commands
# (tests/unit/test_cli_lazy.py checks them against the commands).
SUMMARIES = {
    "run": "Launch and inspect runs.",
    "instance": "Create, migrate, describe and purge the instance store.",
    "config": "Show and check the instance settings.",
    "definitions": "Load and inspect the workspace's code locations.",
    "job": "Work with jobs directly.",
    "worker": "The run worker (started by launchers, not by hand).",
    "celery": "Celery workers that execute runs sent by the celery launcher.",
    "daemon": "Run the daemon and watch its loops.",
    "queue": "List queued runs in launch order, each with the reason it waits.",
    "schedule": "Schedules: list, start, stop, preview their ticks, show their ticks.",
    "sensor": "Sensors: list, start, stop, show ticks and cursors, test one without launching.",
    "backfill": "Run a partitioned job over a range of its partitions.",
    "partitions": "Each partition of JOB with its latest run's status (ranges of equal status).",
}


@click.group(cls=lazy.LazyGroup, lazy_subcommands=COMMANDS, summaries=SUMMARIES)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=None,
    help="The instance directory (default: $VIGIL_HOME, else ./.vigil).",
)
@click.version_option(version.VERSION, prog_name="vigil")
@click.pass_context
def cli(ctx: click.Context, home: pathlib.Path | None) -> None:
    """vigil: deploy and operate Python data pipelines."""
    environ = dict(os.environ)
    resolved = home.absolute() if home is not None else home_mod.from_env(environ)
    ctx.obj = common.CliState(home=resolved, environ=environ)


def main() -> None:
    cli(prog_name="vigil")
