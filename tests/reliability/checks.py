"""What the crash chaos test checks once the daemon has drained: pure functions of what the
store, the event log and the evaluation log hold, each returning the problems it found.

- `start_problems`: no run started by two workers: each RUN_START after a run's first
  follows a resume (an ENGINE event with `resume_attempt`) granted since the one before.
- `replay_limits`: the claims (RUN_STARTING) and ends replayed in event id order, which is
  commit order (see bench/queue.py `claim_times`): the most runs in flight at once, in all
  and per tag limit.
- `schedule_problems`: one schedule's ticks: one per cron second from its first to its
  last (but for the ticks the scheduler counts without recording them: those before the
  last `MAX_MISSED_RECORDED + max_catchup_ticks` of one plan, after a long downtime), none
  left STARTED or FAILED, MISSED exactly where its catch-up policy says, and
  each evaluated tick evaluated by one live daemon at most (a daemon killed mid-tick may
  leave it to the next one; the same daemon never evaluates a tick twice).
- `sensor_problems`: a sensor's run keys leave no gap (a cursor moved past a key whose run
  was never made would be a lost run).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence

from tests.reliability import chaos_defs
from vigil import events, runs, ticks
from vigil.daemon.loops import scheduler

E = events.EventType
T = ticks.TickStatus
CLAIM_AND_END = (E.RUN_STARTING, E.RUN_SUCCESS, E.RUN_FAILURE, E.RUN_CANCELED)


# starts --------------------------------------------------------------------------------
def start_problems(run_id: str, found: Sequence[events.Event]) -> list[str]:
    """A RUN_START beyond the first needs a resume event since the last start."""
    allowed, problems = 1, []
    for event in found:
        if event.event_type is E.ENGINE and "resume_attempt" in event.data:
            allowed += 1
        elif event.event_type is E.RUN_START:
            if allowed == 0:
                problems.append(f"{run_id}: started again, no resume (event {event.event_id})")
            allowed = max(allowed - 1, 0)
    return problems


def resumes(found: Iterable[events.Event]) -> int:
    return sum(1 for e in found if e.event_type is E.ENGINE and "resume_attempt" in e.data)


# limits --------------------------------------------------------------------------------
@dataclasses.dataclass
class Replay:
    """The most runs in flight at once, in all and of the tag-limited pool, with the event
    at which each most was first reached."""

    most: int = 0
    most_at: int = 0
    most_tagged: int = 0
    most_tagged_at: int = 0
    in_flight: set[str] = dataclasses.field(default_factory=set)
    tagged: set[str] = dataclasses.field(default_factory=set)

    def take(self, event: events.Event, is_tagged: bool) -> None:
        if event.event_type is E.RUN_STARTING:
            self.in_flight.add(event.run_id)
            if is_tagged:
                self.tagged.add(event.run_id)
        else:
            self.in_flight.discard(event.run_id)
            self.tagged.discard(event.run_id)
        if len(self.in_flight) > self.most:
            self.most, self.most_at = len(self.in_flight), event.event_id
        if len(self.tagged) > self.most_tagged:
            self.most_tagged, self.most_tagged_at = len(self.tagged), event.event_id


def replay_limits(claims_and_ends: Iterable[events.Event], tagged: Collection[str]) -> Replay:
    """`claims_and_ends` in event id order; `tagged`: the runs the tag limit counts."""
    replay = Replay()
    for event in claims_and_ends:
        replay.take(event, event.run_id in tagged)
    return replay


# schedules -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One line of the evaluation log: who, which tick (or cursor), which daemon."""

    instigator: str
    when: int
    daemon_pid: int

    @classmethod
    def parse(cls, line: str) -> Evaluation:
        instigator, when, pid = line.split()
        return cls(instigator, int(when), int(pid))


@dataclasses.dataclass(frozen=True)
class Policy:
    catchup: str
    max_catchup_ticks: int
    grace: float


def schedule_policy(name: str, grace: float) -> Policy:
    """The catch-up policy chaos_defs gives schedule `sI`."""
    index = int(name.removeprefix("schedule:s"))
    catchup = chaos_defs.CATCHUPS[index % len(chaos_defs.CATCHUPS)]
    return Policy(catchup, chaos_defs.MAX_CATCHUP_TICKS, grace)


