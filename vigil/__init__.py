"""vigil: deploy and operate Python data pipelines.

The public API for user code: steps, jobs, their retry policy and context, Definitions.
"""

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
