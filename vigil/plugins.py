"""Pluggable classes chosen in vigil.yaml: a built-in short name or `module:Class`.

Each pluggable class declares `Options`, its own pydantic settings model; the options
written in vigil.yaml are validated against it here, once, at the edge.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, TypeVar, cast

import pydantic

from vigil import errors
from vigil.config import settings

T = TypeVar("T")


def resolve_class(
    kind: str, spec: str, builtins: Mapping[str, type[T]], base: type[object]
) -> type[T]:
    """The class named by a short name or `module:Class`; it must subclass `base`."""
    if spec in builtins:
        return builtins[spec]
    if ":" not in spec:
        known = ", ".join(sorted(builtins))
        raise errors.PluginError(
            f"{kind}.type: unknown {kind} {spec!r}; use one of {known} or 'module:Class'",
            f"{kind}.type",
        )
    module_name, _, attr = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise errors.PluginError(
            f"{kind}.type: cannot load {spec!r}: {exc}", f"{kind}.type"
        ) from None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise errors.PluginError(
            f"{kind}.type: {spec!r} is not a subclass of {base.__name__}", f"{kind}.type"
        )
    return cast(type[T], found)


def options_for(kind: str, cls: Any, raw: Mapping[str, Any]) -> pydantic.BaseModel:
    """Validate raw options against the class's own `Options` model."""
    model: type[pydantic.BaseModel] = cls.Options
    try:
        return model.model_validate(dict(raw))
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{kind}.options.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise errors.PluginError(problems, f"{kind}.options") from None


def build(
    kind: str,
    plugin: settings.PluginSettings,
    builtins: Mapping[str, type[T]],
    base: type[object],
) -> tuple[type[T], pydantic.BaseModel]:
    """Resolve a plugin's class and validate its options, without instantiating it."""
    cls = resolve_class(kind, plugin.type, builtins, base)
    return cls, options_for(kind, cls, plugin.options)
