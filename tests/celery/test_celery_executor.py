"""The celery executor on real `vigil celery worker` processes, a real redis-server and a
real PostgreSQL store: each step attempt is a Celery task whose step process runs on a
Celery worker, reading its inputs from and writing its output to a shared storage path;
a step that raises fails the run, a step process killed mid-step is retried, a canceled
run's step process is stopped, a step's tag picks its queue."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
from typing import Any

import psutil
import pytest

from tests import redis_server
from tests.acceptance import harness
from tests.celery import step_jobs
from tests.celery.conftest import celery_yaml
from tests.celery.workers import Worker, Workers
from tests.waiting import eventually

pytestmark = pytest.mark.postgres

RUN_DEADLINE = 90.0
STEP_JOBS = pathlib.Path(step_jobs.__file__)
EXECUTOR = "executor:\n  type: celery\n  options:\n    terminate_grace: 2\n"
# Steps on their own queue; a started step's worker pinged every second, lost after two.
WATCHFUL = EXECUTOR + "    queue: steps\n    check_interval: 1\n    lost_after: 2\n"


@pytest.fixture
def pg_instance(
    request: pytest.FixtureRequest,
    tmp_path: pathlib.Path,
    redis: redis_server.Server,
    postgres_database: object,
) -> harness.Instance:
    """An instance on PostgreSQL whose runs and steps go to Celery through `redis`, with
    outputs and logs on a shared path (what a shared mount is to each machine); the
    executor section is EXECUTOR unless the test names another (indirect parameter)."""
    home, cwd, shared = tmp_path / "home", tmp_path / "cwd", tmp_path / "shared"
    for directory in (home, cwd, shared):
        directory.mkdir()
    instance = harness.Instance(home=home, cwd=cwd, env=harness.base_env(home))
    instance.write_config(
        f"workspace:\n  - name: steps\n    file: {STEP_JOBS}\n"
        + celery_yaml(redis.url)
        + getattr(request, "param", EXECUTOR)
        + f"storage_dir: {shared / 'storage'}\nlogs_dir: {shared / 'logs'}\n"
        + harness.store_yaml(postgres_database)
    )
    instance.ok("instance", "migrate")
    return instance


def ended(run: dict[str, Any]) -> bool:
    return run["status"] in ("SUCCESS", "FAILURE", "CANCELED")


def launch(instance: harness.Instance, job_name: str, *args: str) -> str:
    return harness.run_id_of(instance.ok("run", "launch", job_name, *args))


def records(instance: harness.Instance, run_id: str) -> dict[tuple[str, int], dict[str, Any]]:
    """What each step attempt of the run recorded, by (step, attempt)."""
    found = {}
    for path in (instance.cwd / step_jobs.RECORDS).glob(f"{run_id}-*.json"):
        data = json.loads(path.read_text())
        found[(data["step"], data["attempt"])] = data
    return found


async def recorded(instance: harness.Instance, run_id: str, step: str) -> dict[str, Any]:
    """The record of the step's first attempt, once it is written."""

    async def written() -> bool:
        return (step, 1) in records(instance, run_id)

    await eventually(written, RUN_DEADLINE, interval=0.1)
    return records(instance, run_id)[(step, 1)]


def events(instance: harness.Instance, run_id: str) -> list[dict[str, Any]]:
    out = instance.ok("run", "events", run_id, "--json")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def kinds(found: list[dict[str, Any]], step: str) -> list[str]:
    return [e["type"] for e in found if e.get("step") == step]


async def gone(pid: int) -> None:
    async def exited() -> bool:
        if not psutil.pid_exists(pid):
            return True
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    await eventually(exited, RUN_DEADLINE, interval=0.1)


def run_worker_pid(run: dict[str, Any]) -> int:
    return int(run["worker"].rpartition(":")[2])


async def test_each_step_runs_once_in_a_step_process_of_a_celery_worker(
    pg_instance: harness.Instance, workers: Workers
) -> None:
    worker = await workers.start("--concurrency", "3")
    run_id = launch(pg_instance, "diamond")

    run = pg_instance.wait_until(run_id, ended, RUN_DEADLINE)

    assert run["status"] == "SUCCESS", events(pg_instance, run_id)
    found = records(pg_instance, run_id)
    assert sorted(found) == [("join", 1), ("left", 1), ("right", 1), ("source", 1)]
    for data in found.values():
        assert data["host"] == socket.gethostname()
        assert data["grandparent"] == worker.pid  # step process <- pool process <- worker
        assert data["pid"] != run_worker_pid(run)
    assert len({data["pid"] for data in found.values()}) == 4
    assert found[("join", 1)]["received"] == [21, 40]
    log = events(pg_instance, run_id)
    for step in ("source", "left", "right", "join"):
        assert kinds(log, step).count("STEP_START") == 1
        assert kinds(log, step).count("STEP_SUCCESS") == 1
    ran = [e for e in log if e["type"] == "ENGINE" and e.get("step") == "source"]
    assert ran[0]["data"]["pid"] == found[("source", 1)]["pid"]
    source = kinds(log, "source")
    assert source.index("STEP_START") < source.index("LOG") < source.index("STEP_OUTPUT")


