"""Run retries, pure: whether an ended run gets a retry, which one, and when.

The policy comes from the instance settings (`run_retries`), overridden by the run's tags
`vigil/max_retries` and `vigil/retry_strategy` (a job's tags are its runs' tags, so a job
overrides them the same way). `decide` takes the run, how it ended and the policy, and
answers a `Retry` (its number in the chain and when it is due) or a `NoRetry` (why not).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping

from vigil import errors, monitoring, runs
from vigil.config import settings as settings_mod
from vigil.scheduling import backoff

S = runs.RunStatus
R = runs.EndReason
MAX_RETRIES = 1000  # as for run_retries.max_retries
INSTIGATOR = "vigil/retries"  # the retry loop's instigator name; run keys "retry-of:RUN"


class Strategy(enum.StrEnum):
    FROM_FAILURE = "from_failure"  # the steps that did not succeed, reusing the rest's outputs
    ALL_STEPS = "all_steps"


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    max_retries: int
    strategy: Strategy


@dataclasses.dataclass(frozen=True, slots=True)
class Ending:
    """How a run ended: its status, the reason recorded in its end event, and when."""

    status: runs.RunStatus
    reason: str | None
    at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    number: int  # the child's retry number (the parent's + 1)
    due: float  # when to submit it
    strategy: Strategy


@dataclasses.dataclass(frozen=True, slots=True)
class NoRetry:
    why: str


def policy_for(tags: Mapping[str, str], defaults: settings_mod.RunRetriesSettings) -> Policy:
    """The policy of a run with these tags; raises TagError naming a bad tag."""
    return Policy(
        max_retries=_max_retries(tags.get(runs.TAG_MAX_RETRIES), defaults.max_retries),
        strategy=_strategy(tags.get(runs.TAG_RETRY_STRATEGY), defaults.strategy),
    )


def check_tags(tags: Mapping[str, str]) -> None:
    """The vigil/ tags the daemon reads later (retries, strategy, max runtime) must parse
    now, where the run is submitted; raises TagError naming the tag."""
    _max_retries(tags.get(runs.TAG_MAX_RETRIES), 0)
    _strategy(tags.get(runs.TAG_RETRY_STRATEGY), Strategy.FROM_FAILURE.value)
    if runs.TAG_MAX_RUNTIME in tags:
        monitoring.parse_max_runtime(tags[runs.TAG_MAX_RUNTIME])


def _max_retries(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    digits = raw.strip()
    # ASCII digits only ('²' is a digit to str.isdigit, not to int), within the setting's bound.
    plain = digits.isascii() and digits.isdigit() and len(digits) <= len(str(MAX_RETRIES))
    if not plain or int(digits) > MAX_RETRIES:
        raise errors.TagError(
            f"tag {runs.TAG_MAX_RETRIES}={raw!r} is not a whole number from 0 to {MAX_RETRIES}"
        )
    return int(digits)


def _strategy(raw: str | None, default: str) -> Strategy:
    try:
        return Strategy(raw if raw is not None else default)
    except ValueError:
        choices = " or ".join(s.value for s in Strategy)
        raise errors.TagError(f"tag {runs.TAG_RETRY_STRATEGY}={raw!r} is not {choices}") from None


def decide(
    run: runs.Run,
    ending: Ending,
    policy: Policy,
    settings: settings_mod.RunRetriesSettings,
    rand: Callable[[], float],
    now: float,
) -> Retry | NoRetry:
    """Whether this ended run gets a retry; `rand` jitters the delay.

    An end older than `max_age` at `now` is left alone: turning retries on, or a daemon
    back after a long outage, never retries a backlog of old failures.
    """
    refusal = _refusal(ending, settings)
    if refusal is not None:
        return NoRetry(refusal)
    if now - ending.at > settings.max_age:
        return NoRetry(f"it ended more than {settings.max_age:g} s ago (run_retries.max_age)")
    if run.retry_number >= policy.max_retries:
        return NoRetry(f"retries exhausted ({run.retry_number} of {policy.max_retries})")
    number = run.retry_number + 1
    return Retry(number, ending.at + delay(number, settings.delay, rand), policy.strategy)


def _refusal(ending: Ending, settings: settings_mod.RunRetriesSettings) -> str | None:
    if ending.status is S.SUCCESS:
        return "it succeeded"
    if ending.status is S.CANCELED and not settings.retry_canceled:
        return "it was canceled (run_retries.retry_canceled is off)"
    if ending.reason == R.MAX_RUNTIME and not settings.retry_max_runtime:
        return "it exceeded its max runtime (run_retries.retry_max_runtime is off)"
    if ending.reason == R.STEP_FAILURE and not settings.retry_on_step_failure:
        return "a step failed (run_retries.retry_on_step_failure is off)"
    return None


def delay(
    number: int, settings: settings_mod.RetryDelaySettings, rand: Callable[[], float]
) -> float:
    """The wait between a failure and retry `number` (1-based)."""
    return backoff.exponential_backoff(
        number,
        base=settings.initial,
        factor=settings.factor,
        cap=settings.max,
        jitter=settings.jitter,
        rand=rand,
    )


def run_key(parent_run_id: str) -> str:
    """The retry's run key under INSTIGATOR: a failed run gets one automatic retry at most.

    Keyed by the run retried, not by a number: numbers belong to the lineage, which manual
    re-executions share (the store gives each child the next one).
    """
    return f"retry-of:{parent_run_id}"
