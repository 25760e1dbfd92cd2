"""Run coordinators: the interface and the built-in ones, by short name."""

from vigil.coordinators.base import CoordinatorStore, LaunchObserver, RunCoordinator, RunQueue
from vigil.coordinators.immediate import ImmediateCoordinator
from vigil.coordinators.queued import QueuedCoordinator

BUILTIN_COORDINATORS: dict[str, type[RunCoordinator]] = {
    "immediate": ImmediateCoordinator,
    "queued": QueuedCoordinator,
}

__all__ = [
    "BUILTIN_COORDINATORS",
    "CoordinatorStore",
    "ImmediateCoordinator",
    "LaunchObserver",
    "QueuedCoordinator",
    "RunCoordinator",
    "RunQueue",
]
