"""Executors: how the steps of a run execute inside the run worker."""

from vigil.executors.base import (
    EventSink,
    ExecutionResult,
    ExecutionServices,
    Executor,
    NoOptions,
)
from vigil.executors.context import StepContext, StepLog
from vigil.executors.in_process import InProcessExecutor
from vigil.executors.multiprocess import MultiprocessExecutor, MultiprocessOptions
from vigil.executors.outputs import OutputStore, PickleOutputStore
from vigil.executors.plan import StepPlan

BUILTIN_EXECUTORS: dict[str, type[Executor]] = {
    "in_process": InProcessExecutor,
    "multiprocess": MultiprocessExecutor,
}

__all__ = [
    "BUILTIN_EXECUTORS",
    "EventSink",
    "ExecutionResult",
    "ExecutionServices",
    "Executor",
    "InProcessExecutor",
    "MultiprocessExecutor",
    "MultiprocessOptions",
    "NoOptions",
    "OutputStore",
    "PickleOutputStore",
    "StepContext",
    "StepLog",
    "StepPlan",
]
