"""Step plans: which steps of a job a run executes, and where their inputs come from."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Collection, Iterable, Mapping

import pydantic

from vigil.definitions import job as job_mod


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """The steps one run executes, in topological order.

    An upstream that is in `steps` is read from this run; any other upstream is read from
    the run `input_runs` names for it (a parent run that already computed it), and only if
    its bytes have the digest `input_digests` gives (the one that run recorded).
    """

    run_id: str
    job: job_mod.JobDef
    steps: tuple[str, ...]
    step_configs: Mapping[str, pydantic.BaseModel | None]
    input_runs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    input_digests: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The run's partition (tag `vigil/partition`) and, for time partitions, its window.
    partition_key: str | None = None
    partition_window: tuple[datetime.datetime, datetime.datetime] | None = None
    # The code location the job was loaded from (a step run elsewhere loads it there).
    code_location: str | None = None

    def __post_init__(self) -> None:
        order = self.job.topological_order()
        positions = [order.index(s) for s in self.steps if s in order]
        if len(positions) != len(self.steps) or positions != sorted(set(positions)):
            raise ValueError(
                f"plan steps {self.steps} are not distinct steps of job '{self.job.name}' "
                f"in topological order"
            )
        missing = set(external_inputs(self.job, self.steps)) - set(self.input_runs)
        if missing:
            raise ValueError(f"plan has no run to read inputs {sorted(missing)} from")

    @classmethod
    def for_job(
        cls,
        run_id: str,
        job: job_mod.JobDef,
        step_configs: Mapping[str, pydantic.BaseModel | None],
    ) -> StepPlan:
        """Every step of the job."""
        return cls(run_id, job, job.topological_order(), dict(step_configs))

    @classmethod
    def for_steps(
        cls,
        run_id: str,
        job: job_mod.JobDef,
        step_configs: Mapping[str, pydantic.BaseModel | None],
        steps: Iterable[str],
        *,
        parent_run_id: str,
        parent_input_runs: Mapping[str, str] | None = None,
    ) -> StepPlan:
        """A subset of the steps; outside upstreams are read where the parent run read them.

        `parent_input_runs` is the parent plan's `input_runs`: an upstream the parent itself
        took from an older run is read from that older run, else from the parent run.
        """
        wanted = set(steps)
        for name in wanted:
            job.upstream(name)  # raises NotFound for a step the job does not have
        ordered = tuple(n for n in job.topological_order() if n in wanted)
        inherited = parent_input_runs or {}
        input_runs = {up: inherited.get(up, parent_run_id) for up in external_inputs(job, ordered)}
        return cls(run_id, job, ordered, dict(step_configs), input_runs)

    @classmethod
    def from_failed_steps(
        cls,
        run_id: str,
        job: job_mod.JobDef,
        step_configs: Mapping[str, pydantic.BaseModel | None],
        failed_steps: Iterable[str],
        *,
        parent_run_id: str,
        parent_input_runs: Mapping[str, str] | None = None,
    ) -> StepPlan:
        """Re-execute the failed (and skipped) steps and everything downstream of them."""
        return cls.for_steps(
            run_id,
            job,
            step_configs,
            job.downstream_closure(failed_steps),
            parent_run_id=parent_run_id,
            parent_input_runs=parent_input_runs,
        )

    def source_run(self, upstream: str) -> str:
        """The run whose stored output of `upstream` this plan's steps read."""
        if upstream in self.steps:
            return self.run_id
        return self.input_runs[upstream]

    def config_for(self, step: str) -> pydantic.BaseModel | None:
        return self.step_configs.get(step)


def external_inputs(job: job_mod.JobDef, steps: Collection[str]) -> tuple[str, ...]:
    """Upstreams of `steps` that are not themselves in `steps`, in topological order."""
    needed = {up for s in steps for up in job.upstream(s) if up not in steps}
    return tuple(n for n in job.topological_order() if n in needed)
