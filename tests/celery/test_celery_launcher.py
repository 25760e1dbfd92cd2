"""Runs on real `vigil celery worker` processes, through a real redis-server, on a real
PostgreSQL store: each run is a run worker process of its own on the Celery worker's
machine; it succeeds, fails, is canceled, goes to the queue its tag names."""

from __future__ import annotations

import socket
from typing import Any

import psutil
import pytest

from tests.acceptance import harness
from tests.celery.workers import Worker, Workers
from tests.waiting import eventually

pytestmark = pytest.mark.postgres
RUN_DEADLINE = 90.0


def started(run: dict[str, Any]) -> bool:
    return bool(run["status"] == "STARTED")


def ended(run: dict[str, Any]) -> bool:
    return run["status"] in ("SUCCESS", "FAILURE", "CANCELED")


async def logged(worker: Worker, text: str) -> None:
    """Until the worker logs `text` (a task ends a moment after its run worker ended the run)."""

    async def found() -> bool:
        return text in worker.log()

    await eventually(found, RUN_DEADLINE, interval=0.1)


def events(instance: harness.Instance, run_id: str) -> str:
    return instance.ok("run", "events", run_id)


async def test_a_run_succeeds_on_a_celery_worker_that_records_host_and_pid(
    pg_instance: harness.Instance, workers: Workers
) -> None:
    worker = await workers.start("--concurrency", "2")
    first = harness.run_id_of(pg_instance.ok("run", "launch", "hello"))
    second = harness.run_id_of(pg_instance.ok("run", "launch", "hello"))

    runs = [pg_instance.wait_until(r, ended, RUN_DEADLINE) for r in (first, second)]

    assert [run["status"] for run in runs] == ["SUCCESS", "SUCCESS"]
    hosts_pids = [run["worker"].rpartition(":") for run in runs]
    assert {host for host, _, _ in hosts_pids} == {socket.gethostname()}
    pids = {int(pid) for _, _, pid in hosts_pids}
    assert len(pids) == 2
    assert worker.pid not in pids
    for run in runs:
        info = run["launcher_info"]
        assert (info["launcher"], info["queue"]) == ("celery", "vigil")
        assert info["task_id"].startswith(run["run_id"])
        await logged(worker, f"Task vigil.run[{info['task_id']}] succeeded")


async def test_a_run_that_fails_on_a_celery_worker_ends_failure(
    pg_instance: harness.Instance, workers: Workers
) -> None:
    await workers.start()
    done = pg_instance.vigil("run", "launch", "broken", "--wait", "--timeout", str(RUN_DEADLINE))

    assert done.returncode == 1, done.stdout + done.stderr
    run = pg_instance.show(harness.run_id_of(done.stdout))
    assert run["status"] == "FAILURE"
    assert run["worker"] is not None


async def test_a_canceled_run_ends_canceled_and_its_worker_process_is_gone(
    pg_instance: harness.Instance, workers: Workers
) -> None:
    worker = await workers.start("--concurrency", "1")
    run_id = harness.run_id_of(pg_instance.ok("run", "launch", "sleepy"))
    run = pg_instance.wait_until(run_id, started, RUN_DEADLINE)
    pid = int(run["worker"].rpartition(":")[2])
    assert psutil.Process(pid).ppid() != worker.pid  # the pool process's child, not the main

    pg_instance.ok("run", "cancel", run_id)

    run = pg_instance.wait_until(run_id, ended, RUN_DEADLINE)
    assert run["status"] == "CANCELED"
    assert "worker received SIGTERM" in events(pg_instance, run_id)

    async def gone() -> bool:
        return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    await eventually(gone, RUN_DEADLINE)
    # The Celery worker lives on and takes the next run.
    after = pg_instance.vigil("run", "launch", "hello", "--wait", "--timeout", str(RUN_DEADLINE))
    assert after.returncode == 0, after.stdout + after.stderr


async def test_a_runs_queue_tag_chooses_the_workers_that_take_it(
    pg_instance: harness.Instance, workers: Workers
) -> None:
    gpu = await workers.start("--queues", "gpu")
    plain = await workers.start()

    tagged = pg_instance.vigil(
        "run", "launch", "hello", "--tag", "vigil/celery_queue=gpu", "--wait", "--timeout", "90"
    )
    untagged = pg_instance.vigil("run", "launch", "hello", "--wait", "--timeout", "90")

    assert tagged.returncode == untagged.returncode == 0, tagged.stderr + untagged.stderr
    tagged_id, untagged_id = harness.run_id_of(tagged.stdout), harness.run_id_of(untagged.stdout)
    assert pg_instance.show(tagged_id)["launcher_info"]["queue"] == "gpu"
    assert tagged_id in gpu.log()
    assert tagged_id not in plain.log()
    assert untagged_id in plain.log()
    assert untagged_id not in gpu.log()
