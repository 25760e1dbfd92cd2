"""The executor interface: what the run worker hands an executor, and what it gets back.

An executor runs the steps of a `StepPlan` and reports everything through the event sink:

    STEP_START    data: attempt
    STEP_OUTPUT   data: locator, type (the output's Python type name), digest (of its bytes)
    STEP_SUCCESS  data: attempt, duration (seconds)
    STEP_RETRY    data: attempt (the one that failed), delay (seconds), error_type, message
    STEP_FAILURE  message "ErrorType: message"; data: error_type, message, traceback,
                  attempt, and exit_code or signal when the step's process crashed
    STEP_SKIPPED  data: upstream (the direct upstream that did not succeed), failed_step
    LOG           level, message, data: what the step logged through `context.log`
"""

from __future__ import annotations

import abc
import dataclasses
import pathlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

import pydantic

from vigil import blobs, errors, events
from vigil.executors import outputs as outputs_mod
from vigil.executors import plan as plan_mod

if TYPE_CHECKING:
    from vigil.config import settings as settings_mod


class EventSink(Protocol):
    def emit(self, event: events.NewEvent) -> None:
        """Take one event; thread-safe, never blocks for long."""


@dataclasses.dataclass(frozen=True)
class ExecutionServices:
    """What an executor may use: where events, outputs and logs go, and time and chance."""

    sink: EventSink
    outputs: outputs_mod.OutputStore
    compute_logs_dir: pathlib.Path
    clock: Callable[[], float]
    rand: Callable[[], float]
    # The digest of each output this execution wrote, by step, filled as steps succeed (a
    # step process, forked once its upstreams succeeded, inherits theirs).
    digests: dict[str, str] = dataclasses.field(default_factory=dict)
    # Where each step's compute logs are uploaded after each attempt, when `logs_dir` is
    # a URL (steps write them under `compute_logs_dir` on this machine first); else None.
    logs_upload: blobs.Root | None = None


@dataclasses.dataclass(frozen=True)
class ExecutionResult:
    """Which steps of the plan succeeded, failed, or were skipped after a failure."""

    succeeded: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


class NoOptions(pydantic.BaseModel):
    """The options of an executor that takes none."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class Executor(abc.ABC):
    """Runs the steps of a plan inside the run worker."""

    name: ClassVar[str]
    Options: ClassVar[type[pydantic.BaseModel]] = NoOptions

    def __init__(self, options: pydantic.BaseModel | None = None) -> None:
        options = options if options is not None else self.Options()
        if not isinstance(options, self.Options):
            raise errors.PluginError(
                f"{type(self).__name__} takes {self.Options.__name__} options, "
                f"not {type(options).__name__}"
            )
        self.options = options

    @classmethod
    def from_options(cls, raw: Mapping[str, Any]) -> Self:
        """Build the executor from the plain options of the instance settings."""
        try:
            options = cls.Options.model_validate(raw)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(options)'}: {e['msg']}"
                for e in exc.errors()
            )
            label = getattr(cls, "name", cls.__name__)
            raise errors.PluginError(f"executor '{label}' options: {problems}") from None
        return cls(options)

    @classmethod
    def for_settings(
        cls, options: pydantic.BaseModel, settings: settings_mod.InstanceSettings
    ) -> Self:
        """Build the executor from its validated options and the instance settings (the
        default needs only the options; the celery executor takes the launcher's broker)."""
        return cls(options)

    @abc.abstractmethod
    async def execute(
        self, plan: plan_mod.StepPlan, services: ExecutionServices
    ) -> ExecutionResult:
        """Run the plan's steps; cancelling this call stops them and cleans up."""
