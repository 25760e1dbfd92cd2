"""`vigil run ...`: launch, re-execute, list, show, follow events and logs, cancel.

A run id may be given by a unique prefix (`ids`). What only some commands need (anyio,
the workspace, the launchers and coordinators, the renderers) is imported inside them,
so that `vigil run --help` and the read commands import only what they use.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vigil import errors, events, reexecution, runs
from vigil.cli import common, ids, output
from vigil.cli import partition as partition_mod
from vigil.storage import store as store_mod

if TYPE_CHECKING:
    from vigil.cli import render, workspace
    from vigil.evaluation import messages

FOLLOW_POLL = 0.25
CANCEL_POLL = 0.1


F = TypeVar("F", bound=Callable[..., Any])


def _wait_options(command: F) -> F:
    """`--wait` and `--timeout`, for the commands that submit a run."""
    command = click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        metavar="SECONDS",
        help="With --wait: give up waiting after SECONDS (exit 124); the run goes on.",
    )(command)
    return click.option(
        "--wait",
        is_flag=True,
        help="Wait for the run to end, showing its progress on stderr; exit 1 unless it succeeds.",
    )(command)


@click.group("run")
def run_group() -> None:
    """Launch and inspect runs."""


@run_group.command("launch")
@click.argument("job")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
    help="Run config file (YAML or JSON).",
)
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="Tag the run (repeatable).")
@partition_mod.option
@_wait_options
@output.option
@common.load_timeout_option
@common.handle_errors
def launch(
    job: str,
    config_path: pathlib.Path | None,
    tags: tuple[str, ...],
    partition: str | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Submit a run of JOB through the configured coordinator and launcher.

    The job is found and its config checked in its code location's evaluation process;
    other locations are not waited for (a failed one is a warning). A partitioned job
    needs --partition KEY, checked against the job's partitions.
    """
    from vigil.evaluation import messages

    st = common.state()
    _check_timeout(wait, timeout)
    request = messages.RunCheckRequest(
        job, common.read_run_config(config_path), common.parse_tags(tags)
    )

    async def main() -> runs.Run:
        run, steps = await _checked_run(request, config_path, partition)
        async with common.opened_store(st.settings) as store:
            return await _submit(store, run, _Wait(steps, timeout) if wait else None, as_json)

    _report(main, wait, as_json)


async def _checked_run(
    request: messages.RunCheckRequest,
    source: pathlib.Path | None = None,
    partition: str | None = None,
) -> tuple[runs.Run, int]:
    """The run, checked by the job's code location (UnknownJob, RunConfigError otherwise;
    a config error names `source`, the run config file, when there is one), and its
    partition by the job's partitions (PartitionError); and how many steps it runs."""
    from vigil.cli import workspace

    async with workspace.opened() as ws:
        location = await workspace.job_location(ws, request.job)
        job = location.job(request.job)
        request = _with_partition(request, job, partition)
        checked = await check_in(ws, location, request, source)
        workspace.warn(ws.failures)
    assert job is not None
    return checked, len(job.step_names)


async def check_in(
    ws: workspace.Workspace,
    location: workspace.Location,
    request: messages.RunCheckRequest,
    source: pathlib.Path | None = None,
) -> runs.Run:
    """The run as `location`'s evaluation process checked it: its job, config and tags
    (RunConfigError, naming `source`, the run config file, when there is one)."""
    from vigil import retrying, submission

    _check_json(request.run_config)
    answer = await ws.ask(location.name, request, ws.load_timeout)
    if answer.error is not None or len(answer.requests) != 1:
        error = answer.error or "the run check gave no run"
        raise errors.RunConfigError(f"{source}: {error}" if source is not None else error)
    checked = answer.requests[0]
    retrying.check_tags(checked.tags)  # a tag the daemon reads later is refused now
    return submission.checked_run(checked, location.name, time.time())


def _with_partition(
    request: messages.RunCheckRequest, job: messages.JobInfo | None, key: str | None
) -> messages.RunCheckRequest:
    assert job is not None
    tags = partition_mod.tagged(
        job.name, job.partitions_def(), dict(request.tags), key, time.time()
    )
    return dataclasses.replace(request, tags=tags)


def _check_json(run_config: Any) -> None:
    try:
        json.dumps(run_config)
    except (TypeError, ValueError) as exc:
        raise errors.RunConfigError(f"run config: not JSON data ({exc})") from None


@dataclasses.dataclass(frozen=True, slots=True)
class _Wait:
    """`--wait`: the steps the run will run, and `--timeout`."""

    steps: int | None
    timeout: float | None


def _check_timeout(wait: bool, timeout: float | None) -> None:
    if timeout is not None and not wait:
        raise click.UsageError("--timeout goes with --wait")


