"""`vigil definitions ...` and `vigil job execute`: the user's code, loaded and run."""

from __future__ import annotations

import dataclasses
import pathlib
import time

import click

from vigil import executors, runs, submission
from vigil.cli import common
from vigil.definitions import sensor as sensor_mod
from vigil.worker import worker


@click.group("definitions")
def definitions_group() -> None:
    """Load and inspect the workspace's code locations."""


@definitions_group.command("list")
@common.handle_errors
def list_definitions() -> None:
    """List each code location's jobs (and their steps), schedules and sensors."""
    workspace = submission.workspace_of(common.state().settings)
    for location in workspace.locations:
        click.echo(f"{location.name}")
        defs = location.definitions
        for job in defs.jobs:
            steps = " -> ".join(job.topological_order())
            click.echo(f"  job {job.name}: {steps}")
        for s in defs.schedules:
            click.echo(
                f"  schedule {s.name}: {s.cron.expression} ({s.timezone}) -> job {s.job}, "
                f"default {s.default_status.value.lower()}"
            )
        for sensor in defs.sensors:
            click.echo(f"  sensor {sensor.name}: {_sensor_line(sensor)}")


def _sensor_line(sensor: sensor_mod.SensorDef) -> str:
    jobs = ", ".join(sensor.jobs) or "no job"
    every = f"every {sensor.minimum_interval:g}s"
    default = f"default {sensor.default_status.value.lower()}"
    if sensor.run_status is None:
        return f"{every} -> {jobs}, {default}"
    watched = ", ".join(sensor.monitored_jobs) or "any job"
    return f"runs of {watched} reaching {sensor.run_status.value}, {every} -> {jobs}, {default}"


@definitions_group.command("check")
@common.handle_errors
def check() -> None:
    """Load every code location; report the first error with its file and line."""
    workspace = submission.workspace_of(common.state().settings)
    jobs = sum(len(loc.definitions.jobs) for loc in workspace.locations)
    schedules = sum(len(loc.definitions.schedules) for loc in workspace.locations)
    sensors = sum(len(loc.definitions.sensors) for loc in workspace.locations)
    click.echo(
        f"ok: {len(workspace.locations)} code locations, {jobs} jobs, "
        f"{schedules} schedules, {sensors} sensors"
    )


@click.group("job")
def job_group() -> None:
    """Work with jobs directly."""


@job_group.command("execute")
@click.argument("job")
@click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path)
)
@click.option("--tag", "tags", multiple=True, metavar="K=V")
@common.handle_errors
def execute(job: str, config_path: pathlib.Path | None, tags: tuple[str, ...]) -> None:
    """Run JOB in this process with the in-process executor (for development).

    The run is recorded in the store like any other.
    """
    st = common.state()
    run_config = common.read_run_config(config_path)
    run = submission.new_run(
        submission.workspace_of(st.settings), job, run_config, common.parse_tags(tags), time.time()
    )
    run = _as_starting(run)

    async def main() -> runs.RunStatus:
        async with common.opened_store(st.settings) as store:
            await store.add_run(run)
            env = worker.WorkerEnv(
                settings=st.settings,
                store=store,
                executor=executors.InProcessExecutor(executors.InProcessExecutor.Options()),
                base_dir=pathlib.Path.cwd(),
            )
            return await worker.run_worker(env, run.run_id)

    status = common.run_async(main)
    click.echo(f"{run.run_id} {status}")
    if status is not runs.RunStatus.SUCCESS:
        raise SystemExit(common.EXIT_FAILURE)


def _as_starting(run: runs.Run) -> runs.Run:
    return dataclasses.replace(run, status=runs.RunStatus.STARTING)