async def test_a_step_that_raises_fails_the_run_with_its_error(
    pg_instance: harness.Instance, workers: Workers
) -> None:
    await workers.start("--concurrency", "2")
    run_id = launch(pg_instance, "raising")

    run = pg_instance.wait_until(run_id, ended, RUN_DEADLINE)

    assert run["status"] == "FAILURE"
    failure = [e for e in events(pg_instance, run_id) if e["type"] == "STEP_FAILURE"]
    assert len(failure) == 1
    assert failure[0]["message"] == "ValueError: bad input on purpose"
    assert "raise ValueError" in failure[0]["data"]["traceback"]


async def test_a_step_process_killed_mid_step_is_retried_and_the_run_succeeds(
    pg_instance: harness.Instance, workers: Workers
) -> None:
    worker = await workers.start("--concurrency", "2")
    run_id = launch(pg_instance, "killable")
    first = await recorded(pg_instance, run_id, "patient")
    assert first["grandparent"] == worker.pid

    os.kill(first["pid"], signal.SIGKILL)

    run = pg_instance.wait_until(run_id, ended, RUN_DEADLINE)
    assert run["status"] == "SUCCESS", events(pg_instance, run_id)
    second = records(pg_instance, run_id)[("patient", 2)]
    assert second["pid"] != first["pid"]
    assert second["received"] == 20
    log = events(pg_instance, run_id)
    retry = [e for e in log if e["type"] == "STEP_RETRY"]
    assert len(retry) == 1
    assert retry[0]["data"]["error_type"] == "StepProcessCrashed"
    assert "SIGKILL" in retry[0]["data"]["message"]
    assert kinds(log, "source").count("STEP_START") == 1


async def test_canceling_a_run_revokes_its_step_and_the_step_process_is_gone(
    pg_instance: harness.Instance, workers: Workers
) -> None:
    await workers.start("--concurrency", "2")
    run_id = launch(pg_instance, "lingering")
    step = await recorded(pg_instance, run_id, "linger")

    pg_instance.ok("run", "cancel", run_id)

    run = pg_instance.wait_until(run_id, ended, RUN_DEADLINE)
    assert run["status"] == "CANCELED"
    await gone(step["pid"])
    # The Celery worker takes the next run and its steps.
    after = launch(pg_instance, "diamond")
    assert pg_instance.wait_until(after, ended, RUN_DEADLINE)["status"] == "SUCCESS"


async def test_a_steps_queue_tag_sends_its_task_to_the_workers_of_that_queue(
    pg_instance: harness.Instance, workers: Workers
) -> None:
    plain: Worker = await workers.start("--concurrency", "2")
    gpu: Worker = await workers.start("--queues", "gpu", "--concurrency", "1")
    run_id = launch(pg_instance, "routed")

    run = pg_instance.wait_until(run_id, ended, RUN_DEADLINE)

    assert run["status"] == "SUCCESS", events(pg_instance, run_id)
    found = records(pg_instance, run_id)
    assert found[("plain", 1)]["grandparent"] == plain.pid
    assert found[("gpu", 1)]["grandparent"] == gpu.pid
    assert found[("gpu", 1)]["received"] == "plain"


async def test_a_step_whose_pool_process_dies_is_retried_and_the_run_succeeds(
    pg_instance: harness.Instance, workers: Workers
) -> None:
    await workers.start("--concurrency", "2")
    run_id = launch(pg_instance, "killable")
    first = await recorded(pg_instance, run_id, "patient")

    os.kill(first["parent"], signal.SIGKILL)  # the pool process running the step task

    run = pg_instance.wait_until(run_id, ended, RUN_DEADLINE)
    assert run["status"] == "SUCCESS", events(pg_instance, run_id)
    await gone(first["pid"])  # the step process died with its pool process
    assert records(pg_instance, run_id)[("patient", 2)]["parent"] != first["parent"]
    retry = [e for e in events(pg_instance, run_id) if e["type"] == "STEP_RETRY"]
    assert len(retry) == 1
    assert retry[0]["data"]["error_type"] == "StepTaskLost"


@pytest.mark.parametrize("pg_instance", [WATCHFUL], indirect=True)
async def test_a_step_whose_celery_worker_vanished_is_retried_on_another_worker(
    pg_instance: harness.Instance, workers: Workers
) -> None:
    await workers.start("--concurrency", "1")  # the run task's queue only
    doomed = await workers.start("--queues", "steps", "--concurrency", "1")
    run_id = launch(pg_instance, "killable")
    first = await recorded(pg_instance, run_id, "patient")
    assert first["grandparent"] == doomed.pid

    os.killpg(doomed.pid, signal.SIGKILL)  # the whole machine, as far as Celery can tell
    doomed.process.wait()
    doomed.stopped = True
    rescuer = await workers.start("--queues", "steps", "--concurrency", "1")

    run = pg_instance.wait_until(run_id, ended, RUN_DEADLINE)
    assert run["status"] == "SUCCESS", events(pg_instance, run_id)
    assert records(pg_instance, run_id)[("patient", 2)]["grandparent"] == rescuer.pid
    retry = [e for e in events(pg_instance, run_id) if e["type"] == "STEP_RETRY"]
    assert len(retry) == 1
    assert retry[0]["data"]["error_type"] == "StepTaskLost"
    assert "stopped answering" in retry[0]["data"]["message"]
