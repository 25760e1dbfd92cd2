"""The VIGIL_* environment: which variables are settings, which are not, which are typos.

Every key of vigil.yaml can be set by a variable, `VIGIL_` plus its key path in capitals
joined by `__` (`VIGIL_DAEMON__HEARTBEAT_INTERVAL`); names are case-insensitive, and a
section may be given whole as JSON (`VIGIL_DAEMON='{"shutdown_grace": 5}'`). Below a
free-form mapping (a plugin's `options`) any name goes: the plugin validates it.

A `VIGIL_` variable that names no setting is an error, with the closest name as a hint, as
an unknown key in vigil.yaml is: a mistyped override silently ignored is a setting the
operator believes in and does not have. The variables vigil and its tests read that are
not settings are listed in `names`, once.
"""

from __future__ import annotations

import difflib
import functools
import json
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pydantic

from vigil import display
from vigil.config import names as names_mod
from vigil.config import settings as settings_mod

PREFIX = names_mod.PREFIX
DELIMITER = names_mod.DELIMITER


@functools.cache
def setting_names(
    model: type[pydantic.BaseModel] = settings_mod.InstanceSettings,
) -> tuple[frozenset[str], frozenset[str]]:
    """(every variable naming a setting or a section, the mappings that take any name)."""
    names: set[str] = set()
    open_ended: set[str] = set()
    _walk(model, PREFIX, names, open_ended)
    return frozenset(names), frozenset(open_ended)


def _walk(
    model: type[pydantic.BaseModel], prefix: str, names: set[str], open_ended: set[str]
) -> None:
    for field_name, field in model.model_fields.items():
        name = prefix + field_name.upper()
        names.add(name)
        section = _section_of(field.annotation)
        if section is not None:
            _walk(section, name + DELIMITER, names, open_ended)
        elif _is_mapping(field.annotation):
            open_ended.add(name)


def _members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _section_of(annotation: Any) -> type[pydantic.BaseModel] | None:
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, pydantic.BaseModel):
            return member
    return None


def _is_mapping(annotation: Any) -> bool:
    return any(typing.get_origin(m) in (dict, Mapping) for m in _members(annotation))


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line for each VIGIL_* variable that names no setting, with a suggestion."""
    names, open_ended = setting_names()
    lines = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(PREFIX) or _known(upper, names, open_ended):
            continue
        hint = _suggestion(upper, names)
        lines.append(display.printable(f"environment variable {variable}: no such setting{hint}"))
    return lines


def _suggestion(upper: str, names: frozenset[str]) -> str:
    # Compared without the prefix they all share, which would make any two names look alike.
    bare = {name.removeprefix(PREFIX): name for name in names}
    close = difflib.get_close_matches(upper.removeprefix(PREFIX), sorted(bare), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {bare[close[0]]}?"
    return "; the names are VIGIL_ and the key path in vigil.yaml joined by __"


def _known(upper: str, names: frozenset[str], open_ended: frozenset[str]) -> bool:
    if upper in names or names_mod.is_not_setting(upper):
        return True
    return any(upper.startswith(mapping + DELIMITER) for mapping in open_ended)


def variable_of(loc: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The variable that set the value at this key path (or the section around it)."""
    by_upper = {name.upper(): name for name in environ}
    for size in range(len(loc), 0, -1):
        found = by_upper.get(name_of(loc[:size]))
        if found is not None:
            return found
    return None


def variables_below(key: str, environ: Mapping[str, str]) -> list[str]:
    """The variables that set keys inside the top-level section `key`."""
    head = name_of([key]) + DELIMITER
    return sorted(name for name in environ if name.upper().startswith(head))


def name_of(loc: Iterable[str]) -> str:
    return PREFIX + DELIMITER.join(part.upper() for part in loc)


def unparsable(field: str, environ: Mapping[str, str]) -> str:
    """Why the variables of a top-level section could not be read (a JSON value that is not)."""
    candidates = [v for v in (variable_of([field], environ),) if v] + variables_below(
        field, environ
    )
    # Only a section's value is read as JSON: try the values that look like one first.
    for variable in sorted(candidates, key=lambda v: environ[v].lstrip()[:1] not in "{["):
        try:
            json.loads(environ[variable])
        except ValueError as exc:
            return f"environment variable {variable}: not valid JSON: {exc}"
    shown = ", ".join(candidates) or name_of([field])
    return f"environment variable {shown}: cannot be read as the section {field!r}"
