"""Progress through a plan: which steps are ready, running, done, or to be skipped."""

from __future__ import annotations

import enum

from vigil.executors import base
from vigil.executors import plan as plan_mod


class _State(enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class Progress:
    """Tracks the steps of one plan; upstreams outside the plan count as succeeded."""

    def __init__(self, plan: plan_mod.StepPlan) -> None:
        in_plan = set(plan.steps)
        self._order = plan.steps
        self._upstream = {
            s: tuple(u for u in plan.job.upstream(s) if u in in_plan) for s in plan.steps
        }
        self._state: dict[str, _State] = {}
        self._cause: dict[str, str] = {}

    def take_ready(self, limit: int | None = None) -> tuple[str, ...]:
        """Steps whose upstreams all succeeded, in topological order; now marked running."""
        ready = [s for s in self._order if s not in self._state and self._all_succeeded(s)]
        taken = tuple(ready[:limit])
        for s in taken:
            self._state[s] = _State.RUNNING
        return taken

    def take_skipped(self) -> tuple[tuple[str, str, str], ...]:
        """Steps that can no longer run: (step, blocking upstream, failed step behind it)."""
        skipped: list[tuple[str, str, str]] = []
        for s in self._order:
            blocker = None if s in self._state else self._blocker(s)
            if blocker is not None:
                self._state[s] = _State.SKIPPED
                self._cause[s] = self._cause.get(blocker, blocker)
                skipped.append((s, blocker, self._cause[s]))
        return tuple(skipped)

    def finish(self, step: str, ok: bool) -> None:
        self._state[step] = _State.SUCCEEDED if ok else _State.FAILED

    def result(self) -> base.ExecutionResult:
        return base.ExecutionResult(
            succeeded=self._with(_State.SUCCEEDED),
            failed=self._with(_State.FAILED),
            skipped=self._with(_State.SKIPPED),
        )

    def _all_succeeded(self, step: str) -> bool:
        return all(self._state.get(u) is _State.SUCCEEDED for u in self._upstream[step])

    def _blocker(self, step: str) -> str | None:
        done_badly = (_State.FAILED, _State.SKIPPED)
        return next((u for u in self._upstream[step] if self._state.get(u) in done_badly), None)

    def _with(self, state: _State) -> tuple[str, ...]:
        return tuple(s for s in self._order if self._state.get(s) is state)