async def _submit(
    store: store_mod.Store, run: runs.Run, wait: _Wait | None, as_json: bool = False
) -> runs.Run:
    """Submit through the configured coordinator; print it; if asked, wait for its end
    showing its progress (`progress.WaitTimedOut` once `--timeout` passed)."""
    from vigil import assembly
    from vigil.cli import progress

    st = common.state()
    ctx = assembly.launch_context(st.settings, st.environ, pathlib.Path.cwd())
    launcher = assembly.build_launcher(st.settings, ctx)
    coordinator = assembly.build_coordinator(st.settings, store, launcher, time.time)
    try:
        submitted = await coordinator.submit(run)
    finally:
        await launcher.close()
    if not as_json:
        click.echo(f"{submitted.run_id} {submitted.status}")
    if wait is None:
        return submitted
    if submitted.status is runs.RunStatus.QUEUED:
        click.echo("waiting for the daemon to launch it (`vigil daemon run`)", err=True)
    display = progress.Display(sys.stderr, sys.stderr.isatty())
    shown = progress.Progress(wait.steps)
    return await progress.watch(store, submitted.run_id, shown, display, wait.timeout)


def _report(main: Callable[[], Awaitable[runs.Run]], wait: bool, as_json: bool = False) -> None:
    """Run `main`; print the run as submitted, or as it ended (`wait`): the text line, or
    the run as JSON (docs/cli-json/run-launch.json); exit 1 when the run waited for did not
    succeed (124 when --timeout passed first)."""
    from vigil.cli import progress, render

    try:
        final = common.run_async(main)
    except progress.WaitTimedOut as exc:
        common.fail(str(exc), progress.EXIT_TIMEOUT)
    if as_json:
        output.emit(render.run_dict(final))
    elif wait:
        click.echo(f"{final.run_id} {final.status}")
    if wait and final.status is not runs.RunStatus.SUCCESS:
        raise SystemExit(common.EXIT_FAILURE)


