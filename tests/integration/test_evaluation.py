"""Evaluation processes: real child processes answering over a pipe, timeouts, load errors."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from vigil import runs
from vigil.config import settings
from vigil.evaluation import messages, pool

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
GOOD = settings.CodeLocationSettings(name="good", file=HERE / "instigators.py")
BROKEN = settings.CodeLocationSettings(name="broken", file=HERE / "broken_instigators.py")
MIDNIGHT = 1767225600.0  # 2026-01-01 00:00 UTC


def evaluation(name: str, timeout: float = 30.0, location: str = "good") -> pool.Evaluation:
    return pool.Evaluation(location, messages.ScheduleRequest(name, MIDNIGHT), timeout)


@pytest.fixture
async def evaluators() -> AsyncIterator[pool.EvaluatorPool]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    built = pool.build([GOOD, BROKEN], REPO, env, processes=1, max_concurrent=4, retry_after=3600.0)
    try:
        yield built
    finally:
        await built.close()


async def test_the_catalog_lists_what_a_location_defines(evaluators: pool.EvaluatorPool) -> None:
    good, broken = await evaluators.catalogs()

    assert good.error is None
    assert [s["name"] for s in good.schedules][:3] == ["every_minute", "defaults", "skipper"]
    assert good.schedules[0]["timezone"] == "Europe/Berlin"
    assert {s["name"] for s in good.sensors} == {"files", "no_job_named", "on_failure"}
    assert broken.error is not None
    assert "code location 'broken' failed to load" in broken.error
    assert "vigil_no_such_module" in broken.error


async def test_a_schedule_answers_checked_run_requests(evaluators: pool.EvaluatorPool) -> None:
    [result] = await evaluators.evaluate_all([evaluation("every_minute")])

    assert result.ok
    [request] = result.answer.requests
    assert request.job == "counted"
    assert request.run_config == {"steps": {"count": {"rows": 2}}}
    assert request.tags == {"team": "data", "local": "2026-01-01T01:00:00+01:00"}


async def test_nothing_returned_asks_for_one_default_run(evaluators: pool.EvaluatorPool) -> None:
    [result] = await evaluators.evaluate_all([evaluation("defaults")])

    assert [r.run_config for r in result.answer.requests] == [{}]


async def test_skip_raise_bad_config_and_odd_answers(evaluators: pool.EvaluatorPool) -> None:
    names = ["skipper", "raiser", "bad_config", "odd_answer", "chatty"]
    skip, raised, bad, odd, chatty = await evaluators.evaluate_all([evaluation(n) for n in names])

    assert (skip.ok, skip.answer.skip, skip.answer.requests) == (True, "nothing today", ())
    assert raised.error is not None
    assert "Traceback" in raised.error
    assert "RuntimeError: schedule exploded" in raised.error
    assert bad.error is not None
    assert "steps.count.rows" in bad.error
    assert odd.error is not None
    assert "returned 42: expected a RunRequest" in odd.error
    assert [r.run_key for r in chatty.answer.requests] == ["a", "b"]


async def test_a_hang_past_the_timeout_kills_and_restarts_the_process(
    evaluators: pool.EvaluatorPool,
) -> None:
    [hung] = await evaluators.evaluate_all([evaluation("hanger", timeout=0.5)])
    [after] = await evaluators.evaluate_all([evaluation("skipper")])

    assert hung.timed_out
    assert hung.error == "timed out after 0.5 s"
    assert evaluators.restarts == 1
    assert after.ok


async def test_a_broken_location_fails_its_own_requests_only(
    evaluators: pool.EvaluatorPool,
) -> None:
    broken, good = await evaluators.evaluate_all(
        [evaluation("anything", location="broken"), evaluation("skipper")]
    )

    assert broken.error is not None
    assert "vigil_no_such_module" in broken.error
    assert good.ok


async def test_sensors_carry_their_cursor_and_pick_their_job(
    evaluators: pool.EvaluatorPool,
) -> None:
    request = messages.SensorRequest("files", cursor="4")
    ambiguous = messages.SensorRequest("no_job_named")
    files, no_job = await evaluators.evaluate_all(
        [pool.Evaluation("good", request, 30.0), pool.Evaluation("good", ambiguous, 30.0)]
    )

    assert (files.answer.cursor, files.answer.cursor_updated) == ("5", True)
    assert [(r.job, r.run_key) for r in files.answer.requests] == [("other", "file-4")]
    assert no_job.error is not None
    assert "name one in RunRequest(job=...)" in no_job.error


async def test_a_run_status_sensor_is_called_for_every_run(evaluators: pool.EvaluatorPool) -> None:
    items = tuple(
        messages.RunStatusItem(
            run_id=f"r{i}",
            job_name="counted",
            status=runs.RunStatus.FAILURE,
            tags={"ignore": "yes" if i == 1 else "no"},
            event_id=i,
            timestamp=MIDNIGHT,
            message="failed",
        )
        for i in range(3)
    )
    request = messages.RunStatusRequest("on_failure", items)
    [result] = await evaluators.evaluate_all([pool.Evaluation("good", request, 30.0)])

    made = result.answer.requests
    assert [r.tags["failed_run"] for r in made] == ["r0", "r2"]
    assert [r.run_key for r in made] == ["run:r0/0", "run:r2/0"]


def test_round_robin_interleaves_locations_in_their_own_order() -> None:
    batch = [evaluation(str(i), location=loc) for i, loc in enumerate("aaab")]

    assert pool.round_robin(batch) == [0, 3, 1, 2]
