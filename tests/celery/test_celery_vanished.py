"""A Celery worker machine that vanishes mid-run: its whole process group (the Celery
worker, its pool process, the run worker and its step process) SIGKILLed at once, so no
task ends and no ping is answered. The run worker's heartbeat in the store falls silent,
the daemon's monitor judges it dead and resumes the run by a new task, which another
Celery worker takes; the step that had succeeded is not run again."""

from __future__ import annotations

import os
import pathlib
import signal

import pytest

from tests import redis_server
from tests.acceptance import harness
from tests.celery import step_jobs
from tests.celery.conftest import QUEUED, celery_instance
from tests.celery.workers import Workers
from tests.daemon import process
from tests.daemon.process import Daemons, wait_for_rows
from tests.waiting import eventually

DEADLINE = 120.0
# A beat a second, dead after 10 silent: a loaded machine never misses ten in a row.
BEATS = (
    "run_monitoring:\n  poll_interval: 0.5\n"
    "  worker_heartbeat_interval: 1\n  worker_heartbeat_misses: 10\n"
)


@pytest.fixture
def sqlite_celery_instance(tmp_path: pathlib.Path, redis: redis_server.Server) -> harness.Instance:
    """One machine's SQLite instance running the step_jobs on Celery, a daemon's queue
    launching them, and its monitor judging heartbeats quickly."""
    workspace = f"workspace:\n  - name: steps\n    file: {step_jobs.__file__}\n"
    instance = celery_instance(tmp_path, redis.url, BEATS, QUEUED, workspace)
    process.configure(instance, "    []\n")
    return instance


async def test_a_run_whose_celery_worker_vanished_resumes_elsewhere_without_rerunning_steps(
    sqlite_celery_instance: harness.Instance, daemons: Daemons, workers: Workers
) -> None:
    instance = sqlite_celery_instance
    daemons.start()
    await wait_for_rows(instance, {"monitor": "healthy", "queue": "healthy"})
    doomed = await workers.start("--concurrency", "1", name="doomed@test")
    run_id = harness.run_id_of(instance.ok("run", "launch", "resumable"))

    async def stalled() -> bool:
        return step_jobs.executions(run_id, "stall", instance.cwd) == 1

    await eventually(stalled, DEADLINE, interval=0.1)
    first = instance.show(run_id)
    assert f"vigil.run[{run_id}:" in doomed.log()
    rescuer = await workers.start("--concurrency", "1", name="rescuer@test")

    os.killpg(doomed.pid, signal.SIGKILL)  # the machine is gone: nothing ends its task
    doomed.process.wait()
    doomed.stopped = True

    run = instance.wait_until(run_id, lambda r: r["status"] == "SUCCESS", DEADLINE)
    assert run["worker"] != first["worker"]
    assert run["launcher_info"]["task_id"].endswith(":resume")
    assert f"vigil.run[{run['launcher_info']['task_id']}]" in rescuer.log()
    assert step_jobs.executions(run_id, "counted", instance.cwd) == 1  # not run again
    assert step_jobs.executions(run_id, "stall", instance.cwd) == 2
    notes = instance.ok("run", "events", run_id)
    assert "no heartbeat for" in notes
    assert "resuming (attempt 1 of 1)" in notes
