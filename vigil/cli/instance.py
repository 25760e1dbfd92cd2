"""`vigil instance ...` and `vigil config ...`: the instance's schema and settings.

The loader, the store and the plugins are imported by the commands, not by `--help`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from vigil import runs
from vigil.cli import common, output

if TYPE_CHECKING:
    from vigil.config import settings as settings_mod
    from vigil.storage import engine


@click.group("instance")
def instance_group() -> None:
    """Create, migrate and describe the instance store."""


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
    """Validate the settings and the pluggable classes they name."""
    from vigil import assembly
    from vigil.config import loader
    from vigil.daemon import extension

    st = common.state()
    assembly.check_plugins(st.settings)
    extension.resolve_loops(st.settings.daemon)
    loader.store_target(st.settings)
    if as_json:
        output.emit({"config_file": str(st.home / loader.CONFIG_FILE), "ok": True})
    else:
        click.echo(f"{st.home / loader.CONFIG_FILE}: ok")
