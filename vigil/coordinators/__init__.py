"""Run coordinators: the interface and the built-in ones, by short name.

The names below are imported on first use: `vigil queue` uses the admission rule
(`coordinators.admission`, plain data) without the coordinators' pydantic and anyio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vigil.coordinators.base import (
        CoordinatorStore,
        LaunchObserver,
        RunCoordinator,
        RunQueue,
    )
    from vigil.coordinators.immediate import ImmediateCoordinator
    from vigil.coordinators.queued import QueuedCoordinator

    BUILTIN_COORDINATORS: dict[str, type[RunCoordinator]]

_HOMES = {
    **dict.fromkeys(("CoordinatorStore", "LaunchObserver", "RunCoordinator", "RunQueue"), "base"),
    "ImmediateCoordinator": "immediate",
    "QueuedCoordinator": "queued",
}


def __getattr__(name: str) -> Any:
    if name == "BUILTIN_COORDINATORS":
        return {
            "immediate": __getattr__("ImmediateCoordinator"),
            "queued": __getattr__("QueuedCoordinator"),
        }
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'vigil.coordinators' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vigil.coordinators.{home}"), name)


__all__ = [
    "BUILTIN_COORDINATORS",
    "CoordinatorStore",
    "ImmediateCoordinator",
    "LaunchObserver",
    "QueuedCoordinator",
    "RunCoordinator",
    "RunQueue",
]
