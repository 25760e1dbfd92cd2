"""`--json`: one encoding for every command that prints something.

The rules (docs/cli-json/README.md; one JSON Schema per command beside it):
numbers are JSON numbers, an absent value is `null` (the key is always there), a time is
a string in ISO 8601 UTC with milliseconds and a `Z` (`2026-03-01T08:00:00.000Z`), an enum
is its value. A command prints one JSON document on stdout, or, when it streams (`run
events`, `run logs`, `daemon status --follow`), one JSON object a line. Errors are as
without `--json`: one line on stderr and the same exit code.

Imported by `--help` of the commands, so it imports nothing heavy.
"""

from __future__ import annotations

import datetime
import enum
import json
import pathlib
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def option(fn: F) -> F:
    """The `--json` flag, passed as `as_json`."""
    decorate = click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON (schema: docs/cli-json/).",
    )
    return decorate(fn)


def instant(ts: float | None) -> str | None:
    """A time in seconds since the epoch as ISO 8601 UTC (`...T08:00:00.000Z`); None stays None."""
    if ts is None:
        return None
    moment = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _default(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime.datetime):
        return instant(value.timestamp())
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


def encode(data: Any, *, indent: int | None = None) -> str:
    return json.dumps(data, indent=indent, sort_keys=True, default=_default)


def emit(data: Any) -> None:
    """One JSON document on stdout."""
    click.echo(encode(data, indent=2))


def emit_line(data: Any) -> None:
    """One JSON object on one line of stdout (for the commands that stream)."""
    click.echo(encode(data))
