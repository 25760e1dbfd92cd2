"""The run monitor's decisions, pure: a run, what its launcher says, the time -> an action.

Two questions per in-flight run, each a function of its arguments only (the monitor loop
does the I/O and passes `now` from the daemon's clock):

- `deadline_action`: has the run outlived a limit? STARTING past `start_timeout`, STARTED
  past its max runtime (tag `vigil/max_runtime` or the instance default), CANCELING past
  `cancel_timeout`.
- `health_action`: what does the launcher's health check imply? RUNNING: nothing. DEAD:
  resume while attempts remain and the launcher can, else FAILURE naming what is known.
  UNKNOWN: never taken for DEAD at once; checked again with backoff (`Suspicion`) and
  treated as DEAD only once it has lasted `unknown_grace`.

And one about the worker's own heartbeat (`runs.Run.worker_heartbeat`), whatever the launcher:

- `judge`: a STARTED run whose heartbeat has not moved for `worker_heartbeat_timeout` has a
  dead worker (`heartbeat_action`). The launcher's check refines the verdict, never
  overturns it: DEAD adds how the worker ended; RUNNING (its process is alive, yet silent: hung,
  stopped, or cut off from the store) has the worker killed before the run is resumed or
  failed, since it neither writes events nor could end the run; UNKNOWN (a vanished
  machine) changes nothing. A heartbeat that does move makes an UNKNOWN check harmless. A
  run whose worker never beat (an older worker) is judged by the launcher alone.

"Not moved" is measured on the monitor's clock from when it saw the value change
(`Sighting`), never by comparing the worker's clock with the monitor's: clocks of two
machines may differ, and a monitor that just started (or lost the store) sees every
heartbeat afresh, giving each worker a whole timeout.
"""

from __future__ import annotations

import dataclasses
import enum

from vigil import errors, runs
from vigil.launchers import base as launchers

S = runs.RunStatus
R = runs.EndReason
UNKNOWN_BACKOFF_CAP = 300.0


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    start_timeout: float
    cancel_timeout: float
    max_resume_attempts: int
    unknown_grace: float
    poll_interval: float
    max_runtime: float | None = None
    worker_heartbeat_timeout: float | None = None  # None: heartbeats are not judged


@dataclasses.dataclass(frozen=True, slots=True)
class Suspicion:
    """A worker the launcher could not judge: since when, how many checks, when to look again."""

    since: float
    checks: int
    next_check: float


@dataclasses.dataclass(frozen=True, slots=True)
class Sighting:
    """A worker heartbeat as the monitor saw it: its value, and since when (monitor's clock)."""

    value: float
    since: float


class Kind(enum.StrEnum):
    KEEP = "keep"  # nothing to do (maybe remember a suspicion)
    FAIL = "fail"  # end FAILURE, then stop whatever worker may exist
    RESUME = "resume"  # give the run a new worker that continues it
    CANCEL = "cancel"  # end CANCELED, killing the worker if `kill`


@dataclasses.dataclass(frozen=True, slots=True)
class Action:
    kind: Kind
    reason: runs.EndReason | None = None
    message: str = ""
    resume_attempt: int = 0
    kill: bool = False
    suspicion: Suspicion | None = None


KEEP = Action(Kind.KEEP)


def seconds(value: float) -> str:
    """`120` for 120.0, `0.5` for 0.5: how limits read in messages."""
    return f"{value:g}"


def max_runtime(run: runs.Run, default: float | None) -> float | None:
    """The run's max runtime: its `vigil/max_runtime` tag, else `default`; raises TagError."""
    raw = run.tags.get(runs.TAG_MAX_RUNTIME)
    if raw is None:
        return default
    return parse_max_runtime(raw, f"run {run.run_id}: ")


def parse_max_runtime(raw: str, where: str = "") -> float:
    """A `vigil/max_runtime` tag's seconds; raises TagError (prefixed by `where`)."""
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise errors.TagError(
            f"{where}tag {runs.TAG_MAX_RUNTIME}={raw!r} is not a number of seconds greater than 0"
        )
    return value


def resume_attempts(run: runs.Run) -> int:
    """How many times the monitor has given this run a new worker."""
    return run.resume_attempt


def deadline_action(
    run: runs.Run, now: float, limits: Limits, runtime: float | None
) -> Action | None:
    """The action a limit calls for, or None while the run is within its limits."""
    if run.status is S.STARTING and now - run.updated_at >= limits.start_timeout:
        message = f"did not start within the start timeout of {seconds(limits.start_timeout)} s"
        return Action(Kind.FAIL, R.START_TIMEOUT, message)
    if _past_runtime(run, now, runtime):
        assert runtime is not None
        return Action(Kind.FAIL, R.MAX_RUNTIME, f"exceeded max runtime of {seconds(runtime)} s")
    if run.status is S.CANCELING and now - run.updated_at >= limits.cancel_timeout:
        message = (
            "the worker did not stop within the cancel timeout of "
            f"{seconds(limits.cancel_timeout)} s and was killed"
        )
        return Action(Kind.CANCEL, R.CANCEL_TIMEOUT, message, kill=True)
    return None


def _past_runtime(run: runs.Run, now: float, runtime: float | None) -> bool:
    if run.status is not S.STARTED or runtime is None or run.start_time is None:
        return False
    return now - run.start_time >= runtime


def wants_check(run: runs.Run, now: float, suspicion: Suspicion | None) -> bool:
    """Whether to ask the launcher about this run's worker now."""
    if run.status is S.STARTING and "pid" not in run.launcher_info:
        return False  # still being launched: only the start timeout applies
    return suspicion is None or now >= suspicion.next_check


