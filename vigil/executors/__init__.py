"""Executors: how the steps of a run execute inside the run worker.

`BUILTIN_EXECUTORS` imports the celery executor's module (and Celery) only when that
executor is asked for, so a run worker of another executor never imports Celery.
"""

import importlib
from collections.abc import Iterator, Mapping

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

_EAGER: dict[str, type[Executor]] = {
    "in_process": InProcessExecutor,
    "multiprocess": MultiprocessExecutor,
}
# Short name -> "module:Class", imported when that name is looked up.
_LAZY = {"celery": "vigil.executors.celery:CeleryExecutor"}


class _Builtins(Mapping[str, type[Executor]]):
    """The built-in executors by short name; a lazy one is imported when looked up."""

    def __getitem__(self, name: str) -> type[Executor]:
        if name in _EAGER:
            return _EAGER[name]
        module_name, _, attribute = _LAZY[name].partition(":")
        found: type[Executor] = getattr(importlib.import_module(module_name), attribute)
        return found

    def __iter__(self) -> Iterator[str]:
        yield from _EAGER
        yield from _LAZY

    def __len__(self) -> int:
        return len(_EAGER) + len(_LAZY)


BUILTIN_EXECUTORS: Mapping[str, type[Executor]] = _Builtins()
# The executors that run steps on this machine (the celery executor needs a broker).
LOCAL_EXECUTORS: Mapping[str, type[Executor]] = dict(_EAGER)

__all__ = [
    "BUILTIN_EXECUTORS",
    "LOCAL_EXECUTORS",
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
