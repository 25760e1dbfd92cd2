"""Run launchers: the interface and the built-in ones, by short name."""

from vigil.launchers.base import HealthCheck, LaunchContext, RunLauncher, WorkerHealth
from vigil.launchers.process import SubprocessLauncher

BUILTIN_LAUNCHERS: dict[str, type[RunLauncher]] = {"subprocess": SubprocessLauncher}

__all__ = [
    "BUILTIN_LAUNCHERS",
    "HealthCheck",
    "LaunchContext",
    "RunLauncher",
    "SubprocessLauncher",
    "WorkerHealth",
]
