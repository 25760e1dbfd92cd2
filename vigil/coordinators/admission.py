"""The queued coordinator's admission rule: which queued runs to launch now, and why not the rest.

A pure function of the queue, the tags of the in-flight runs (STARTING, STARTED, CANCELING)
and the limits; it reads no clock and no store.

- Order: tag ``vigil/priority`` higher first, then first in first out (``created_at``, then
  ``run_id``).
- Limits: ``max_concurrent_runs`` (-1 unlimited, 0 pauses the queue) and tag limits, each
  counting the in-flight runs it applies to; and a backfill's own limit, carried by its
  runs (tags ``vigil/backfill`` and ``vigil/backfill_max_concurrent``).
- A run that a limit holds back never blocks a launchable run behind it: every run in order
  is launched unless a limit it would exceed holds it, or the launch batch is full.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated

import annotated_types

from vigil import runs

PRIORITY_TAG = "vigil/priority"
PAUSED_FLAG = "queue.paused"  # the instance flag that pauses the queue (`vigil queue pause`)
QUEUE_PAUSED = "queue paused"
BATCH_FULL = "launch batch full"
_INTEGER = re.compile(r"[+-]?[0-9]+")

# Where a run counts for one tag limit: (the limit's index, the tag value it counts under;
# "" for a limit with one count for all the runs it applies to). A backfill's own limit
# counts under (BACKFILL, its id).
Bucket = tuple[int, str]
BACKFILL = -1


@dataclasses.dataclass(frozen=True, slots=True)
class TagLimit:
    """At most `limit` in-flight runs with tag `key`.

    With `value`, counts the runs whose tag `key` equals it; without, the runs that have the
    tag at all; with `per_value`, one limit for each distinct value of the tag. A plain
    dataclass (no pydantic here: the read commands' `vigil queue` uses it without it); the
    coordinator's options validate it from vigil.yaml through its annotations.
    """

    __pydantic_config__ = {"extra": "forbid"}

    key: Annotated[str, annotated_types.MinLen(1)]
    limit: Annotated[int, annotated_types.Interval(ge=0, le=1_000_000)]
    value: str | None = None
    per_value: bool = False

    def __post_init__(self) -> None:
        if self.per_value and self.value is not None:
            raise ValueError("a tag limit takes a value or per_value: true, not both")

    def applies_to(self, tags: Mapping[str, str]) -> bool:
        """Whether a run with these tags counts for this limit."""
        if self.value is None:
            return self.key in tags
        return tags.get(self.key) == self.value

    def describe(self, value: str, count: int) -> str:
        """The reason a run waits, e.g. `tag team=data 3/3`; `value` is used per value only."""
        if self.per_value:
            return f"tag {self.key}={value} {count}/{self.limit} (per value)"
        label = self.key if self.value is None else f"{self.key}={self.value}"
        return f"tag {label} {count}/{self.limit}"


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """The queue's limits, all counting in-flight runs: a global one and tag limits.

    `max_concurrent_runs` is -1 for no limit, 0 to pause the queue. The coordinator's
    options validate these from vigil.yaml and build this from them.
    """

    max_concurrent_runs: int
    tag_limits: tuple[TagLimit, ...] = ()

    def __post_init__(self) -> None:
        if self.max_concurrent_runs < -1:
            raise ValueError(
                f"max_concurrent_runs must be >= -1 (-1: no limit), not {self.max_concurrent_runs}"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    """A queued run as admission sees it."""

    run_id: str
    tags: Mapping[str, str]
    created_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The runs to launch now, in launch order, and the reason each other run waits."""

    launch: tuple[str, ...]
    waiting: Mapping[str, str]  # run_id -> reason, in queue order


def priority_of(tags: Mapping[str, str]) -> int:
    """A run's priority: its `vigil/priority` tag as an integer, higher first.

    No tag, or a value that is not a plain decimal integer (`"high"`, `"1.5"`, `"1_000"`),
    counts as 0. Surrounding whitespace and a sign are allowed: `" -2 "` is -2.
    """
    raw = tags.get(PRIORITY_TAG, "").strip()
    if not _INTEGER.fullmatch(raw):
        return 0
    try:
        return int(raw)
    except ValueError:  # beyond Python's integer string length limit
        return 0


def order(queued: Sequence[Candidate]) -> list[Candidate]:
    """The queue in launch order: higher priority first, then oldest, then by run id."""
    return sorted(queued, key=lambda c: (-priority_of(c.tags), c.created_at, c.run_id))


def admit(
    queued: Sequence[Candidate],
    in_flight: Sequence[Mapping[str, str]],
    limits: Limits,
    max_launch: int | None = None,
) -> Decision:
    """Decide which queued runs launch now; `in_flight` holds the in-flight runs' tags.

    At most `max_launch` runs launch (no cap when None); a run that only the cap holds waits
    with `launch batch full`. A run held by several limits names the first it would exceed:
    its tag limits in configured order, then the global limit.
    """
    if max_launch is not None and max_launch < 0:
        raise ValueError(f"max_launch must be >= 0 or None, not {max_launch}")
    _check_unique(queued)
    ordered = order(queued)
    if limits.max_concurrent_runs == 0:
        return Decision((), types.MappingProxyType(dict.fromkeys(_ids(ordered), QUEUE_PAUSED)))
    usage = _usage(in_flight, limits.tag_limits)
    launch: list[str] = []
    waiting: dict[str, str] = {}
    for candidate in ordered:
        buckets = _buckets(candidate.tags, limits.tag_limits)
        reason = _held_by_backfill(candidate.tags, usage) or _held_by(
            buckets, usage, limits, len(in_flight) + len(launch)
        )
        if reason is None and max_launch is not None and len(launch) >= max_launch:
            reason = BATCH_FULL
        if reason is None:
            launch.append(candidate.run_id)
            usage.update(buckets)
        else:
            waiting[candidate.run_id] = reason
    return Decision(tuple(launch), types.MappingProxyType(waiting))


def _check_unique(queued: Sequence[Candidate]) -> None:
    counts = collections.Counter(_ids(queued))
    duplicates = sorted(run_id for run_id, n in counts.items() if n > 1)
    if duplicates:
        raise ValueError(f"queued run ids must be unique; repeated: {', '.join(duplicates)}")


def _ids(candidates: Iterable[Candidate]) -> list[str]:
    return [c.run_id for c in candidates]


def _buckets(tags: Mapping[str, str], tag_limits: Sequence[TagLimit]) -> list[Bucket]:
    """The tag limit buckets a run with these tags counts in (its backfill's first)."""
    found: list[Bucket] = []
    if backfill_limit(tags) is not None:
        found.append((BACKFILL, tags[runs.TAG_BACKFILL]))
    found += [
        (index, tags[limit.key] if limit.per_value else "")
        for index, limit in enumerate(tag_limits)
        if limit.applies_to(tags)
    ]
    return found


def backfill_limit(tags: Mapping[str, str]) -> int | None:
    """The limit a backfill's run carries: its backfill's in-flight runs at most (or None)."""
    raw = tags.get(runs.TAG_BACKFILL_MAX_CONCURRENT, "").strip()
    if runs.TAG_BACKFILL not in tags or not _INTEGER.fullmatch(raw) or len(raw) > 9:
        return None
    return max(0, int(raw))


def _held_by_backfill(tags: Mapping[str, str], usage: Mapping[Bucket, int]) -> str | None:
    limit = backfill_limit(tags)
    if limit is None:
        return None
    backfill = tags[runs.TAG_BACKFILL]
    count = usage.get((BACKFILL, backfill), 0)
    return f"backfill {backfill} {count}/{limit}" if count >= limit else None


def _usage(
    in_flight: Iterable[Mapping[str, str]], tag_limits: Sequence[TagLimit]
) -> collections.Counter[Bucket]:
    usage: collections.Counter[Bucket] = collections.Counter()
    for tags in in_flight:
        usage.update(_buckets(tags, tag_limits))
    return usage


def _held_by(
    buckets: Iterable[Bucket], usage: Mapping[Bucket, int], limits: Limits, running: int
) -> str | None:
    """The first limit that one more run in these buckets would exceed, as a reason."""
    for bucket in buckets:
        if bucket[0] == BACKFILL:
            continue  # `_held_by_backfill` judged it
        tag_limit = limits.tag_limits[bucket[0]]
        if usage.get(bucket, 0) >= tag_limit.limit:
            return tag_limit.describe(bucket[1], usage.get(bucket, 0))
    if 0 <= limits.max_concurrent_runs <= running:
        return f"global limit {running}/{limits.max_concurrent_runs}"
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class QueueEntry:
    """A queued run in launch order, with why it waits (None: it would launch now)."""

    run: runs.Run
    reason: str | None


def explain(
    queued: Sequence[runs.Run],
    in_flight: Sequence[Mapping[str, str]],
    limits: Limits,
    *,
    paused: bool,
    now: float,
) -> list[QueueEntry]:
    """The queue as `vigil queue` shows it: every queued run in launch order, each with
    why it waits; a run not due yet (a waiting retry) waits for its time."""
    if paused:
        limits = dataclasses.replace(limits, max_concurrent_runs=0)
    due = [run for run in queued if run.not_before is None or run.not_before <= now]
    decision = admit(candidates(due), in_flight, limits)
    by_id = {run.run_id: run for run in queued}
    ordered = [by_id[c.run_id] for c in order(candidates(queued))]
    return [QueueEntry(run, _waiting_reason(run, now, decision)) for run in ordered]


def candidates(queued: Sequence[runs.Run]) -> list[Candidate]:
    return [Candidate(r.run_id, r.tags, r.created_at) for r in queued]


def _waiting_reason(run: runs.Run, now: float, decision: Decision) -> str | None:
    if run.not_before is not None and run.not_before > now:
        when = datetime.datetime.fromtimestamp(run.not_before, datetime.UTC)
        return f"not due before {when.isoformat(timespec='seconds')}"
    return decision.waiting.get(run.run_id)
