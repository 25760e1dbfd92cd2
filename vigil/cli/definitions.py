"""`vigil definitions ...` and `vigil job execute`: the user's code, loaded and run.

The workspace, the executors and the worker are imported by the commands, not by `--help`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from vigil import runs
from vigil.cli import common, output
from vigil.cli import partition as partition_mod

if TYPE_CHECKING:
    from vigil.cli import workspace
    from vigil.definitions import workspace as workspace_mod


@click.group("definitions")
def definitions_group() -> None:
    """Load and inspect the workspace's code locations."""


@definitions_group.command("list")
@output.option
@common.load_timeout_option
@common.handle_errors
def list_definitions(as_json: bool) -> None:
    """List each code location's jobs (and their steps), schedules and sensors.

    A location that fails to load is left out with a warning on stderr.
    """
    from vigil.cli import workspace

    locations = workspace.all_locations()
    if as_json:
        output.emit([_location_dict(loc) for loc in locations if loc.catalog is not None])
    else:
        _print_locations(locations)
    workspace.warn(location for location in locations if location.error is not None)
    for conflict in workspace.conflicts(locations):
        click.echo(f"warning: {conflict}", err=True)


def _print_locations(locations: Sequence[workspace.Location]) -> None:
    for location in locations:
        if location.catalog is None:
            continue
        click.echo(f"{location.name}")
        for job in location.jobs:
            click.echo(f"  job {job.name}: {' -> '.join(job.step_names)}")
        for s in location.schedules:
            click.echo(
                f"  schedule {s['name']}: {s['cron']} ({s['timezone']}) -> job {s['job']}, "
                f"default {str(s['default_status']).lower()}"
            )
        for sensor in location.sensors:
            click.echo(f"  sensor {sensor['name']}: {_sensor_line(sensor)}")


def _location_dict(location: workspace.Location) -> dict[str, Any]:
    """A loaded location as docs/cli-json/definitions-list.json describes it."""
    return {
        "name": location.name,
        "jobs": [
            {
                "name": job.name,
                "steps": list(job.step_names),
                "description": job.description,
                "tags": dict(job.tags),
                "partitioned": job.partitions is not None,
            }
            for job in location.jobs
        ],
        "schedules": [_schedule_dict(s) for s in location.schedules],
        "sensors": [_sensor_dict(s) for s in location.sensors],
    }


def _schedule_dict(s: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": s["name"],
        "cron": s["cron"],
        "timezone": str(s["timezone"]),
        "job": s["job"],
        "default_status": str(s["default_status"]).lower(),
        "catchup": s["catchup"],
        "max_catchup_ticks": s["max_catchup_ticks"],
        "overlap": s["overlap"],
        "timeout": s["timeout"],
    }


def _sensor_dict(s: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": s["name"],
        "jobs": list(s["jobs"]),
        "minimum_interval": float(s["minimum_interval"]),
        "run_status": s["run_status"],
        "monitored_jobs": list(s["monitored_jobs"]),
        "default_status": str(s["default_status"]).lower(),
        "timeout": s["timeout"],
    }


def _sensor_line(sensor: Mapping[str, Any]) -> str:
    jobs = ", ".join(sensor["jobs"]) or "no job"
    every = f"every {sensor['minimum_interval']:g}s"
    default = f"default {str(sensor['default_status']).lower()}"
    if sensor["run_status"] is None:
        return f"{every} -> {jobs}, {default}"
    watched = ", ".join(sensor["monitored_jobs"]) or "any job"
    return f"runs of {watched} reaching {sensor['run_status']}, {every} -> {jobs}, {default}"


@definitions_group.command("check")
@output.option
@common.load_timeout_option
@common.handle_errors
def check(as_json: bool) -> None:
    """Load every code location, each in its own process; report each one that fails (with
    its file and line), and exit 2 if any did."""
    from vigil.cli import workspace

    locations = workspace.all_locations()
    problems = [str(loc.error) for loc in locations if loc.error is not None]
    problems += workspace.conflicts(locations)
    if problems:
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        raise SystemExit(common.EXIT_USAGE)
    jobs = sum(len(loc.jobs) for loc in locations)
    schedules = sum(len(loc.schedules) for loc in locations)
    sensors = sum(len(loc.sensors) for loc in locations)
    if as_json:
        counts = {"code_locations": len(locations), "jobs": jobs}
        output.emit({**counts, "schedules": schedules, "sensors": sensors})
        return
    click.echo(
        f"ok: {len(locations)} code locations, {jobs} jobs, "
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
@partition_mod.option
@output.option
@common.load_timeout_option
@common.handle_errors
def execute(
    job: str,
    config_path: pathlib.Path | None,
    tags: tuple[str, ...],
    partition: str | None,
    as_json: bool,
) -> None:
    """Run JOB in this process with the in-process executor (for development).

    The job's code location is found in evaluation processes, then only that location is
    loaded here. The run is recorded in the store like any other.
    """
    from vigil import executors, submission
    from vigil.definitions import workspace as workspace_mod
    from vigil.worker import worker

    st = common.state()
    run_config = common.read_run_config(config_path)
    location = _load_location_of(job)
    loaded = workspace_mod.Workspace([location])
    partitions = location.definitions.get_job(job).partitions
    now = time.time()
    checked = partition_mod.tagged(job, partitions, common.parse_tags(tags), partition, now)
    run = submission.new_run(loaded, job, run_config, checked, now)
    run = _as_starting(run)

    async def main() -> runs.Run:
        async with common.opened_store(st.settings) as store:
            await store.add_run(run)
            env = worker.WorkerEnv(
                settings=st.settings,
                store=store,
                executor=executors.InProcessExecutor(executors.InProcessExecutor.Options()),
                base_dir=pathlib.Path.cwd(),
            )
            await worker.run_worker(env, run.run_id)
            return await store.get_run(run.run_id)

    ended = common.run_async(main)
    _report(ended, as_json)
    if ended.status is not runs.RunStatus.SUCCESS:
        raise SystemExit(common.EXIT_FAILURE)


def _report(ended: runs.Run, as_json: bool) -> None:
    if as_json:
        from vigil.cli import render

        output.emit(render.run_dict(ended))
    else:
        click.echo(f"{ended.run_id} {ended.status}")


def _load_location_of(job: str) -> workspace_mod.CodeLocation:
    """Only the code location defining `job`, loaded in this process."""
    from vigil.cli import workspace
    from vigil.definitions import workspace as workspace_mod

    async def main() -> tuple[workspace.Location, list[workspace.Location]]:
        async with workspace.opened() as ws:
            return await workspace.job_location(ws, job), ws.failures

    found, failures = common.run_async(main)
    workspace.warn(failures)
    settings = next(s for s in common.state().settings.workspace if s.location_name == found.name)
    return workspace_mod.load_location(settings, pathlib.Path.cwd())


def _as_starting(run: runs.Run) -> runs.Run:
    return dataclasses.replace(run, status=runs.RunStatus.STARTING)