def health_action(
    run: runs.Run,
    check: launchers.HealthCheck,
    now: float,
    limits: Limits,
    suspicion: Suspicion | None,
    can_resume: bool,
) -> Action:
    """What the launcher's verdict on the run's worker calls for."""
    if check.health is launchers.WorkerHealth.RUNNING:
        return KEEP
    detail = check.detail or "no detail"
    if check.health is launchers.WorkerHealth.UNKNOWN:
        seen = suspicion or Suspicion(since=now, checks=0, next_check=now)
        if now - seen.since < limits.unknown_grace:
            return Action(Kind.KEEP, suspicion=_recheck(seen, now, limits.poll_interval))
        detail = f"health unknown for {seconds(now - seen.since)} s ({detail})"
    return _dead(run, detail, limits, can_resume)


def _dead_before_start(run: runs.Run, detail: str, limits: Limits) -> Action:
    """A worker that died before it took its run ran nothing: launch again while the
    run's resume attempts last (any launcher can launch), else FAILURE."""
    used = resume_attempts(run)
    if used < limits.max_resume_attempts:
        message = (
            f"the worker died before it started ({detail}); launching again "
            f"(attempt {used + 1} of {limits.max_resume_attempts})"
        )
        return Action(Kind.RESUME, R.WORKER_DIED, message, resume_attempt=used + 1)
    return Action(
        Kind.FAIL,
        R.WORKER_DIED,
        f"the worker died before it started ({detail}); "
        f"no launch attempts left ({used} of {limits.max_resume_attempts} used)",
    )


def _recheck(seen: Suspicion, now: float, poll_interval: float) -> Suspicion:
    checks = seen.checks + 1
    delay = min(poll_interval * 2 ** (checks - 1), max(UNKNOWN_BACKOFF_CAP, poll_interval))
    return Suspicion(since=seen.since, checks=checks, next_check=now + delay)


def _dead(run: runs.Run, detail: str, limits: Limits, can_resume: bool) -> Action:
    if run.status is S.STARTING:
        return _dead_before_start(run, detail, limits)
    if run.status is S.CANCELING:
        return Action(Kind.CANCEL, R.CANCELED, f"the worker is gone before it ended: {detail}")
    used = resume_attempts(run)
    if can_resume and used < limits.max_resume_attempts:
        message = (
            f"the worker died ({detail}); resuming "
            f"(attempt {used + 1} of {limits.max_resume_attempts})"
        )
        return Action(Kind.RESUME, R.WORKER_DIED, message, resume_attempt=used + 1)
    if not can_resume:
        why = "the launcher cannot resume runs"
    else:
        why = f"no resume attempts left ({used} of {limits.max_resume_attempts} used)"
    return Action(Kind.FAIL, R.WORKER_DIED, f"the worker died ({detail}); {why}")


# worker heartbeats ----------------------------------------------------------------------
def sight(previous: Sighting | None, run: runs.Run, now: float) -> Sighting | None:
    """The run's sighting after reading it at `now`: None while its worker never beat; a
    new one whenever the value changed since `previous`."""
    if run.worker_heartbeat is None:
        return None
    if previous is not None and previous.value == run.worker_heartbeat:
        return previous
    return Sighting(run.worker_heartbeat, now)


def silence(run: runs.Run, sighting: Sighting | None, now: float, limits: Limits) -> float | None:
    """How long a STARTED run's worker has been silent, once that reaches the heartbeat
    timeout; None while it beats in time, never beat, or heartbeats are not judged."""
    timeout = limits.worker_heartbeat_timeout
    if timeout is None or run.status is not S.STARTED or sighting is None:
        return None
    silent = now - sighting.since
    return silent if silent >= timeout else None


def beats_in_time(run: runs.Run, sighting: Sighting | None, now: float, limits: Limits) -> bool:
    """Whether the run's worker proves itself alive by its heartbeat."""
    judged = limits.worker_heartbeat_timeout is not None and run.status is S.STARTED
    return judged and sighting is not None and silence(run, sighting, now, limits) is None


def heartbeat_action(
    run: runs.Run,
    check: launchers.HealthCheck,
    silent: float,
    limits: Limits,
    can_resume: bool,
) -> Action:
    """A worker silent past the timeout is dead; the launcher's check says more of it."""
    detail = f"no heartbeat for {seconds(round(silent, 1))} s"
    if check.health is launchers.WorkerHealth.RUNNING:
        alive = f"{detail} while its process is alive ({check.detail or 'running'}): hung, "
        detail = alive + "stopped or cut off from the store, so it is killed"
        return dataclasses.replace(_dead(run, detail, limits, can_resume), kill=True)
    if check.health is launchers.WorkerHealth.DEAD:
        detail = f"{check.detail or 'gone'}; {detail}"
    else:
        detail = f"{detail}; the launcher cannot tell ({check.detail or 'no detail'})"
    return _dead(run, detail, limits, can_resume)


def judge(
    run: runs.Run,
    check: launchers.HealthCheck,
    now: float,
    limits: Limits,
    suspicion: Suspicion | None,
    can_resume: bool,
    sighting: Sighting | None,
) -> Action:
    """The verdict on a run's worker: its heartbeat first, then the launcher's check."""
    silent = silence(run, sighting, now, limits)
    if silent is not None:
        return heartbeat_action(run, check, silent, limits, can_resume)
    unknown = check.health is launchers.WorkerHealth.UNKNOWN
    if unknown and beats_in_time(run, sighting, now, limits):
        return KEEP  # the launcher cannot tell, the heartbeat can: alive
    return health_action(run, check, now, limits, suspicion, can_resume)
