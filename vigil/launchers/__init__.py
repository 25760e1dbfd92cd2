"""Run launchers: the interface and the built-in ones, by short name.

The built-in launchers are imported on first use (PEP 562, and `BUILTIN_LAUNCHERS` imports
a launcher's module only when that launcher is asked for), so that reading
`launchers.base` (the run monitor's health words, the CLI's renderers) imports neither
psutil nor Celery, and a subprocess instance never imports Celery.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from vigil.launchers.base import HealthCheck, LaunchContext, RunLauncher, WorkerHealth

if TYPE_CHECKING:
    from vigil.launchers.process import SubprocessLauncher

    BUILTIN_LAUNCHERS: Mapping[str, type[RunLauncher]]

__all__ = [
    "BUILTIN_LAUNCHERS",
    "HealthCheck",
    "LaunchContext",
    "RunLauncher",
    "SubprocessLauncher",
    "WorkerHealth",
]

# Short name -> "module:Class", imported when that name is looked up.
_BUILTIN = {
    "subprocess": "vigil.launchers.process:SubprocessLauncher",
    "celery": "vigil.launchers.celery:CeleryLauncher",
}


class _Builtins(Mapping[str, type[RunLauncher]]):
    """The built-in launchers by short name; a class is imported when it is looked up."""

    def __getitem__(self, name: str) -> type[RunLauncher]:
        module_name, _, attribute = _BUILTIN[name].partition(":")
        found: type[RunLauncher] = getattr(importlib.import_module(module_name), attribute)
        return found

    def __contains__(self, name: object) -> bool:
        return name in _BUILTIN

    def __iter__(self) -> Iterator[str]:
        return iter(_BUILTIN)

    def __len__(self) -> int:
        return len(_BUILTIN)


def __getattr__(name: str) -> Any:
    if name == "BUILTIN_LAUNCHERS":
        return _Builtins()
    if name == "SubprocessLauncher":
        return _Builtins()["subprocess"]
    raise AttributeError(f"module 'vigil.launchers' has no attribute {name!r}")
