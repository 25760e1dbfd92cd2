"""What a schedule or sensor function returns: run requests, or a reason to skip."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from vigil import errors

InstigatorFn = Callable[..., Any]


@dataclasses.dataclass(frozen=True, slots=True)
class RunRequest:
    """Ask for one run: its config, extra tags, a run key, and (for a sensor of several
    jobs) the job. A run key is launched at most once per schedule tick or per sensor."""

    run_key: str | None = None
    run_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    job: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SkipReason:
    """Nothing to run this time, and why (shown on the tick)."""

    message: str = ""


def wants_context(kind: str, name: str, fn: InstigatorFn) -> bool:
    """Whether the function takes the context: `fn()` or `fn(context)`."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as exc:
        raise errors.DefinitionError(f"{kind} '{name}': cannot read its signature") from exc
    required = [p for p in params if p.default is inspect.Parameter.empty]
    if len(required) > 1 or any(p.kind is p.VAR_KEYWORD for p in required):
        raise errors.DefinitionError(
            f"{kind} '{name}': the function takes at most one parameter, the context"
        )
    return bool(params)


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not name or not name.replace("-", "_").isidentifier():
        raise errors.DefinitionError(
            f"{kind} name {name!r} is not a valid identifier; pass name=..."
        )
    return name


def check_timeout(kind: str, name: str, timeout: float) -> float:
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise errors.DefinitionError(
            f"{kind} '{name}': timeout must be a positive number of seconds (got {timeout!r})"
        )
    return float(timeout)


def job_name(kind: str, name: str, job: Any) -> str:
    """A job given as a JobDef or its name."""
    found = getattr(job, "name", job)
    if not isinstance(found, str) or not found:
        raise errors.DefinitionError(f"{kind} '{name}': job must be a job or a job name")
    return found
