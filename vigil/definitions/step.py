"""Steps: the nodes of a job, declared with the `@step` decorator.

A step's parameters say what it needs, by name:

- `context` receives the `StepContext` (run id, attempt, config, log);
- `config` receives the step's validated config; it must be annotated with a pydantic model;
- every other parameter names an upstream step whose output it receives.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, overload

import pydantic

from vigil import errors

CONTEXT_PARAM = "context"
CONFIG_PARAM = "config"

StepFn = Callable[..., Any]


class RetryPolicy(pydantic.BaseModel):
    """How often a failing step is tried again, and how long to wait in between.

    The wait before retry `n` (1-based) is `delay * backoff ** (n - 1)`, moved up or down
    by at most `jitter` times itself.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    max_retries: int = pydantic.Field(default=0, ge=0)
    delay: float = pydantic.Field(default=0.0, ge=0.0)
    backoff: float = pydantic.Field(default=1.0, ge=0.0)
    jitter: float = pydantic.Field(default=0.0, ge=0.0)


@dataclasses.dataclass(frozen=True, slots=True)
class StepDef:
    """A step as the decorator recorded it; calling it calls the function."""

    name: str
    fn: StepFn
    inputs: tuple[str, ...] = ()
    config_model: type[pydantic.BaseModel] | None = None
    retry: RetryPolicy | None = None
    wants_context: bool = False
    description: str | None = None
    # Free-form labels; `vigil/celery_queue` names the Celery queue of the step's task
    # (the celery executor).
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def invoke(
        self, context: Any, config: pydantic.BaseModel | None, inputs: Mapping[str, Any]
    ) -> Any:
        """Call the function with its context, config and upstream outputs, by name."""
        kwargs = {name: inputs[name] for name in self.inputs}
        if self.wants_context:
            kwargs[CONTEXT_PARAM] = context
        if self.config_model is not None:
            kwargs[CONFIG_PARAM] = config
        return self.fn(**kwargs)


@overload
def step(fn: StepFn, /) -> StepDef: ...


@overload
def step(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Callable[[StepFn], StepDef]: ...


def step(
    fn: StepFn | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> StepDef | Callable[[StepFn], StepDef]:
    """Declare a step: `@step` or `@step(name=..., retry=..., description=..., tags=...)`."""

    def decorate(func: StepFn) -> StepDef:
        return make_step(func, name=name, retry=retry, description=description, tags=tags)

    if fn is None:
        return decorate
    return decorate(fn)


def make_step(
    fn: StepFn,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> StepDef:
    """Build a StepDef from a function, checking its signature."""
    step_name = _step_name(fn, name)
    params = _parameters(fn, step_name)
    return StepDef(
        name=step_name,
        fn=fn,
        inputs=tuple(p for p in params if p not in (CONTEXT_PARAM, CONFIG_PARAM)),
        config_model=_config_model(fn, step_name) if CONFIG_PARAM in params else None,
        retry=retry,
        wants_context=CONTEXT_PARAM in params,
        description=description if description is not None else inspect.getdoc(fn),
        tags=types.MappingProxyType(dict(tags or {})),
    )


def _step_name(fn: StepFn, name: str | None) -> str:
    step_name = name if name is not None else getattr(fn, "__name__", "")
    if not step_name.isidentifier():
        raise errors.DefinitionError(
            f"step name {step_name!r} is not a valid identifier; pass name=... to @step"
        )
    return step_name


def _parameters(fn: StepFn, step_name: str) -> tuple[str, ...]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise errors.DefinitionError(f"step '{step_name}': cannot read its signature") from exc
    allowed = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    for param in signature.parameters.values():
        if param.kind not in allowed:
            raise errors.DefinitionError(
                f"step '{step_name}': parameter {param.name!r} must be a named parameter "
                f"(no *args, **kwargs or positional-only parameters)"
            )
    return tuple(signature.parameters)


def _config_model(fn: StepFn, step_name: str) -> type[pydantic.BaseModel]:
    try:
        model = _resolve_config_annotation(fn)
    except Exception as exc:
        raise errors.DefinitionError(
            f"step '{step_name}': cannot resolve the annotation of 'config': {exc}"
        ) from exc
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        raise errors.DefinitionError(
            f"step '{step_name}': parameter 'config' must be annotated with a pydantic "
            f"BaseModel subclass (got {model!r})"
        )
    return model


def _resolve_config_annotation(fn: StepFn) -> Any:
    """Resolve only the annotation of `config`, as typing.get_type_hints would.

    The other annotations are left alone, so a `context: StepContext` imported only under
    TYPE_CHECKING does not break the step.
    """
    annotation = inspect.signature(fn).parameters[CONFIG_PARAM].annotation
    if annotation is inspect.Parameter.empty:
        return None
    probe = types.FunctionType(_probe.__code__, getattr(fn, "__globals__", {}))
    probe.__annotations__ = {CONFIG_PARAM: annotation}
    return typing.get_type_hints(probe)[CONFIG_PARAM]


def _probe() -> None:
    """A code object to hang the `config` annotation on, in the step's globals."""
