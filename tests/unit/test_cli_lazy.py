"""The CLI's help and version import nothing heavy; the lazy groups' summaries are true."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tomllib

import click
import pytest

from tests import imports
from vigil import version
from vigil.cli import daemon, lazy, main

HEAVY = (
    "sqlalchemy",
    "pydantic",
    "pydantic_settings",
    "anyio",
    "croniter",
    "prometheus_client",
    "yaml",
    "vigil.config.loader",
    "vigil.storage.sql",
    "fsspec",
    "importlib.metadata",
    "celery",
    "kombu",
    "redis",
)

PROBE = imports.probe(HEAVY)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        *(
            [group, "--help"]
            for group in (
                "run",
                "daemon",
                "queue",
                "schedule",
                "sensor",
                "instance",
                "config",
                "definitions",
                "job",
                "backfill",
                "worker",
                "celery",
                "partitions",
            )
        ),
    ],
)
def test_help_and_version_import_nothing_heavy(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip(), done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("group", [main.cli, daemon.daemon_group])
def test_summaries_are_the_commands_own_help(group: click.Group) -> None:
    assert isinstance(group, lazy.LazyGroup)
    ctx = click.Context(group)
    assert set(group.summaries) == set(group.list_commands(ctx))
    for name, summary in group.summaries.items():
        command = group.get_command(ctx, name)
        assert command is not None
        for limit in (40, 80, 200):
            shown = click.Command(name, help=summary).get_short_help_str(limit)
            assert shown == command.get_short_help_str(limit), name


def test_the_version_is_the_projects() -> None:
    pyproject = pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    assert project["version"] == version.VERSION
