"""The commands' `--json` output checked against their schemas in docs/cli-json/.

A small validator for the part of JSON Schema those files use: `type` (a name or a list of
names, "null" among them for a nullable value), `enum`, `const`, `properties`, `required`,
`additionalProperties` (false, or the schema of every other value), `items`, `$ref` to
`common.json#/$defs/...` or `#/$defs/...`, and `format: date-time` (ISO 8601 UTC ending in
`Z`). A schema with `"x-vigil-lines": true` describes each line of a command that prints one
JSON object a line. Keywords the files do not use are refused, so that a schema never
promises what nothing checks.
"""

from __future__ import annotations

import datetime
import functools
import json
from typing import Any

from tests.acceptance.harness import REPO

SCHEMAS = REPO / "docs" / "cli-json"
CHECKED = {"type", "enum", "const", "properties", "required", "additionalProperties", "items"}
CHECKED |= {"$ref", "format"}
NOTES = {"$schema", "$id", "$defs", "title", "description", "x-vigil-lines"}
TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


class Invalid(AssertionError):
    pass


@functools.cache
def schema_file(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return data


def schema(command: str) -> dict[str, Any]:
    """The schema of a command: `run launch` is docs/cli-json/run-launch.json."""
    return schema_file(command.replace(" ", "-") + ".json")


def check(command: str, stdout: str) -> Any:
    """The command's output, parsed and validated: the document, or the list of lines."""
    found = schema(command)
    if found.get("x-vigil-lines"):
        lines = [json.loads(line) for line in stdout.splitlines()]
        for number, line in enumerate(lines, 1):
            validate(line, found, f"{command} line {number}")
        return lines
    document = json.loads(stdout)
    validate(document, found, command)
    return document


def validate(value: Any, node: dict[str, Any], where: str = "$") -> None:
    unknown = set(node) - CHECKED - NOTES
    if unknown:
        raise Invalid(f"{where}: the schema uses {sorted(unknown)}, which this validator ignores")
    if "$ref" in node:
        validate(value, resolve(node["$ref"]), where)
    if "type" in node:
        _check_type(value, node["type"], where)
    if "enum" in node and value not in node["enum"]:
        raise Invalid(f"{where}: {value!r} is not one of {node['enum']}")
    if "const" in node and value != node["const"]:
        raise Invalid(f"{where}: {value!r} is not {node['const']!r}")
    if node.get("format") == "date-time" and isinstance(value, str):
        _check_time(value, where)
    if isinstance(value, dict):
        _check_object(value, node, where)
    if isinstance(value, list) and "items" in node:
        for index, item in enumerate(value):
            validate(item, node["items"], f"{where}[{index}]")


def resolve(ref: str) -> dict[str, Any]:
    file, _, pointer = ref.partition("#")
    node: Any = schema_file(file or "common.json")
    for part in pointer.strip("/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def _check_type(value: Any, wanted: str | list[str], where: str) -> None:
    names = [wanted] if isinstance(wanted, str) else wanted
    for name in names:
        if isinstance(value, TYPES[name]) and not (
            isinstance(value, bool) and name in ("integer", "number")
        ):
            return
    raise Invalid(f"{where}: {value!r} is not of type {wanted}")


def _check_time(value: str, where: str) -> None:
    if not value.endswith("Z"):
        raise Invalid(f"{where}: time {value!r} is not UTC with a Z")
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{where}: {value!r} is not an ISO 8601 time") from None
    if parsed.utcoffset() != datetime.timedelta(0):
        raise Invalid(f"{where}: time {value!r} is not UTC")


def _check_object(value: dict[str, Any], node: dict[str, Any], where: str) -> None:
    properties: dict[str, Any] = node.get("properties", {})
    for key in node.get("required", []):
        if key not in value:
            raise Invalid(f"{where}: no key {key!r}")
    extra = node.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            validate(item, properties[key], f"{where}.{key}")
        elif extra is False:
            raise Invalid(f"{where}: key {key!r} is not in the schema")
        elif isinstance(extra, dict):
            validate(item, extra, f"{where}.{key}")
