"""Loops named in vigil.yaml: `daemon.loops: [{type: module:Class, options: {...}}]`.

A user's loop subclasses `ExtensionLoop` and may declare its own `Options` (a subclass of
`LoopOptions`, which carries the name, interval and timeout). It is built with its
validated options and a `LoopContext`: the store, the clock and the workspace.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import pydantic

from vigil import errors, plugins
from vigil.config import settings as settings_mod
from vigil.daemon import clock as clock_mod
from vigil.daemon import loop
from vigil.storage import store as store_mod

# The supervisor's own heartbeat row and the built-in loops go by these names.
RESERVED_NAMES = frozenset({"supervisor", "queue", "scheduler", "sensors", "monitor", "retries"})


class LoopOptions(pydantic.BaseModel):
    """What every configured loop accepts; a loop's own `Options` may add to it."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str | None = pydantic.Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    interval: settings_mod.Interval = 10.0
    timeout: settings_mod.Interval = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class LoopContext:
    """What a configured loop may use: the store, the daemon's clock, the workspace."""

    store: store_mod.Store
    clock: clock_mod.Clock
    workspace: tuple[settings_mod.CodeLocationSettings, ...]


class ExtensionLoop(loop.Loop):
    """Base of loops named in vigil.yaml by `module:Class`."""

    Options: ClassVar[type[LoopOptions]] = LoopOptions
    default_name: ClassVar[str | None] = None

    def __init__(self, options: LoopOptions, context: LoopContext) -> None:
        super().__init__()
        self.options = options
        self.context = context
        self.name = options.name or self.default_name or type(self).__name__.lower()
        self.interval = options.interval
        self.timeout = options.timeout


Resolved = tuple[type[ExtensionLoop], LoopOptions]


def resolve_loops(daemon: settings_mod.DaemonSettings) -> list[Resolved]:
    """Each configured loop's class and validated options; raises PluginError."""
    resolved = [_resolve(f"daemon.loops.{i}", plugin) for i, plugin in enumerate(daemon.loops)]
    _check_names([_name_of(cls, options) for cls, options in resolved])
    return resolved


def build_loops(resolved: Sequence[Resolved], context: LoopContext) -> list[loop.Loop]:
    """Instantiate the resolved loops; a constructor that raises is a PluginError."""
    return [_build(i, cls, options, context) for i, (cls, options) in enumerate(resolved)]


def _build(
    index: int, cls: type[ExtensionLoop], options: LoopOptions, context: LoopContext
) -> loop.Loop:
    try:
        return cls(options, context)
    except Exception as exc:
        raise errors.PluginError(
            f"daemon.loops.{index}: {cls.__module__}:{cls.__qualname__} could not be built: "
            f"{type(exc).__name__}: {exc}",
            f"daemon.loops.{index}",
        ) from exc


def _resolve(kind: str, plugin: settings_mod.PluginSettings) -> Resolved:
    if ":" not in plugin.type:
        raise errors.PluginError(
            f"{kind}.type: {plugin.type!r} is not a 'module:Class'", f"{kind}.type"
        )
    no_builtins: dict[str, type[ExtensionLoop]] = {}
    cls, options = plugins.build(kind, plugin, no_builtins, ExtensionLoop)
    if not isinstance(options, LoopOptions):
        raise errors.PluginError(
            f"{kind}.type: {plugin.type!r} declares Options that do not extend LoopOptions",
            f"{kind}.type",
        )
    return cls, options


def _name_of(cls: type[ExtensionLoop], options: LoopOptions) -> str:
    return options.name or cls.default_name or cls.__name__.lower()


def _check_names(names: Sequence[str]) -> None:
    for name in names:
        if name in RESERVED_NAMES:
            raise errors.PluginError(
                f"daemon.loops: the loop name {name!r} is reserved", "daemon.loops"
            )
        if names.count(name) > 1:
            raise errors.PluginError(
                f"daemon.loops: two loops are named {name!r}; give one `options.name`",
                "daemon.loops",
            )
