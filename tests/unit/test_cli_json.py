"""Every command that prints has `--json` and a schema in docs/cli-json/; the schemas keep
the rules (every key always there, null when absent); one encoding for times and enums.

The schemas are checked against real output in tests/acceptance/test_cli_json.py.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Iterator
from typing import Any

import click
import pytest

from tests.acceptance import schemas
from vigil import backfills, runs, ticks
from vigil.cli import main, output
from vigil.daemon import health

# Commands with no --json, and why.
NO_JSON = {
    "daemon run": "runs in the foreground; what it prints is its log (--log-format json)",
    "worker run": "started by the launchers; its result is the run's status in the store",
    "worker template": "hidden: the subprocess launcher's fork protocol on stdin and stdout",
    "celery worker": "runs Celery's worker in the foreground; what it prints is its log",
}


def commands() -> Iterator[tuple[str, click.Command]]:
    """Every command of the CLI tree by its words (`run launch`), and each group that
    prints something when called alone (`queue`)."""
    ctx = click.Context(main.cli)

    def walk(words: str, group: click.Group) -> Iterator[tuple[str, click.Command]]:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, name
            path = f"{words} {name}".strip()
            if isinstance(command, click.Group):
                if command.invoke_without_command:
                    yield path, command
                yield from walk(path, command)
            else:
                yield path, command

    yield from walk("", main.cli)


ALL = dict(commands())


@pytest.mark.parametrize("path", sorted(set(ALL) - set(NO_JSON)))
def test_each_command_has_a_json_flag_and_a_schema(path: str) -> None:
    flags = [p for p in ALL[path].params if "--json" in getattr(p, "opts", ())]
    assert len(flags) == 1, f"vigil {path} has no --json"
    assert isinstance(flags[0], click.Option)
    assert flags[0].is_flag
    assert (schemas.SCHEMAS / f"{path.replace(' ', '-')}.json").is_file(), f"no schema: {path}"


def test_the_commands_without_json_exist_and_every_schema_names_a_command() -> None:
    assert set(NO_JSON) <= set(ALL)
    named = {f.stem for f in schemas.SCHEMAS.glob("*.json")} - {"common"}
    assert named == {p.replace(" ", "-") for p in set(ALL) - set(NO_JSON)}


def _objects(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            yield where, node
        for key, value in node.items():
            yield from _objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _objects(value, f"{where}/{index}")


@pytest.mark.parametrize("name", sorted(f.name for f in schemas.SCHEMAS.glob("*.json")))
def test_every_key_is_always_there_and_no_other(name: str) -> None:
    """Absent is null, never a missing key: each object requires all its properties, and
    has no other (but for a map whose other values have a schema: config show's sections)."""
    found = list(_objects(schemas.schema_file(name), name))
    for where, node in found:
        assert sorted(node["required"]) == sorted(node["properties"]), where
        assert node.get("additionalProperties") is False or name == "config-show.json", where


@pytest.mark.parametrize(
    ("ref", "values"),
    [
        ("common.json#/$defs/run_status", runs.RunStatus),
        ("common.json#/$defs/tick/properties/status", ticks.TickStatus),
        ("common.json#/$defs/backfill/properties/status", backfills.BackfillStatus),
        ("daemon-status.json#/items/properties/state", health.Health),
    ],
)
def test_enums_in_the_schemas_are_the_codes(ref: str, values: type[enum.Enum]) -> None:
    assert schemas.resolve(ref)["enum"] == [v.value for v in values]


GOOD_RUN: dict[str, Any] = {
    "run_id": "r1",
    "job": "orders",
    "status": "QUEUED",
    "code_location": "examples",
    "tags": {"team": "data"},
    "run_config": {},
    "parent_run_id": None,
    "root_run_id": "r1",
    "retry_number": 0,
    "step_selection": None,
    "launcher_info": {},
    "created_at": "2026-03-01T08:00:00.000Z",
    "start_time": None,
    "end_time": None,
    "worker": None,
}


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("retry_number", "0"),  # a number as a string
        ("retry_number", True),
        ("status", "queued"),
        ("created_at", 1772352000.0),  # a time as a number
        ("created_at", "2026-03-01T09:00:00+01:00"),  # not UTC with a Z
        ("start_time", "yesterday"),
        ("tags", {"team": 1}),
        ("extra", 1),
    ],
)
def test_the_validator_refuses_what_breaks_the_rules(key: str, bad: object) -> None:
    schemas.validate(GOOD_RUN, schemas.schema("run launch"))
    broken = {**copy.deepcopy(GOOD_RUN), key: bad}
    with pytest.raises(schemas.Invalid, match=key):
        schemas.validate(broken, schemas.schema("run launch"))


def test_the_validator_refuses_a_missing_key() -> None:
    broken = {k: v for k, v in GOOD_RUN.items() if k != "end_time"}
    with pytest.raises(schemas.Invalid, match="end_time"):
        schemas.validate(broken, schemas.schema("run launch"))


def test_times_are_iso_utc_with_milliseconds_and_a_z() -> None:
    assert output.instant(0) == "1970-01-01T00:00:00.000Z"
    assert output.instant(1772352000.25) == "2026-03-01T08:00:00.250Z"
    assert output.instant(None) is None


def test_enums_and_sets_encode_as_values_and_anything_else_is_refused() -> None:
    assert output.encode({"s": runs.RunStatus.QUEUED, "k": {"b", "a"}}) == (
        '{"k": ["a", "b"], "s": "QUEUED"}'
    )
    with pytest.raises(TypeError, match="object is not JSON data"):
        output.encode({"x": object()})
