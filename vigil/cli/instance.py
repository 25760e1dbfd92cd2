"""`vigil instance ...` and `vigil config ...`: the instance's schema and settings.

The loader, the store and the plugins are imported by the commands, not by `--help`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import click

from vigil import runs
from vigil.cli import common, output

if TYPE_CHECKING:
    from vigil import retention
    from vigil.config import settings as settings_mod
    from vigil.storage import engine

ENDED = ("SUCCESS", "FAILURE", "CANCELED")


@click.group("instance")
def instance_group() -> None:
    """Create, migrate, describe and purge the instance store."""


@instance_group.command("migrate")
@output.option
@common.handle_errors
def migrate(as_json: bool) -> None:
    """Bring the store to this vigil's schema (creating it if empty)."""
    from vigil.config import loader
    from vigil.storage import engine

    target = loader.store_target(common.state().settings)

    async def main() -> tuple[engine.SchemaStatus, engine.SchemaStatus]:
        before = await engine.schema_status(target)
        return before, await engine.migrate(target)

    before, after = common.run_async(main)
    if as_json:
        output.emit(
            {
                "store": target.redacted(),
                "from": before.current,
                "to": after.current,
                "migrated": before.current != after.current,
            }
        )
    elif before.current == after.current:
        click.echo(f"store {target.redacted()} is already at schema {after.current}")
    else:
        was = before.current or "empty"
        click.echo(f"store {target.redacted()} migrated from {was} to {after.current}")


@instance_group.command("info")
@output.option
@common.handle_errors
def info(as_json: bool) -> None:
    """Where the instance lives, its schema, and how many runs it holds."""
    from vigil.config import loader
    from vigil.storage import engine

    settings = common.state().settings
    target = loader.store_target(settings)

    async def main() -> tuple[engine.SchemaStatus, dict[runs.RunStatus, int]]:
        status = await engine.schema_status(target)
        if not status.is_current:
            return status, {}
        async with common.opened_store(settings) as store:
            return status, await store.count_runs_by_status()

    status, counts = common.run_async(main)
    if as_json:
        output.emit(_info_dict(settings, target.redacted(), status, counts))
        return
    click.echo(f"home      {settings.home.absolute()}")
    click.echo(f"store     {target.redacted()}")
    state = (
        "current" if status.is_current else f"needs `vigil instance migrate` (head {status.head})"
    )
    click.echo(f"schema    {status.current or 'empty'} ({state})")
    click.echo(f"launcher  {settings.run_launcher.type}")
    click.echo(f"executor  {settings.executor.type}")
    click.echo(f"locations {', '.join(loc.location_name for loc in settings.workspace) or '-'}")
    summary = ", ".join(f"{s.value}={n}" for s, n in sorted(counts.items())) or "none"
    click.echo(f"runs      {summary}")


def _info_dict(
    settings: settings_mod.InstanceSettings,
    store: str,
    status: engine.SchemaStatus,
    counts: dict[runs.RunStatus, int],
) -> dict[str, object]:
    return {
        "home": str(settings.home.absolute()),
        "store": store,
        "schema": {"current": status.current, "head": status.head, "is_current": status.is_current},
        "launcher": settings.run_launcher.type,
        "executor": settings.executor.type,
        "locations": [loc.location_name for loc in settings.workspace],
        "runs": {s.value: n for s, n in sorted(counts.items())} if status.is_current else None,
    }


@instance_group.command("purge")
@click.option(
    "--older-than", required=True, metavar="AGE", help="Runs that ended this long ago: 30d, 12h."
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(ENDED, case_sensitive=False),
    help="Only runs that ended so (repeatable; default: every end).",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@output.option
@common.handle_errors
def purge(older_than: str, statuses: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Delete ended runs with their events, compute logs and outputs."""
    import time

    from vigil import retention

    try:
        age = retention.parse_age(older_than)
    except ValueError as exc:
        common.fail(f"--older-than: {exc}", common.EXIT_USAGE)
    settings = common.state().settings
    now = time.time()
    chosen = [runs.RunStatus(s.upper()) for s in statuses or ENDED]
    rule = retention.Rule(
        dict.fromkeys(chosen, now - age),
        settings.retention.batch_size,
        spare_retries=settings.run_retries.enabled,
    )
    purged = common.run_async(lambda: _purge(rule, now, dry_run))
    if as_json:
        output.emit({"dry_run": dry_run, **dataclasses.asdict(purged)})
    elif dry_run:
        click.echo(f"would purge {purged.runs} runs and {purged.events} events (dry run)")
    else:
        click.echo(
            f"purged {purged.runs} runs, {purged.events} events and {purged.files} run directories"
        )


async def _purge(rule: retention.Rule, now: float, dry_run: bool) -> retention.Purged:
    """Count, or purge batch after batch until a batch is not full."""
    from vigil import purge as purge_mod

    settings = common.state().settings
    async with common.opened_store(settings) as store:
        if dry_run:
            return await store.count_purgeable(rule)
        purger = purge_mod.Purger(store, purge_mod.roots(settings))
        total = await purger.leftovers()
        while True:
            batch = await purger.batch(rule, now)
            total += batch
            if not purge_mod.is_full(batch, rule):
                return total


@click.group("config")
def config_group() -> None:
    """Show and check the instance settings."""


@config_group.command("show")
@output.option
@common.handle_errors
def show(as_json: bool) -> None:
    """Print the effective settings (vigil.yaml plus VIGIL_* overrides), secrets redacted."""
    import yaml

    from vigil.config import loader

    data = loader.redacted(common.state().settings)
    if as_json:
        output.emit(data)
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


@config_group.command("check")
@output.option
@common.handle_errors
def check(as_json: bool) -> None:
    """Validate the settings, the pluggable classes and the storage filesystems they name."""
    from vigil import assembly, blobs
    from vigil.config import loader
    from vigil.daemon import extension

    st = common.state()
    assembly.check_plugins(st.settings)
    extension.resolve_loops(st.settings.daemon)
    loader.store_target(st.settings)
    blobs.check(st.settings.compute_logs_url, "logs_dir")
    blobs.check(st.settings.outputs_url, "storage_dir")
    assembly.check_launcher_reach(st.settings)
    if as_json:
        output.emit({"config_file": str(st.home / loader.CONFIG_FILE), "ok": True})
    else:
        click.echo(f"{st.home / loader.CONFIG_FILE}: ok")
