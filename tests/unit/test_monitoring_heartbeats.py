"""The monitor's verdict on worker heartbeats, pure: a run, a check, a sighting, `now`."""

from __future__ import annotations

import dataclasses

from tests.unit.test_monitoring import LIMITS, T0, check, run
from vigil import monitoring, runs
from vigil.launchers import base as launchers

S = runs.RunStatus
R = runs.EndReason
K = monitoring.Kind
H = launchers.WorkerHealth
BEATING = dataclasses.replace(LIMITS, worker_heartbeat_timeout=30.0)


def judge(
    target: runs.Run,
    health: launchers.HealthCheck,
    now: float,
    sighting: monitoring.Sighting | None,
    limits: monitoring.Limits = BEATING,
    can_resume: bool = True,
) -> monitoring.Action:
    return monitoring.judge(target, health, now, limits, None, can_resume, sighting)


def test_a_sighting_moves_only_when_the_heartbeat_does() -> None:
    beating = run(S.STARTED, worker_heartbeat=5.0)
    first = monitoring.sight(None, beating, T0)
    assert first == monitoring.Sighting(5.0, T0)
    assert monitoring.sight(first, beating, T0 + 20) == first  # same value: seen since T0
    moved = dataclasses.replace(beating, worker_heartbeat=9.0)
    assert monitoring.sight(first, moved, T0 + 20) == monitoring.Sighting(9.0, T0 + 20)
    assert monitoring.sight(first, run(S.STARTED), T0 + 20) is None  # a new launch: none yet


def test_the_heartbeat_is_measured_on_the_monitors_clock_not_the_workers() -> None:
    # The worker's clock is a day behind: its value is old, but it was seen to change now.
    skewed = run(S.STARTED, worker_heartbeat=T0 - 86_400)
    sighting = monitoring.sight(None, skewed, T0)
    assert judge(skewed, check(H.RUNNING), T0 + 29.9, sighting) == monitoring.KEEP


def test_a_silent_worker_is_dead_whatever_the_launcher_says() -> None:
    sighting = monitoring.Sighting(1.0, T0)
    started = run(S.STARTED, worker_heartbeat=1.0)
    assert monitoring.silence(started, sighting, T0 + 29.9, BEATING) is None
    assert monitoring.silence(started, sighting, T0 + 30, BEATING) == 30

    for health in H:
        action = judge(started, check(health, "pid 42"), T0 + 30, sighting)
        assert (action.kind, action.reason) == (K.RESUME, R.WORKER_DIED), health
        assert "no heartbeat for 30 s" in action.message


def test_a_live_but_silent_process_is_killed_as_the_run_moves_on() -> None:
    sighting = monitoring.Sighting(1.0, T0)
    started = run(S.STARTED, worker_heartbeat=1.0)

    resumed = judge(started, check(H.RUNNING, "pid 42"), T0 + 31, sighting)
    assert resumed.kill
    assert resumed.message == (
        "the worker died (no heartbeat for 31 s while its process is alive (pid 42): hung, "
        "stopped or cut off from the store, so it is killed); resuming (attempt 1 of 1)"
    )
    spent = dataclasses.replace(started, resume_attempt=1)
    failed = judge(spent, check(H.RUNNING, "pid 42"), T0 + 31, sighting)
    assert (failed.kind, failed.kill) == (K.FAIL, True)
    assert failed.message.endswith("no resume attempts left (1 of 1 used)")


def test_a_dead_or_unknown_launcher_verdict_refines_the_message() -> None:
    sighting = monitoring.Sighting(1.0, T0)
    started = run(S.STARTED, worker_heartbeat=1.0)

    dead = judge(started, check(H.DEAD, "worker pid 42 exited with code 1"), T0 + 40, sighting)
    assert "(worker pid 42 exited with code 1; no heartbeat for 40 s)" in dead.message
    assert not dead.kill
    unknown = judge(
        started, check(H.UNKNOWN, "worker is on b"), T0 + 40, sighting, can_resume=False
    )
    assert (unknown.kind, unknown.kill) == (K.FAIL, False)
    assert unknown.message == (
        "the worker died (no heartbeat for 40 s; the launcher cannot tell (worker is on b)); "
        "the launcher cannot resume runs"
    )


def test_a_beating_worker_makes_an_unknown_check_harmless() -> None:
    sighting = monitoring.Sighting(1.0, T0)
    started = run(S.STARTED, worker_heartbeat=1.0)
    action = judge(started, check(H.UNKNOWN, "worker is on b"), T0 + 29, sighting)
    assert action == monitoring.KEEP  # no suspicion kept: the heartbeat vouches for it
    # A launcher that reports the worker DEAD is believed at once, heartbeat or not.
    assert judge(started, check(H.DEAD), T0 + 1, sighting).kind is K.RESUME


def test_no_heartbeat_or_no_judging_falls_back_to_the_launcher() -> None:
    never = run(S.STARTED)  # an older worker that never beats
    assert judge(never, check(H.RUNNING), T0 + 1000, None) == monitoring.KEEP
    assert judge(never, check(H.UNKNOWN), T0 + 1000, None).suspicion is not None

    sighting = monitoring.Sighting(1.0, T0)
    started = run(S.STARTED, worker_heartbeat=1.0)
    assert judge(started, check(H.RUNNING), T0 + 1000, sighting, LIMITS) == monitoring.KEEP


def test_only_started_runs_are_judged_by_their_heartbeat() -> None:
    sighting = monitoring.Sighting(1.0, T0)
    for status in (S.STARTING, S.CANCELING):
        silent = run(status, worker_heartbeat=1.0)
        assert monitoring.silence(silent, sighting, T0 + 1000, BEATING) is None