def schedule_problems(
    name: str,
    found: Sequence[ticks.Tick],
    policy: Policy,
    evaluations: Sequence[Evaluation],
    killed: Collection[int],
) -> list[str]:
    """Everything wrong with one schedule's ticks (see the module docstring)."""
    ordered = sorted(found, key=lambda t: t.scheduled_time)
    groups: dict[float, list[ticks.Tick]] = collections.defaultdict(list)
    for tick in ordered:
        groups[tick.created_at].append(tick)
    keep = scheduler.MAX_MISSED_RECORDED + policy.max_catchup_ticks
    after_unrecorded = {int(g[0].scheduled_time) for g in groups.values() if len(g) == keep}
    problems = _gaps(name, ordered, after_unrecorded)
    problems += [
        f"{name}: tick {t.scheduled_time:.0f} left {t.status} {t.error or ''}"
        for t in ordered
        if t.status in (T.STARTED, T.FAILED)
    ]
    for group in groups.values():
        problems += _policy_problems(name, group, policy)
    problems += _evaluation_problems(name, ordered, evaluations, killed)
    return problems


def _gaps(name: str, ordered: Sequence[ticks.Tick], after_unrecorded: set[int]) -> list[str]:
    """Seconds without a tick, but for those just before a plan that kept its most."""
    seconds = [int(t.scheduled_time) for t in ordered]
    problems = [f"{name}: tick {s} twice" for s, n in collections.Counter(seconds).items() if n > 1]
    missing: list[int] = []
    for before, after in itertools.pairwise(sorted(set(seconds))):
        if after - before > 1 and after not in after_unrecorded:
            missing += range(before + 1, after)
    if missing:
        problems.append(f"{name}: no tick for the seconds {missing[:20]} ({len(missing)})")
    return problems


def unrecorded(found: Sequence[ticks.Tick]) -> int:
    """How many ticks the scheduler counted without recording them (the gaps)."""
    seconds = sorted({int(t.scheduled_time) for t in found})
    return sum(after - before - 1 for before, after in itertools.pairwise(seconds))


def _policy_problems(name: str, group: Sequence[ticks.Tick], policy: Policy) -> list[str]:
    """One plan's ticks (created together), oldest first: the ones that ran must be
    exactly the ones the policy runs, the others MISSED."""
    ran = [t.status is not T.MISSED for t in group]
    if policy.catchup == "latest":
        wanted = 1
    elif policy.catchup == "all":
        wanted = policy.max_catchup_ticks
    else:
        wanted = int(group[-1].created_at - group[-1].scheduled_time <= policy.grace)
    wanted = min(wanted, len(group))
    expected = [False] * (len(group) - wanted) + [True] * wanted
    if ran == expected:
        return []
    shown = ", ".join(f"{t.scheduled_time:.0f} {t.status}" for t in group)
    return [f"{name} ({policy.catchup}): a plan made at {group[0].created_at:.3f}: {shown}"]


def _evaluation_problems(
    name: str,
    ordered: Sequence[ticks.Tick],
    evaluations: Sequence[Evaluation],
    killed: Collection[int],
) -> list[str]:
    by_second: dict[int, list[int]] = collections.defaultdict(list)
    for evaluation in evaluations:
        by_second[evaluation.when].append(evaluation.daemon_pid)
    problems = []
    for tick in ordered:
        pids = by_second.get(int(tick.scheduled_time), [])
        if tick.status is T.MISSED and pids:
            problems.append(f"{name}: MISSED tick {tick.scheduled_time:.0f} evaluated by {pids}")
        elif tick.status is not T.MISSED and not pids:
            problems.append(f"{name}: tick {tick.scheduled_time:.0f} {tick.status}, not evaluated")
        elif len(pids) != len(set(pids)) or len([p for p in pids if p not in killed]) > 1:
            problems.append(f"{name}: tick {tick.scheduled_time:.0f} evaluated by daemons {pids}")
    return problems


# sensors -------------------------------------------------------------------------------
def sensor_problems(name: str, keys: Collection[str]) -> list[str]:
    """Keys k0, kN, k2N, ... up to the last, every one of them (N: every how many counts
    the sensor asks for a run)."""
    every = chaos_defs.SENSOR_RUN_EVERY
    counts = sorted(int(key.removeprefix("k")) for key in keys)
    if not counts:
        return [f"{name}: made no run"]
    expected = list(range(0, counts[-1] + 1, every))
    if counts == expected:
        return []
    lost = sorted(set(expected) - set(counts))
    odd = sorted(set(counts) - set(expected))
    return [f"{name}: run keys lost {lost[:20]}, unexpected {odd[:20]}"]


def tagged_runs(found: Iterable[runs.Run], tags: Mapping[str, str]) -> set[str]:
    return {r.run_id for r in found if all(r.tags.get(k) == v for k, v in tags.items())}
