"""Jobs: a named DAG of steps, checked when the code loads, and their run config."""

from __future__ import annotations

import dataclasses
import heapq
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pydantic

from vigil import errors
from vigil import partitions as partitions_mod
from vigil.definitions import step as step_mod

_RUN_CONFIG_KEYS = ("steps",)


@dataclasses.dataclass(frozen=True)
class JobDef:
    """A job; build it with `job()`, which validates the DAG and orders the steps."""

    name: str
    steps: Mapping[str, step_mod.StepDef]
    description: str | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # One run per key; a run names its key in the tag `vigil/partition`.
    partitions: partitions_mod.PartitionsDef | None = None

    def topological_order(self) -> tuple[str, ...]:
        return tuple(self.steps)

    def upstream(self, step: str) -> tuple[str, ...]:
        return self._step(step).inputs

    def downstream(self, step: str) -> tuple[str, ...]:
        self._step(step)
        return tuple(name for name, s in self.steps.items() if step in s.inputs)

    def downstream_closure(self, steps: Iterable[str]) -> tuple[str, ...]:
        """The given steps and everything downstream of them, in topological order."""
        closure = {self._step(name).name for name in steps}
        for name, s in self.steps.items():
            if closure.intersection(s.inputs):
                closure.add(name)
        return tuple(name for name in self.steps if name in closure)

    def validate_run_config(
        self, run_config: Mapping[str, Any]
    ) -> dict[str, pydantic.BaseModel | None]:
        """Validate `{"steps": {step: {...}}}`: each step's config, or None for steps without."""
        step_configs = _step_section(run_config)
        for name in step_configs:
            if name not in self.steps:
                raise errors.RunConfigError(
                    f"run config: steps.{name}: job '{self.name}' has no step named '{name}'"
                )
        return {name: _step_config(s, step_configs.get(name)) for name, s in self.steps.items()}

    def _step(self, name: str) -> step_mod.StepDef:
        try:
            return self.steps[name]
        except KeyError:
            raise errors.NotFound(f"job '{self.name}' has no step named '{name}'") from None


def job(
    name: str,
    steps: Sequence[step_mod.StepDef],
    *,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    partitions: partitions_mod.PartitionsDef | None = None,
) -> JobDef:
    """Declare a job; a duplicate step, a missing input or a cycle raises DefinitionError."""
    if not name:
        raise errors.DefinitionError("a job needs a non-empty name")
    if partitions is not None and not isinstance(partitions, partitions_mod.PartitionsDef):
        raise errors.DefinitionError(
            f"job '{name}': partitions must come from daily_partitions(), static_partitions()... "
            f"(got {partitions!r})"
        )
    by_name = _index(name, steps)
    _check_inputs(name, by_name)
    ordered = {n: by_name[n] for n in _topological(name, by_name)}
    return JobDef(
        name=name,
        steps=types.MappingProxyType(ordered),
        description=description,
        tags=types.MappingProxyType(dict(tags or {})),
        partitions=partitions,
    )


def _index(job_name: str, steps: Sequence[step_mod.StepDef]) -> dict[str, step_mod.StepDef]:
    by_name: dict[str, step_mod.StepDef] = {}
    for s in steps:
        if not isinstance(s, step_mod.StepDef):
            raise errors.DefinitionError(
                f"job '{job_name}': {s!r} is not a step (decorate it with @step)"
            )
        if s.name in by_name:
            raise errors.DefinitionError(f"job '{job_name}' has two steps named '{s.name}'")
        by_name[s.name] = s
    return by_name


def _check_inputs(job_name: str, by_name: Mapping[str, step_mod.StepDef]) -> None:
    for s in by_name.values():
        for upstream in s.inputs:
            if upstream not in by_name:
                raise errors.DefinitionError(
                    f"step '{s.name}' of job '{job_name}' takes input '{upstream}' "
                    f"but the job has no step named '{upstream}'"
                )


def _topological(job_name: str, by_name: Mapping[str, step_mod.StepDef]) -> list[str]:
    """Kahn's algorithm, always taking the ready step declared first."""
    names = list(by_name)
    position = {n: i for i, n in enumerate(names)}
    waiting = {n: len(set(by_name[n].inputs)) for n in names}
    ready = [position[n] for n in names if waiting[n] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        current = names[heapq.heappop(ready)]
        order.append(current)
        for n in names:
            if current in by_name[n].inputs:
                waiting[n] -= 1
                if waiting[n] == 0:
                    heapq.heappush(ready, position[n])
    if len(order) < len(names):
        cycle = _find_cycle(by_name, set(names) - set(order))
        raise errors.DefinitionError(
            f"job '{job_name}' has a cycle: steps {' -> '.join(cycle)} depend on each other"
        )
    return order


def _find_cycle(by_name: Mapping[str, step_mod.StepDef], stuck: set[str]) -> list[str]:
    """A cycle among the stuck steps, in data-flow order from its first-declared step.

    Every stuck step has a stuck input, so walking inputs must come back to a step.
    """
    declared = list(by_name)
    path: list[str] = []
    current = min(stuck, key=declared.index)
    while current not in path:
        path.append(current)
        current = next(u for u in by_name[current].inputs if u in stuck)
    flow = path[path.index(current) :][::-1]
    start = flow.index(min(flow, key=declared.index))
    flow = flow[start:] + flow[:start]
    return [*flow, flow[0]]


def _step_section(run_config: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(run_config, Mapping):
        raise errors.RunConfigError("run config: should be a mapping with a 'steps' key")
    for key in run_config:
        if key not in _RUN_CONFIG_KEYS:
            raise errors.RunConfigError(
                f"run config: unknown key {key!r} (expected: {', '.join(_RUN_CONFIG_KEYS)})"
            )
    section = run_config.get("steps") or {}
    if not isinstance(section, Mapping):
        raise errors.RunConfigError("run config: steps: should be a mapping of step names")
    return section


def _step_config(s: step_mod.StepDef, raw: Any) -> pydantic.BaseModel | None:
    if s.config_model is None:
        if raw is not None and raw != {}:
            raise errors.RunConfigError(
                f"run config: steps.{s.name}: step '{s.name}' takes no config"
            )
        return None
    try:
        return s.config_model.model_validate({} if raw is None else raw)
    except pydantic.ValidationError as exc:
        problems = "; ".join(_describe(s.name, e) for e in exc.errors())
        raise errors.RunConfigError(f"run config: {problems}") from None


def _describe(step_name: str, error: Any) -> str:
    path = ".".join(["steps", step_name, *(str(part) for part in error["loc"])])
    message = str(error["msg"]).split(", unable to ")[0]
    if error["type"] == "missing":
        return f"{path}: {message}"
    return f"{path}: {message} (got {error['input']!r})"
