"""`vigil backfill ...` and `vigil partitions JOB`: runs of a job over a range of its partitions.

`backfill launch` checks the job, its partitions and the run config in the job's code
location (as `run launch` does), stores the backfill with its partition keys, and returns:
the daemon's backfill loop submits the runs to the queue in chunks. The other commands read
the store only. A backfill id may be given by a unique prefix (at least 4 characters).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from vigil import backfills, errors, runs
from vigil import partitions as partitions_mod
from vigil.cli import common, output
from vigil.cli import run as run_cli
from vigil.evaluation import messages
from vigil.storage import store as store_mod

if TYPE_CHECKING:
    from vigil.config import settings as settings_mod

B = backfills.BackfillStatus
MIN_PREFIX = 4
NOT_RUN = "NOT_RUN"


@click.group("backfill")
def backfill_group() -> None:
    """Run a partitioned job over a range of its partitions."""


@backfill_group.command("launch")
@click.argument("job")
@click.option("--from", "first", metavar="KEY", help="The first partition of the range.")
@click.option("--to", "last", metavar="KEY", help="The last partition of the range.")
@click.option("--partitions", "listed", metavar="A,B,...", help="These partitions.")
@click.option("--all", "every", is_flag=True, help="Every partition of the job (complete ones).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
    help="Run config file (YAML or JSON) for every run.",
)
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="Tag every run (repeatable).")
@click.option("--priority", type=int, default=None, help="The runs' queue priority.")
@click.option(
    "--max-concurrent",
    type=click.IntRange(min=1, max=100_000),
    default=None,
    help="At most this many of the backfill's runs in flight at once.",
)
@output.option
@common.load_timeout_option
@common.handle_errors
def launch(
    job: str,
    first: str | None,
    last: str | None,
    listed: str | None,
    every: bool,
    config_path: pathlib.Path | None,
    tags: tuple[str, ...],
    priority: int | None,
    max_concurrent: int | None,
    as_json: bool,
) -> None:
    """Submit one run of JOB per partition, through the queue (the daemon submits them)."""
    selection = _Selection(first, last, listed, every)
    st = common.state()
    given = common.parse_tags(tags)
    if priority is not None:
        given["vigil/priority"] = str(priority)
    request = messages.RunCheckRequest(job, common.read_run_config(config_path), given)

    async def main() -> backfills.Backfill:
        from vigil.cli import workspace  # the evaluation processes: when a command runs

        async with common.opened_store(st.settings) as store:
            _check_queued(st.settings, store)
            now = time.time()
            async with workspace.opened() as ws:
                location = await workspace.job_location(ws, job)
                info = location.job(job)
                assert info is not None
                keys = selection.keys(job, _partitions_of(info), now)
                # The config and tags are checked once, with the first partition.
                first = dataclasses.replace(request, tags={**given, runs.TAG_PARTITION: keys[0]})
                checked = await run_cli.check_in(ws, location, first, config_path)
            tags = {k: v for k, v in checked.tags.items() if k != runs.TAG_PARTITION}
            made = backfills.new_backfill(
                checked.job_name,
                checked.code_location,
                keys,
                now,
                run_config=checked.run_config,
                tags=tags,
                max_concurrent=max_concurrent,
            )
            return await store.add_backfill(made)

    made = common.run_async(main)
    if as_json:
        output.emit(_backfill_dict(made, None))
        return
    click.echo(
        f"backfill {made.backfill_id}: {made.total} partitions of {made.job_name} "
        f"({made.partitions[0]} .. {made.partitions[-1]}); the daemon submits the runs"
    )


class _Selection:
    """Which partitions: `--from/--to`, `--partitions` or `--all` (exactly one)."""

    def __init__(self, first: str | None, last: str | None, listed: str | None, every: bool):
        chosen = [every, listed is not None, first is not None or last is not None]
        if sum(chosen) != 1:
            raise click.UsageError(
                "choose the partitions: --from KEY --to KEY, --partitions or --all"
            )
        if (first is None) != (last is None):
            raise click.UsageError("--from and --to go together")
        self.first, self.last, self.listed, self.every = first, last, listed, every

    def keys(self, job: str, defined: partitions_mod.PartitionsDef, now: float) -> list[str]:
        try:
            return self._keys(defined, now)
        except errors.PartitionError as exc:
            raise errors.PartitionError(f"job '{job}': {exc}") from None

    def _keys(self, defined: partitions_mod.PartitionsDef, now: float) -> list[str]:
        if self.every:
            found = defined.keys(now)
            if not found:
                raise errors.PartitionError("no complete partition yet")
            return found
        if self.first is not None and self.last is not None:
            return defined.key_range(self.first, self.last, now)
        keys = [k.strip() for k in (self.listed or "").split(",") if k.strip()]
        if not keys:
            raise errors.PartitionError("--partitions names no partition")
        seen: set[str] = set()
        for key in keys:
            if key in seen:
                raise errors.PartitionError(f"partition {key!r} is named twice")
            seen.add(key)
            defined.check(key, now)
        return keys


def _check_queued(settings: settings_mod.InstanceSettings, store: store_mod.Store) -> None:
    """Backfills go through the queue: refuse a coordinator without one."""
    from vigil import assembly

    ctx = assembly.launch_context(settings, {}, pathlib.Path.cwd())
    launcher = assembly.build_launcher(settings, ctx)
    coordinator = assembly.build_coordinator(settings, store, launcher, time.time)
    if coordinator.run_queue() is None:
        raise errors.ConfigError(
            f"run_coordinator.type is {settings.run_coordinator.type!r}: a backfill's runs "
            "wait in the run queue (use run_coordinator type: queued)"
        )


def _partitions_of(info: messages.JobInfo) -> partitions_mod.PartitionsDef:
    defined = info.partitions_def()
    if defined is None:
        raise errors.PartitionError(f"job '{info.name}' has no partitions: nothing to backfill")
    return defined


@backfill_group.command("list")
@output.option
@common.handle_errors
def list_backfills(as_json: bool) -> None:
    """Every backfill, oldest first."""
    found = _with_store(lambda store: store.list_backfills())
    if as_json:
        output.emit([_backfill_dict(b, None) for b in found])
        return
    if not found:
        click.echo("no backfills")
    for each in found:
        click.echo(
            f"{each.backfill_id}  {each.job_name:<20} {each.status:<10} "
            f"{each.cursor}/{each.total} submitted  {_when(each.created_at)}"
        )


@backfill_group.command("show")
@click.argument("backfill_id")
@output.option
@common.handle_errors
def show(backfill_id: str, as_json: bool) -> None:
    """A backfill: its partitions by the status of their latest run, and the failed ones."""

    async def read(store: store_mod.Store) -> tuple[backfills.Backfill, dict[str, Any]]:
        found = await store.get_backfill(await _resolve(store, backfill_id))
        latest = backfills.latest_by_partition(await store.backfill_runs(found.backfill_id))
        return found, latest

    found, latest = _with_store(read)
    counts = backfills.counts(found, latest)
    failed = [k for k in found.partitions if _status(latest, k) == runs.RunStatus.FAILURE.value]
    if as_json:
        output.emit({**_backfill_dict(found, counts), "failed_partitions": failed})
        return
    click.echo(f"backfill   {found.backfill_id}")
    click.echo(f"job        {found.job_name}")
    click.echo(f"status     {found.status} ({found.cursor}/{found.total} submitted)")
    click.echo(f"range      {found.partitions[0]} .. {found.partitions[-1]}")
    if found.max_concurrent is not None:
        click.echo(f"limit      {found.max_concurrent} in flight")
    if found.rerun_of is not None:
        click.echo(f"rerun of   {found.rerun_of}")
    click.echo(f"created    {_when(found.created_at)}")
    click.echo("partitions " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
    if failed:
        click.echo("failed     " + "; ".join(_ranges(found.partitions, set(failed))))


@backfill_group.command("cancel")
@click.argument("backfill_id")
@output.option
@common.handle_errors
def cancel(backfill_id: str, as_json: bool) -> None:
    """Submit no more runs and cancel the queued ones (runs in flight finish)."""

    async def act(store: store_mod.Store) -> tuple[backfills.Backfill, list[str], int]:
        resolved = await _resolve(store, backfill_id)
        stored, canceled = await store.cancel_backfill(resolved, time.time())
        latest = backfills.latest_by_partition(await store.backfill_runs(resolved))
        flying = sum(1 for p in latest.values() if p.status in runs.IN_FLIGHT_STATUSES)
        return stored, canceled, flying

    stored, canceled, flying = _with_store(act)
    if as_json:
        output.emit(
            {
                **_backfill_dict(stored, None),
                "canceled_run_ids": list(canceled),
                "in_flight": flying,
            }
        )
        return
    click.echo(
        f"backfill {stored.backfill_id} {stored.status}: {len(canceled)} queued runs canceled, "
        f"{flying} in flight left to finish (vigil run cancel RUN_ID stops one)"
    )


@backfill_group.command("rerun-failed")
@click.argument("backfill_id")
@click.option(
    "--max-concurrent",
    type=click.IntRange(min=1, max=100_000),
    default=None,
    help="At most this many runs in flight (default: the backfill's own limit).",
)
@output.option
@common.handle_errors
def rerun_failed(backfill_id: str, max_concurrent: int | None, as_json: bool) -> None:
    """A new backfill of the partitions whose latest run in BACKFILL_ID failed."""
    st = common.state()

    async def act(store: store_mod.Store) -> backfills.Backfill:
        _check_queued(st.settings, store)
        found = await store.get_backfill(await _resolve(store, backfill_id))
        latest = backfills.latest_by_partition(await store.backfill_runs(found.backfill_id))
        failed = [k for k in found.partitions if _status(latest, k) == runs.RunStatus.FAILURE.value]
        if not failed:
            raise errors.NotFound(f"backfill {found.backfill_id} has no failed partition")
        tags = {k: v for k, v in found.tags.items() if k != runs.TAG_BACKFILL_MAX_CONCURRENT}
        made = backfills.new_backfill(
            found.job_name,
            found.code_location,
            failed,
            time.time(),
            run_config=found.run_config,
            tags=tags,
            max_concurrent=max_concurrent if max_concurrent is not None else found.max_concurrent,
            rerun_of=found.backfill_id,
        )
        return await store.add_backfill(made)

    made = _with_store(act)
    if as_json:
        output.emit(_backfill_dict(made, None))
        return
    click.echo(f"backfill {made.backfill_id}: {made.total} failed partitions of {made.job_name}")


@click.command("partitions")
@click.argument("job")
@output.option
@common.load_timeout_option
@common.handle_errors
def partitions_command(job: str, as_json: bool) -> None:
    """Each partition of JOB with its latest run's status (ranges of equal status)."""
    st = common.state()

    async def main() -> tuple[list[str], dict[str, backfills.PartitionRun]]:
        from vigil.cli import workspace

        async with workspace.opened() as ws:
            location = await workspace.job_location(ws, job)
            workspace.warn(ws.failures)
        info = location.job(job)
        assert info is not None
        keys = _partitions_of(info).keys(time.time())
        async with common.opened_store(st.settings) as store:
            return keys, backfills.latest_by_partition(await store.partition_runs(job))

    keys, latest = common.run_async(main)
    if as_json:
        output.emit(
            [
                {
                    "partition": key,
                    "status": _status(latest, key),
                    "run_id": latest[key].run_id if key in latest else None,
                }
                for key in keys
            ]
        )
        return
    if not keys:
        click.echo(f"job '{job}' has no complete partition yet")
    for first, last, status, count in compact(keys, lambda key: _status(latest, key)):
        span = first if first == last else f"{first} .. {last}"
        click.echo(f"{span:<40} {status:<12} {count}")


