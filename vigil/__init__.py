"""vigil: deploy and operate Python data pipelines.

The public API for user code: steps, jobs, their retry policy and context, Definitions.
The names load on first use (PEP 562), so that commands which never touch user code,
such as `vigil daemon status`, do not pay for importing the definitions API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vigil.definitions.definitions import Definitions
    from vigil.definitions.job import JobDef, job
    from vigil.definitions.step import RetryPolicy, StepDef, step
    from vigil.executors.context import StepContext

__all__ = [
    "Definitions",
    "JobDef",
    "RetryPolicy",
    "StepContext",
    "StepDef",
    "job",
    "step",
]

_HOMES = {
    "Definitions": "vigil.definitions.definitions",
    "JobDef": "vigil.definitions.job",
    "job": "vigil.definitions.job",
    "RetryPolicy": "vigil.definitions.step",
    "StepDef": "vigil.definitions.step",
    "step": "vigil.definitions.step",
    "StepContext": "vigil.executors.context",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'vigil' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
