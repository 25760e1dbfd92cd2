"""Evaluation processes: real child processes answering over a pipe, timeouts, load errors."""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import subprocess
import sys
from collections.abc import AsyncIterator

import anyio
import psutil
import pytest

from tests import waiting
from tests.integration import pools
from vigil import runs
from vigil.config import settings
from vigil.evaluation import messages, pool, process

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
    served = pools.serve(built)
    try:
        yield built
    finally:
        await pools.stop(built, served)


async def test_the_catalog_lists_what_a_location_defines(evaluators: pool.EvaluatorPool) -> None:
    good, broken = await pools.loaded(evaluators)

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


HANGING = settings.CodeLocationSettings(name="hanging", file=HERE / "hanging_location.py")
FLOODING = settings.CodeLocationSettings(name="flooding", file=HERE / "flooding_location.py")
EXITING = settings.CodeLocationSettings(name="exiting", file=HERE / "exiting_location.py")
GATED = settings.CodeLocationSettings(name="gated", file=HERE / "gated_location.py")


@contextlib.asynccontextmanager
async def served(
    locations: list[settings.CodeLocationSettings],
    load_timeout: float = 120.0,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[pool.EvaluatorPool]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **(extra_env or {})}
    built = pool.build(
        locations,
        REPO,
        env,
        processes=1,
        max_concurrent=4,
        retry_after=3600.0,
        load_timeout=load_timeout,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(built.serve)
        try:
            yield built
        finally:
            await built.close()
            tg.cancel_scope.cancel()


async def test_a_location_hanging_on_import_holds_back_no_other() -> None:
    async with served([HANGING, GOOD], load_timeout=600.0) as evaluators:
        with anyio.fail_after(60):
            while True:
                hanging, good = await evaluators.catalogs()
                if not good.loading:
                    break
        [answer] = await evaluators.evaluate_all([evaluation("skipper")])

        assert hanging.loading
        assert hanging.error is None
        assert answer.ok


async def test_a_load_past_its_timeout_fails_the_location_with_one_line() -> None:
    async with served([HANGING], load_timeout=1.0) as evaluators:
        with anyio.fail_after(60):
            while True:
                [hanging] = await evaluators.catalogs()
                if hanging.error is not None:
                    break
                await anyio.sleep(0.05)
        [failed] = await evaluators.evaluate_all([evaluation("x", location="hanging")])

    assert hanging.error == "code location 'hanging' failed to load: timed out after 1 s"
    assert failed.error == hanging.error  # failed at once, not loaded again before load_retry


async def test_a_reload_kills_a_hanging_load_and_takes_the_new_workspace() -> None:
    async with served([HANGING, GOOD], load_timeout=600.0) as evaluators:
        await evaluators.catalogs()
        location = evaluators._locations["hanging"]
        [proc] = location._all
        pid = proc.pid
        assert pid is not None

        with anyio.fail_after(10):  # killed at once: a loading process is not asked to close
            await evaluators.reload([GOOD])
        [good] = await pools.loaded(evaluators)

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert good.location == "good"
    assert good.error is None


async def test_a_reload_lets_an_evaluation_in_flight_answer(tmp_path: pathlib.Path) -> None:
    # A SIGHUP reloads the workspace: the evaluation a process is answering then finishes
    # (on the code as it was), and only then is that process closed. Before, the reload
    # closed it mid-answer and the tick failed ("the evaluation process is gone").
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    async with served([GATED], extra_env={"VIGIL_TEST_GATE": str(gate)}) as evaluators:
        await pools.loaded(evaluators)
        location = evaluators._locations["gated"]
        [proc] = location._all
        results: list[pool.Result] = []

        async def ask() -> None:
            results.extend(await evaluators.evaluate_all([evaluation("gated", location="gated")]))

        async def taken() -> bool:  # the process took the request: none is idle
            return not location._idle

        async def closed() -> bool:
            return not psutil.pid_exists(proc.pid or 0) or (
                psutil.Process(proc.pid or 0).status() == psutil.STATUS_ZOMBIE
            )

        async def opened() -> bool:  # the schedule reads the gate: let it answer
            try:
                fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader (yet, or any more: its process is gone)
                return False
            os.write(fd, b"go")
            os.close(fd)
            return True

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            await waiting.eventually(taken)
            with anyio.fail_after(30):
                await evaluators.reload([GATED])
            await waiting.eventually(opened)
        [result] = results
        await waiting.eventually(closed)  # the old process, once it had answered

    assert result.error is None
    assert [request.job for request in result.answer.requests] == ["nothing"]


async def test_output_of_user_code_is_bounded_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vigil.evaluation.pool")
    async with served([FLOODING]) as evaluators:
        [flooding] = await pools.loaded(evaluators)

    lines = [r for r in caplog.records if getattr(r, "event", None) == "location.output"]
    text = "".join(r.getMessage() + "\n" for r in lines)
    assert flooding.error is None
    assert [s["name"] for s in flooding.schedules] == ["flood_schedule"]
    assert {getattr(r, "location", None) for r in lines} == {"flooding"}
    assert len(text) <= process.OUTPUT_LIMIT + 200
    assert lines[-1].getMessage().startswith("... ")
    assert lines[-1].getMessage().endswith(" more bytes of output cut")
    assert max(len(r.getMessage()) for r in lines) <= process.LINE_LIMIT


async def test_a_function_that_ends_its_process_fails_its_tick_with_the_real_exit_code() -> None:
    # `sys.exit` closes the interpreter's files (the answer pipe) before the process exits,
    # and the asyncio watcher reaps on its own: a child killed once its pipe ended, or
    # polled while being killed, was reported "killed by signal 9" or "exit code 255".
    batch = [evaluation(name, location="exiting") for name in ["exits_zero", "exits_three"] * 8]
    async with served([EXITING]) as evaluators:
        results = await evaluators.evaluate_all(batch)

    errors = [r.error for r in results]
    assert errors == [
        f"the evaluation process exited (exit code {code}) to answer" for code in [0, 3] * 8
    ], errors


def test_the_output_bound_cuts_long_lines_and_counts_what_it_drops() -> None:
    seen: list[str] = []
    bound = process.OutputBound(seen.append, limit=30, line_limit=8)

    bound.feed(b"one\ntw")
    bound.feed(b"o\n" + b"z" * 20 + b"\nlast line here\n")
    bound.flush()

    assert seen[:3] == ["one", "two", "zzzzzzzz"]
    assert seen[-1].endswith("more bytes of output cut")
    assert sum(len(line) + 1 for line in seen[:-1]) <= 30


PARENT = """
import json, sys, anyio
from vigil.evaluation import process

async def main():
    spec = json.dumps({"location": json.loads(sys.argv[1]), "base_dir": sys.argv[2]})
    proc = process.EvaluationProcess(spec, {"PYTHONPATH": sys.argv[2]}, sys.argv[2])
    async with anyio.create_task_group() as tg:
        tg.start_soon(proc.start, 600.0)
        while proc.pid is None:
            await anyio.sleep(0.01)
        print(proc.pid, flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


def test_a_child_hung_on_import_dies_with_its_killed_parent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, HANGING.model_dump_json(), str(REPO)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.is_running()
        parent.kill()
        parent.wait(timeout=30)
        gone, _ = psutil.wait_procs([child], timeout=30)
        assert gone == [child]
    finally:
        parent.kill()
        parent.wait(timeout=30)
        if parent.stdout is not None:
            parent.stdout.close()
