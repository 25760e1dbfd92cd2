"""Health judgement: a pure function of a heartbeat, the time and the heartbeat interval."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from vigil.daemon import health, heartbeat, loop
from vigil.storage import store as store_mod

H = health.Health
S = loop.LoopState
NOW = 10_000.0
HB = 5.0  # heartbeat interval
IDENTITY = heartbeat.DaemonIdentity("d1", "box", 42, 9_000.0)


def stats(**changes: Any) -> loop.LoopStatistics:
    base = loop.LoopStatistics(
        name="scheduler",
        interval=30.0,
        timeout=60.0,
        state=S.IDLE,
        iterations=10,
        failures=0,
        restarts=0,
        last_iteration_start=NOW - 20,
        last_iteration_end=NOW - 19,
        last_success=NOW - 19,
        last_duration=1.0,
        errors=(),
        consecutive_failures=0,
        started_at=9_000.0,
        total_duration=10.0,
    )
    return dataclasses.replace(base, **changes)


def beat(
    s: loop.LoopStatistics | None = None, *, age: float = 1.0, **info: Any
) -> store_mod.Heartbeat:
    data = heartbeat.loop_info(s or stats(), IDENTITY, HB)
    data.update(info)
    return store_mod.Heartbeat("d1", "scheduler", "box", 42, NOW - age, data)


def failing_stats(count: int = 2) -> loop.LoopStatistics:
    error = loop.LoopError(NOW - 5, "ValueError", "bad cron\nsecond line")
    return stats(consecutive_failures=count, failures=count, errors=(error,), state=S.BACKOFF)


def judge(b: store_mod.Heartbeat) -> health.Verdict:
    return health.judge(b, NOW, HB)


# each state ---------------------------------------------------------------------------
def test_a_fresh_heartbeat_of_a_progressing_loop_is_healthy() -> None:
    verdict = judge(beat())
    assert verdict == health.Verdict(H.HEALTHY, "last iteration ended 19s ago")
    assert verdict.live


def test_a_heartbeat_marked_stopped_is_stopped_however_old() -> None:
    assert judge(beat(age=1.0, stopped=True)) == health.Verdict(H.STOPPED, "shut down 1.0s ago")
    assert judge(beat(age=3600.0, stopped=True)).health is H.STOPPED
    assert not judge(beat(stopped=True)).live


def test_down_only_past_three_heartbeat_intervals() -> None:
    assert judge(beat(age=3 * HB)).health is H.HEALTHY
    verdict = judge(beat(age=3 * HB + 0.01))
    assert verdict == health.Verdict(H.DOWN, "no heartbeat for 15s (over 3 x 5s)")
    assert not verdict.live


def test_hung_only_past_the_loops_own_timeout() -> None:
    running = dict(state=S.RUNNING, last_iteration_start=NOW - 60.0)
    assert judge(beat(stats(**running))).health is H.HEALTHY
    verdict = judge(beat(stats(**{**running, "last_iteration_start": NOW - 61.0})))
    assert verdict == health.Verdict(H.HUNG, "iteration running for 1m01s, past its 60s timeout")
    assert not verdict.live


def test_failing_when_the_last_iterations_raised() -> None:
    verdict = judge(beat(failing_stats(2)))
    assert verdict == health.Verdict(
        H.FAILING, "2 failed iterations in a row: ValueError: bad cron"
    )
    assert verdict.live
    assert judge(beat(failing_stats(1))).reason.startswith("1 failed iteration in a row")


def test_late_only_past_three_loop_intervals_without_an_iteration_ending() -> None:
    assert judge(beat(stats(last_iteration_end=NOW - 90.0))).health is H.HEALTHY
    verdict = judge(beat(stats(last_iteration_end=NOW - 90.5)))
    assert verdict == health.Verdict(H.LATE, "no iteration ended for 1m30s (over 3 x 30s interval)")
    assert verdict.live


def test_late_counts_from_the_start_when_no_iteration_ended_yet() -> None:
    never = dict(last_iteration_end=None, last_iteration_start=None, last_success=None)
    assert judge(beat(stats(**never, started_at=NOW - 10))) == health.Verdict(
        H.HEALTHY, "no iteration ended yet"
    )
    assert judge(beat(stats(**never, started_at=NOW - 91))).health is H.LATE


def test_a_long_iteration_within_its_timeout_is_late_not_hung() -> None:
    s = stats(state=S.RUNNING, last_iteration_start=NOW - 59, last_iteration_end=NOW - 100)
    assert judge(beat(s)).health is H.LATE


# precedence ---------------------------------------------------------------------------
def test_stopped_wins_over_down() -> None:
    assert judge(beat(age=1000.0, stopped=True)).health is H.STOPPED


def test_down_wins_over_hung() -> None:
    s = stats(state=S.RUNNING, last_iteration_start=NOW - 500)
    assert judge(beat(s, age=100.0)).health is H.DOWN


def test_hung_wins_over_failing() -> None:
    s = dataclasses.replace(failing_stats(), state=S.RUNNING, last_iteration_start=NOW - 100.0)
    assert judge(beat(s)).health is H.HUNG


def test_failing_wins_over_late_a_loop_in_backoff_is_failing() -> None:
    s = dataclasses.replace(failing_stats(), last_iteration_end=NOW - 1000.0)
    assert judge(beat(s)).health is H.FAILING


# the heartbeat's own record ------------------------------------------------------------
def test_the_recorded_heartbeat_interval_wins_over_the_readers() -> None:
    slow = beat(age=20.0, heartbeat_interval=10.0)
    assert health.judge(slow, NOW, heartbeat_interval=1.0).health is H.HEALTHY
    assert health.judge(beat(age=31.0, heartbeat_interval=10.0), NOW, 1.0).health is H.DOWN


def test_a_heartbeat_without_a_recorded_interval_uses_the_readers() -> None:
    bare = store_mod.Heartbeat("d1", "x", "box", 1, NOW - 4.0, {})
    assert health.judge(bare, NOW, heartbeat_interval=1.0).health is H.DOWN
    assert health.judge(bare, NOW, heartbeat_interval=2.0).health is not H.DOWN


def test_the_supervisors_row_is_healthy_while_fresh() -> None:
    info = heartbeat.supervisor_info("running", ["a", "b"], IDENTITY, HB)
    row = store_mod.Heartbeat("d1", heartbeat.SUPERVISOR, "box", 42, NOW - 1, info)
    assert judge(row) == health.Verdict(H.HEALTHY, "supervising 2 loops")
    stopping = {**info, "state": "stopping"}
    assert judge(dataclasses.replace(row, info=stopping)).reason.startswith("stopping")
    assert judge(dataclasses.replace(row, last_heartbeat=NOW - 16)).health is H.DOWN
    assert judge(dataclasses.replace(row, info={**info, "stopped": True})).health is H.STOPPED


# in the daemon: statistics -------------------------------------------------------------
def test_a_stopped_loop_in_the_daemon_is_stopped() -> None:
    assert health.judge_statistics(stats(state=S.STOPPED), NOW).health is H.STOPPED


def test_making_progress_is_false_only_when_a_loop_is_hung() -> None:
    hung = stats(name="q", state=S.RUNNING, last_iteration_start=NOW - 100)
    assert health.making_progress([stats(), failing_stats()], NOW)
    assert health.making_progress([stats(last_iteration_end=NOW - 1000)], NOW)
    assert not health.making_progress([stats(), hung], NOW)
    assert health.making_progress([], NOW)


def test_liveness_names_the_first_loop_that_is_not_live() -> None:
    hung = stats(name="q", state=S.RUNNING, last_iteration_start=NOW - 100)
    assert health.liveness([stats(), failing_stats()], NOW) == (True, "2 loops live")
    ok, reason = health.liveness([stats(), hung], NOW)
    assert not ok
    assert reason.startswith("loop q is hung: iteration running for 1m40s")
    assert "\n" not in reason


def test_readiness_names_the_first_loop_that_is_not_healthy() -> None:
    assert health.readiness([stats()], NOW) == (True, "1 loop healthy")
    ok, reason = health.readiness([stats(), dataclasses.replace(failing_stats(), name="q")], NOW)
    assert not ok
    assert reason == "loop q is failing: 2 failed iterations in a row: ValueError: bad cron"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-1.0, "0.0s"),
        (0.04, "0.0s"),
        (9.94, "9.9s"),
        (10.0, "10s"),
        (59.9, "59s"),
        (61.0, "1m01s"),
        (3599.0, "59m59s"),
        (3660.0, "1h01m"),
        (90000.0, "1d01h"),
    ],
)
def test_ages_are_short(seconds: float, shown: str) -> None:
    assert health.format_age(seconds) == shown
