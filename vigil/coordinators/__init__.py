"""Run coordinators: the interface and the built-in ones, by short name."""

from vigil.coordinators.base import RunCoordinator
from vigil.coordinators.immediate import ImmediateCoordinator

BUILTIN_COORDINATORS: dict[str, type[RunCoordinator]] = {"immediate": ImmediateCoordinator}

__all__ = ["BUILTIN_COORDINATORS", "ImmediateCoordinator", "RunCoordinator"]
