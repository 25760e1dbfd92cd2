"""Run launchers: the interface and the built-in ones, by short name.

The subprocess launcher (and psutil with it) is imported on first use (PEP 562), so that
reading `launchers.base` (the run monitor's health words, the CLI's renderers) does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vigil.launchers.base import HealthCheck, LaunchContext, RunLauncher, WorkerHealth

if TYPE_CHECKING:
    from vigil.launchers.process import SubprocessLauncher

    BUILTIN_LAUNCHERS: dict[str, type[RunLauncher]]

__all__ = [
    "BUILTIN_LAUNCHERS",
    "HealthCheck",
    "LaunchContext",
    "RunLauncher",
    "SubprocessLauncher",
    "WorkerHealth",
]


def __getattr__(name: str) -> Any:
    if name not in ("SubprocessLauncher", "BUILTIN_LAUNCHERS"):
        raise AttributeError(f"module 'vigil.launchers' has no attribute {name!r}")
    from vigil.launchers import process

    builtin: dict[str, type[RunLauncher]] = {"subprocess": process.SubprocessLauncher}
    return process.SubprocessLauncher if name == "SubprocessLauncher" else builtin