@run_group.command("reexecute")
@click.argument("run_id")
@click.option(
    "--from-failure",
    "mode",
    flag_value="from_failure",
    default=None,
    help=(
        "Run the steps that did not succeed (and what follows them), reusing the others' "
        "outputs (the default)."
    ),
)
@click.option("--all-steps", "mode", flag_value="all_steps", help="Run the whole job again.")
@click.option("--steps", "steps", default=None, metavar="A,B", help="Run exactly these steps.")
@_wait_options
@output.option
@common.handle_errors
def reexecute(
    run_id: str,
    mode: str | None,
    steps: str | None,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Submit a child run of the ended run RUN_ID (same job, config and tags)."""
    st = common.state()
    _check_timeout(wait, timeout)
    if steps is not None and mode is not None:
        raise click.UsageError(f"--steps and --{mode.replace('_', '-')} exclude each other")
    chosen = (
        reexecution.Mode.STEPS if steps is not None else reexecution.Mode(mode or "from_failure")
    )
    names = [name.strip() for name in (steps or "").split(",") if name.strip()]

    async def main() -> runs.Run:
        from vigil.cli import workspace

        async with common.opened_store(st.settings) as store:
            parent = await store.get_run(await ids.resolve_run_id(store, run_id))
            async with workspace.opened() as ws:
                job = (await workspace.job_location(ws, parent.job_name)).job(parent.job_name)
                workspace.warn(ws.failures)
            assert job is not None
            _check_reexecution(job, parent, chosen, names)
            child = reexecution.child_run(parent, chosen, time.time(), steps=names)
            planned = await _planned_steps(store, job, child) if wait else None
            return await _submit(store, child, _Wait(planned, timeout) if wait else None, as_json)

    _report(main, wait, as_json)


async def _planned_steps(store: store_mod.Store, job: messages.JobInfo, child: runs.Run) -> int:
    """How many steps a re-execution runs: its selection, less the steps its lineage
    already did when it is one from the failure (as its worker will plan it)."""
    from vigil.worker import lineage

    selection = child.step_selection
    planned = [s for s in job.step_names if selection is None or s in selection]
    if reexecution.is_from_failure(child) and child.parent_run_id is not None:
        done = await lineage.done_steps(store, child.parent_run_id)
        planned = [s for s in planned if s not in done]
    return len(planned)


def _check_reexecution(
    job: messages.JobInfo,
    parent: runs.Run,
    mode: reexecution.Mode,
    steps: list[str],
) -> None:
    """The job still exists and has the steps named; a run that succeeded has no failure."""
    for step in steps:
        if step not in job.step_names:
            raise errors.NotFound(f"job '{job.name}' has no step named '{step}'")
    if mode is reexecution.Mode.FROM_FAILURE and parent.status is runs.RunStatus.SUCCESS:
        raise errors.ReexecutionError(
            f"run {parent.run_id} succeeded: nothing to re-execute from a failure "
            "(use --all-steps or --steps)"
        )


@run_group.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in runs.RunStatus], case_sensitive=False),
)
@click.option("--job", "job_name", default=None)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@output.option
@common.handle_errors
def list_runs(statuses: tuple[str, ...], job_name: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    from vigil.cli import render

    run_filter = store_mod.RunFilter(
        statuses=tuple(runs.RunStatus(s.upper()) for s in statuses), job_name=job_name, limit=limit
    )

    async def main(store: store_mod.Glance) -> list[runs.Run]:
        return await store.list_runs(run_filter)

    found = common.read_store(main)
    if as_json:
        output.emit([render.run_dict(r) for r in found])
    else:
        click.echo(render.run_table(found, time.time()))


@run_group.command("show")
@click.argument("run_id")
@output.option
@common.handle_errors
def show(run_id: str, as_json: bool) -> None:
    """Show one run: status, timing, worker, tags and step outcomes with their errors."""
    from vigil.cli import render

    async def main(
        store: store_mod.Glance,
    ) -> tuple[runs.Run, list[events.Event], list[render.LineageEntry]]:
        run = await store.get_run(await ids.resolve_run_id(store, run_id))
        step_events = await store.get_events(run.run_id, event_types=render.STEP_OUTCOMES)
        return run, step_events, await _lineage(store, run)

    run, step_events, chain = common.read_store(main)
    if as_json:
        output.emit(
            {
                **render.run_dict(run),
                "steps": render.step_dicts(step_events),
                "lineage": [render.lineage_dict(entry) for entry in chain],
            }
        )
    else:
        click.echo(render.run_detail(run, step_events, time.time()))
        click.echo(render.lineage_table(chain, run.run_id))


async def _lineage(store: store_mod.Glance, run: runs.Run) -> list[render.LineageEntry]:
    """Every run of the run's lineage, root first, each with its end event."""
    from vigil.cli import render

    root = run.root_run_id or run.run_id
    chain = await store.list_runs(store_mod.RunFilter(root_run_id=root))
    chain.sort(key=lambda member: (member.retry_number, member.created_at))
    entries = []
    for member in chain:
        ends = await store.get_events(member.run_id, event_types=render.RUN_ENDS)
        entries.append(render.LineageEntry(member, ends[-1] if ends else None))
    return entries


@run_group.command("events")
@click.argument("run_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the run ends.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@common.handle_errors
def events_cmd(run_id: str, follow: bool, as_json: bool) -> None:
    """Print a run's events in order."""
    import anyio

    from vigil.cli import render

    async def main() -> None:
        async with common.opened_store(common.state().settings) as store:
            cursor = 0
            whole_id = await ids.resolve_run_id(store, run_id)
            while True:
                run = await store.get_run(whole_id)
                for event in await store.get_events(whole_id, after_id=cursor):
                    click.echo(render.event_json(event) if as_json else render.event_line(event))
                    cursor = event.event_id
                if not follow or run.status.is_terminal:
                    return
                await anyio.sleep(FOLLOW_POLL)

    common.run_async(main)


@run_group.command("logs")
@click.argument("run_id")
@click.argument("step", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run ends.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line: step, stream, line.")
@common.handle_errors
def logs(run_id: str, step: str | None, follow: bool, as_json: bool) -> None:
    """Print the captured stdout and stderr of a run's steps (or one STEP)."""
    import anyio

    from vigil import blobs
    from vigil.cli import render

    st = common.state()

    async def main() -> None:
        async with common.opened_store(st.settings) as store:
            whole_id = await ids.resolve_run_id(store, run_id)
            root = blobs.open_root(st.settings.compute_logs_url, "logs_dir")
            tail = render.LogTail(root, whole_id, step)
            while True:
                run = await store.get_run(whole_id)
                tail.print_new(click.echo, as_json=as_json)
                if not follow or run.status.is_terminal:
                    tail.print_new(click.echo, as_json=as_json)
                    return
                await anyio.sleep(FOLLOW_POLL)

    common.run_async(main)


@run_group.command("cancel")
@click.argument("run_id")
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait for the run to end CANCELED (0: do not wait).",
)
@output.option
@common.handle_errors
def cancel(run_id: str, timeout: float, as_json: bool) -> None:
    """Cancel a run: its worker is asked to stop, and the run ends CANCELED."""
    import anyio

    from vigil import assembly

    st = common.state()

    async def main() -> runs.Run:
        async with common.opened_store(st.settings) as store:
            whole_id = await ids.resolve_run_id(store, run_id)
            ctx = assembly.launch_context(st.settings, st.environ, pathlib.Path.cwd())
            launcher = assembly.build_launcher(st.settings, ctx)
            coordinator = assembly.build_coordinator(st.settings, store, launcher, time.time)
            run = await coordinator.cancel(whole_id)
            with anyio.move_on_after(timeout):
                while not run.status.is_terminal:
                    await anyio.sleep(CANCEL_POLL)
                    run = await coordinator.settle_cancel(whole_id)
            return run

    run = common.run_async(main)
    if as_json:
        from vigil.cli import render

        output.emit(render.run_dict(run))
    else:
        click.echo(f"{run.run_id} {run.status}")