def compact(
    keys: Sequence[str], status_of: Callable[[str], str]
) -> list[tuple[str, str, str, int]]:
    """Runs of consecutive keys with one status: (first, last, status, how many)."""
    found: list[tuple[str, str, str, int]] = []
    for key in keys:
        status = status_of(key)
        if found and found[-1][2] == status:
            first, _, _, count = found[-1]
            found[-1] = (first, key, status, count + 1)
        else:
            found.append((key, key, status, 1))
    return found


def _ranges(keys: Sequence[str], chosen: set[str]) -> list[str]:
    spans = compact(keys, lambda key: "yes" if key in chosen else "no")
    return [a if a == b else f"{a} .. {b}" for a, b, mark, _ in spans if mark == "yes"]


def _status(latest: Mapping[str, backfills.PartitionRun], key: str) -> str:
    found = latest.get(key)
    return NOT_RUN if found is None else found.status.value


async def _resolve(store: store_mod.Store, given: str) -> str:
    """The backfill id that `given` is, or is the unique prefix of."""
    every = [b.backfill_id for b in await store.list_backfills()]
    if given in every:
        return given
    if len(given) < MIN_PREFIX:
        raise errors.NotFound(f"no backfill with id {given!r}")
    matches = [b for b in every if b.startswith(given)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise errors.NotFound(f"no backfill with id {given!r}")
    raise errors.NotFound(f"backfill id prefix {given!r} is ambiguous: {', '.join(matches)}")


def _with_store(action: Callable[[store_mod.Store], Any]) -> Any:
    st = common.state()

    async def main() -> Any:
        async with common.opened_store(st.settings) as store:
            return await action(store)

    return common.run_async(main)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _backfill_dict(found: backfills.Backfill, counts: dict[str, int] | None) -> dict[str, Any]:
    """A backfill as docs/cli-json/common.json describes it (`first` and `last` are null
    where the store did not read the keys: `list`)."""
    return {
        "backfill_id": found.backfill_id,
        "job": found.job_name,
        "status": found.status.value,
        "total": found.total,
        "submitted": found.cursor,
        "max_concurrent": found.max_concurrent,
        "rerun_of": found.rerun_of,
        "created_at": output.instant(found.created_at),
        "first": found.partitions[0] if found.partitions else None,
        "last": found.partitions[-1] if found.partitions else None,
        "partitions": counts,  # by the status of their latest run (`show` counts them)
    }
