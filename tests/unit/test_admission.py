"""The queued coordinator's admission rule: examples for each rule, then properties.

The properties check `admit` against a plain recount of the limits (`_exceeded`), written
without the module's own counting.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import hypothesis
import pydantic
import pytest
from hypothesis import strategies as st

from vigil.coordinators import admission
from vigil.coordinators.admission import Candidate, Limits, TagLimit

Tags = Mapping[str, str]
Numbers = tuple[int, int]


def run(run_id: str, created_at: float = 0.0, **tags: str) -> Candidate:
    return Candidate(run_id=run_id, tags=tags, created_at=created_at)


def prio(run_id: str, priority: str, created_at: float = 0.0) -> Candidate:
    return Candidate(run_id, {admission.PRIORITY_TAG: priority}, created_at)


def team(name: str) -> Tags:
    return {"team": name}


# -- priority and order --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5", 5),
        ("-3", -3),
        ("+2", 2),
        (" 7 ", 7),
        ("high", 0),
        ("1.5", 0),
        ("1_000", 0),
        ("", 0),
        ("\u0663", 0),  # ARABIC-INDIC DIGIT THREE: int() takes it, the rule does not
        ("9" * 5000, 0),  # beyond Python's integer string length limit
    ],
)
def test_priority_is_the_integer_tag_else_zero(raw: str, expected: int) -> None:
    assert admission.priority_of({admission.PRIORITY_TAG: raw}) == expected


def test_priority_defaults_to_zero() -> None:
    assert admission.priority_of({"team": "data"}) == 0


def test_order_is_priority_then_oldest_then_run_id() -> None:
    queued = [prio("low", "-1", 0.0), run("b", 1.0), run("a", 1.0), run("old", 0.5)]
    queued.append(prio("high", "10", 9.0))
    assert [c.run_id for c in admission.order(queued)] == ["high", "old", "a", "b", "low"]


def test_launch_follows_the_order() -> None:
    queued = [run("late", 2.0), prio("urgent", "3", 3.0), run("early", 1.0)]
    decision = admission.admit(queued, [], Limits(max_concurrent_runs=-1))
    assert decision.launch == ("urgent", "early", "late")
    assert dict(decision.waiting) == {}


# -- the global limit ----------------------------------------------------------------------


def test_global_limit_counts_in_flight_runs() -> None:
    queued = [run(f"r{i}", float(i)) for i in range(4)]
    decision = admission.admit(queued, [{}] * 8, Limits(max_concurrent_runs=10))
    assert decision.launch == ("r0", "r1")
    assert dict(decision.waiting) == {"r2": "global limit 10/10", "r3": "global limit 10/10"}


def test_global_limit_reports_usage_already_over_it() -> None:
    decision = admission.admit([run("r")], [{}] * 3, Limits(max_concurrent_runs=2))
    assert dict(decision.waiting) == {"r": "global limit 3/2"}


def test_unlimited_launches_everything() -> None:
    queued = [run(f"r{i}") for i in range(50)]
    decision = admission.admit(queued, [{}] * 100, Limits(max_concurrent_runs=-1))
    assert len(decision.launch) == 50


def test_zero_pauses_the_queue() -> None:
    queued = [run("a"), run("b", team="data")]
    limits = Limits(max_concurrent_runs=0, tag_limits=(TagLimit(key="team", limit=5),))
    decision = admission.admit(queued, [], limits)
    assert decision.launch == ()
    assert dict(decision.waiting) == {"a": "queue paused", "b": "queue paused"}


# -- tag limits ----------------------------------------------------------------------------


def test_tag_value_limit_counts_runs_with_that_value() -> None:
    limits = Limits(
        max_concurrent_runs=-1, tag_limits=(TagLimit(key="team", value="data", limit=3),)
    )
    in_flight = [team("data"), team("data"), team("ml"), {}]
    queued = [run("d1", 1, team="data"), run("d2", 2, team="data"), run("ml", 3, team="ml")]
    decision = admission.admit(queued, in_flight, limits)
    assert decision.launch == ("d1", "ml")
    assert dict(decision.waiting) == {"d2": "tag team=data 3/3"}


def test_tag_limit_without_value_counts_every_run_with_the_tag() -> None:
    limits = Limits(max_concurrent_runs=-1, tag_limits=(TagLimit(key="team", limit=2),))
    queued = [run("ml", 1, team="ml"), run("data", 2, team="data"), run("none", 3)]
    decision = admission.admit(queued, [team("bi")], limits)
    assert decision.launch == ("ml", "none")
    assert dict(decision.waiting) == {"data": "tag team 2/2"}


def test_per_value_limit_is_one_limit_per_value() -> None:
    limits = Limits(
        max_concurrent_runs=-1, tag_limits=(TagLimit(key="team", limit=2, per_value=True),)
    )
    queued = [run("ml", 1, team="ml"), run("data", 2, team="data"), run("untagged", 3)]
    decision = admission.admit(queued, [team("ml"), team("ml"), team("data")], limits)
    assert decision.launch == ("data", "untagged")
    assert dict(decision.waiting) == {"ml": "tag team=ml 2/2 (per value)"}


def test_tag_limit_of_zero_holds_every_matching_run() -> None:
    limits = Limits(
        max_concurrent_runs=-1, tag_limits=(TagLimit(key="team", value="data", limit=0),)
    )
    decision = admission.admit([run("d", team="data"), run("x")], [], limits)
    assert decision.launch == ("x",)
    assert dict(decision.waiting) == {"d": "tag team=data 0/0"}


def test_runs_launched_in_this_call_count_against_the_limits() -> None:
    limits = Limits(
        max_concurrent_runs=3, tag_limits=(TagLimit(key="team", limit=1, per_value=True),)
    )
    queued = [run(f"{t}{i}", float(i), team=t) for i in range(3) for t in ("a", "b")]
    decision = admission.admit(queued, [], limits)
    assert decision.launch == ("a0", "b0")
    assert decision.waiting["a1"] == "tag team=a 1/1 (per value)"
    assert decision.waiting["b2"] == "tag team=b 1/1 (per value)"


def test_a_run_held_by_a_tag_limit_never_blocks_the_runs_behind_it() -> None:
    limits = Limits(
        max_concurrent_runs=2, tag_limits=(TagLimit(key="team", value="data", limit=1),)
    )
    big = Candidate("big", {admission.PRIORITY_TAG: "9", "team": "data"}, 0.0)
    queued = [big, run("d", 1.0, team="data"), run("x", 2.0)]
    decision = admission.admit(queued, [team("data")], limits)
    assert decision.launch == ("x",)
    assert list(decision.waiting) == ["big", "d"]


def test_tag_limits_are_reported_before_the_global_limit() -> None:
    limits = Limits(
        max_concurrent_runs=1,
        tag_limits=(TagLimit(key="env", limit=5), TagLimit(key="team", value="data", limit=1)),
    )
    queued = [run("d", 1.0, team="data", env="prod"), run("x", 2.0)]
    decision = admission.admit(queued, [team("data")], limits)
    assert dict(decision.waiting) == {"d": "tag team=data 1/1", "x": "global limit 1/1"}


# -- a backfill's own limit ------------------------------------------------------------------


def backfill(name: str, limit: str | None = None) -> dict[str, str]:
    tags = {"vigil/backfill": name}
    if limit is not None:
        tags["vigil/backfill_max_concurrent"] = limit
    return tags


def test_a_backfill_limit_counts_that_backfills_in_flight_runs_only() -> None:
    limits = Limits(max_concurrent_runs=-1)
    in_flight = [backfill("a", "2"), backfill("b", "2"), {}]
    queued = [
        Candidate("a1", backfill("a", "2"), 1.0),
        Candidate("a2", backfill("a", "2"), 2.0),
        Candidate("b1", backfill("b", "2"), 3.0),
        Candidate("b2", backfill("b", "2"), 4.0),
        Candidate("c1", backfill("c"), 5.0),  # no limit of its own
    ]
    decision = admission.admit(queued, in_flight, limits)
    assert decision.launch == ("a1", "b1", "c1")
    assert dict(decision.waiting) == {"a2": "backfill a 2/2", "b2": "backfill b 2/2"}


def test_a_backfill_limit_holds_with_the_global_and_tag_limits() -> None:
    limits = Limits(max_concurrent_runs=3, tag_limits=(TagLimit(key="team", limit=1),))
    queued = [
        Candidate("a1", {**backfill("a", "1"), "team": "x"}, 1.0),
        Candidate("a2", backfill("a", "1"), 2.0),
        Candidate("o1", {"team": "y"}, 3.0),
        Candidate("o2", {}, 4.0),
        Candidate("o3", {}, 5.0),
    ]
    decision = admission.admit(queued, [], limits)
    assert decision.launch == ("a1", "o2", "o3")
    assert dict(decision.waiting) == {"a2": "backfill a 1/1", "o1": "tag team 1/1"}


@pytest.mark.parametrize("raw", ["", "x", "1.5", "99999999999999"])
def test_a_malformed_backfill_limit_is_no_limit(raw: str) -> None:
    queued = [Candidate(f"a{i}", backfill("a", raw), float(i)) for i in range(3)]
    decision = admission.admit(queued, [backfill("a", raw)], Limits(max_concurrent_runs=-1))
    assert decision.launch == ("a0", "a1", "a2")


# -- the launch batch ----------------------------------------------------------------------


def test_max_launch_caps_one_call() -> None:
    queued = [run(f"r{i}", float(i)) for i in range(4)]
    decision = admission.admit(queued, [], Limits(max_concurrent_runs=-1), max_launch=2)
    assert decision.launch == ("r0", "r1")
    assert dict(decision.waiting) == {"r2": "launch batch full", "r3": "launch batch full"}


def test_a_full_batch_does_not_hide_a_limit() -> None:
    limits = Limits(
        max_concurrent_runs=-1, tag_limits=(TagLimit(key="team", value="data", limit=0),)
    )
    queued = [run("a", 1.0), run("d", 2.0, team="data"), run("b", 3.0)]
    decision = admission.admit(queued, [], limits, max_launch=1)
    assert dict(decision.waiting) == {"d": "tag team=data 0/0", "b": "launch batch full"}


def test_max_launch_zero_launches_nothing() -> None:
    decision = admission.admit([run("a")], [], Limits(max_concurrent_runs=-1), max_launch=0)
    assert dict(decision.waiting) == {"a": "launch batch full"}


def test_negative_max_launch_is_refused() -> None:
    with pytest.raises(ValueError, match="max_launch"):
        admission.admit([], [], Limits(max_concurrent_runs=1), max_launch=-1)


def test_repeated_run_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="repeated: a"):
        admission.admit([run("a"), run("a", 1.0)], [], Limits(max_concurrent_runs=1))


def test_decision_is_read_only() -> None:
    decision = admission.admit([run("a")], [], Limits(max_concurrent_runs=0))
    with pytest.raises(TypeError):
        decision.waiting["a"] = "x"  # type: ignore[index]


# -- validation of the limit models --------------------------------------------------------


def test_tag_limits_validate_from_config_data() -> None:
    data = [
        {"key": "team", "value": "data", "limit": 3},
        {"key": "team", "limit": 2, "per_value": True},
    ]
    tag_limits = pydantic.TypeAdapter(tuple[TagLimit, ...]).validate_python(data)
    assert tag_limits[1] == TagLimit(key="team", limit=2, per_value=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"key": "team", "limit": -1}, "greater than or equal to 0"),
        ({"key": "team", "value": "a", "limit": 1, "per_value": True}, "not both"),
        ({"key": "team", "limit": 1, "values": ["a"]}, "Unexpected keyword argument"),
        ({"key": "", "limit": 1}, "at least 1 character"),
        ({"key": "team"}, "Field required"),
    ],
)
def test_bad_tag_limits_are_refused(data: Mapping[str, object], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        pydantic.TypeAdapter(TagLimit).validate_python(data)


def test_global_limit_below_minus_one_is_refused() -> None:
    with pytest.raises(ValueError, match="must be >= -1"):
        Limits(max_concurrent_runs=-2)


def test_limit_models_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TagLimit(key="team", limit=1).limit = 2  # type: ignore[misc]


# -- properties ----------------------------------------------------------------------------

PROPERTY = hypothesis.settings(max_examples=300, deadline=None, derandomize=True, database=None)
KEYS = ("team", "env")
VALUES = ("a", "b", "c")
REASON = re.compile(
    r"(?P<label>global limit|tag \S+) (?P<count>\d+)/(?P<limit>\d+)(?P<pv> \(per value\))?"
)

tags_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2)
priority_st = st.sampled_from([None, "-1", "0", "1", "2", "high"])


@st.composite
def candidates_st(draw: st.DrawFn) -> list[Candidate]:
    queued = []
    for index in range(draw(st.integers(0, 12))):
        tags = dict(draw(tags_st))
        priority = draw(priority_st)
        if priority is not None:
            tags[admission.PRIORITY_TAG] = priority
        created_at = float(draw(st.integers(0, 4)))
        queued.append(Candidate(f"r{index}", tags, created_at))
    return draw(st.permutations(queued))


tag_limit_st = st.one_of(
    st.builds(
        TagLimit, key=st.sampled_from(KEYS), value=st.sampled_from(VALUES), limit=st.integers(0, 3)
    ),
    st.builds(TagLimit, key=st.sampled_from(KEYS), limit=st.integers(0, 3)),
    st.builds(
        TagLimit, key=st.sampled_from(KEYS), limit=st.integers(0, 3), per_value=st.just(True)
    ),
)
limits_st = st.builds(
    Limits,
    max_concurrent_runs=st.integers(-1, 8),
    tag_limits=st.lists(tag_limit_st, max_size=3).map(tuple),
)
in_flight_st = st.lists(tags_st, max_size=8)
max_launch_st = st.none() | st.integers(0, 6)


def _label(limit: TagLimit, value: str) -> str:
    if limit.per_value:
        return f"tag {limit.key}={value} (per value)"
    return f"tag {limit.key}" + ("" if limit.value is None else f"={limit.value}")


def _counts(limit: TagLimit, value: str, running: Sequence[Tags]) -> int:
    if limit.per_value:
        return sum(1 for tags in running if tags.get(limit.key) == value)
    if limit.value is None:
        return sum(1 for tags in running if limit.key in tags)
    return sum(1 for tags in running if tags.get(limit.key) == limit.value)


def _exceeded(tags: Tags, running: Sequence[Tags], limits: Limits) -> dict[str, set[Numbers]]:
    """The limits that adding a run with these tags to `running` would exceed.

    Each as its reason label -> {(runs it counts in `running`, limit)}: several tag limits
    may share a label.
    """
    found: dict[str, set[Numbers]] = {}
    for limit in limits.tag_limits:
        value = tags.get(limit.key, "")
        count = _counts(limit, value, running)
        if limit.applies_to(tags) and count + 1 > limit.limit:
            found.setdefault(_label(limit, value), set()).add((count, limit.limit))
    if 0 <= limits.max_concurrent_runs < len(running) + 1:
        found["global limit"] = {(len(running), limits.max_concurrent_runs)}
    return found


def _held_by_what_it_says(reason: str, tags: Tags, after: Sequence[Tags], limits: Limits) -> bool:
    """Whether `reason` names a limit that one more run with these tags would exceed."""
    match = REASON.fullmatch(reason)
    assert match is not None, reason
    label = match["label"] + (match["pv"] or "")
    numbers = (int(match["count"]), int(match["limit"]))
    return numbers in _exceeded(tags, after, limits).get(label, set())


def _after(
    queued: Sequence[Candidate], in_flight: Sequence[Tags], launch: Sequence[str]
) -> list[Tags]:
    by_id = {c.run_id: c for c in queued}
    return [*in_flight, *(by_id[run_id].tags for run_id in launch)]


@PROPERTY
@hypothesis.given(candidates_st(), in_flight_st, limits_st, max_launch_st)
def test_every_queued_run_is_launched_or_waits_once(
    queued: list[Candidate], in_flight: list[Tags], limits: Limits, max_launch: int | None
) -> None:
    decision = admission.admit(queued, in_flight, limits, max_launch)
    assert sorted([*decision.launch, *decision.waiting]) == sorted(c.run_id for c in queued)
    assert max_launch is None or len(decision.launch) <= max_launch
    if admission.BATCH_FULL in decision.waiting.values():
        assert len(decision.launch) == max_launch


@PROPERTY
@hypothesis.given(candidates_st(), in_flight_st, limits_st, max_launch_st)
def test_no_limit_is_exceeded_after_admitting(
    queued: list[Candidate], in_flight: list[Tags], limits: Limits, max_launch: int | None
) -> None:
    decision = admission.admit(queued, in_flight, limits, max_launch)
    after = _after(queued, in_flight, decision.launch)
    if limits.max_concurrent_runs >= 0:
        assert len(after) <= max(limits.max_concurrent_runs, len(in_flight))
        assert not decision.launch or len(after) <= limits.max_concurrent_runs
    for limit in limits.tag_limits:
        for value in VALUES:
            before, now = _counts(limit, value, in_flight), _counts(limit, value, after)
            assert now == before or now <= limit.limit, (limit, value)


@PROPERTY
@hypothesis.given(candidates_st(), in_flight_st, limits_st, max_launch_st)
def test_priority_order_holds(
    queued: list[Candidate], in_flight: list[Tags], limits: Limits, max_launch: int | None
) -> None:
    decision = admission.admit(queued, in_flight, limits, max_launch)
    by_id = {c.run_id: c for c in queued}
    keys = [
        (-admission.priority_of(c.tags), c.created_at, c.run_id)
        for c in (by_id[run_id] for run_id in decision.launch)
    ]
    assert keys == sorted(keys)
    # A waiting run ahead of the last launched run in the queue order (higher priority, or
    # equal priority and older) waits only because a limit that applies to it holds it.
    after = _after(queued, in_flight, decision.launch)
    last = max(keys, default=None)
    for run_id, reason in decision.waiting.items():
        candidate = by_id[run_id]
        key = (-admission.priority_of(candidate.tags), candidate.created_at, run_id)
        if last is not None and key < last:
            assert reason != admission.BATCH_FULL
            assert _held_by_what_it_says(reason, candidate.tags, after, limits), reason


@PROPERTY
@hypothesis.given(candidates_st(), in_flight_st, limits_st, max_launch_st)
def test_no_launchable_run_is_left_waiting(
    queued: list[Candidate], in_flight: list[Tags], limits: Limits, max_launch: int | None
) -> None:
    decision = admission.admit(queued, in_flight, limits, max_launch)
    after = _after(queued, in_flight, decision.launch)
    by_id = {c.run_id: c for c in queued}
    for run_id, reason in decision.waiting.items():
        if reason == admission.BATCH_FULL:
            continue
        tags = by_id[run_id].tags
        if reason == admission.QUEUE_PAUSED:
            assert limits.max_concurrent_runs == 0
            assert "global limit" in _exceeded(tags, after, limits)
        else:
            assert _held_by_what_it_says(reason, tags, after, limits), reason
