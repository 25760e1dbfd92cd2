"""Outputs and compute logs on shared storage, across Celery workers: a run fails on one
worker, whose machine then goes away; its re-execution from failure runs on another worker
and reads its parent's output through the storage URL, and `vigil run logs` reads a run's
logs there once the worker that wrote them is gone. Real redis-server, real `vigil celery
worker` processes, real PostgreSQL; steps run on the Celery executor, so every step process
reads and writes through fsspec (the URL chains its simplecache over its local filesystem)."""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any

import pytest

from tests import redis_server
from tests.acceptance import harness
from tests.celery.conftest import celery_instance
from tests.celery.workers import Worker, Workers
from tests.waiting import eventually

pytestmark = pytest.mark.postgres
RUN_DEADLINE = 90.0
EXECUTOR = "executor:\n  type: celery\n"


@pytest.fixture
def pg_instance(
    tmp_path: pathlib.Path, redis: redis_server.Server, postgres_database: object
) -> harness.Instance:
    """Runs and steps on Celery; storage_dir and logs_dir at URLs under tmp_path/shared."""
    shared = tmp_path / "shared"
    settings = (
        EXECUTOR
        + f"storage_dir: simplecache::file://{shared}/storage\n"
        + f"logs_dir: simplecache::file://{shared}/logs\n"
        + harness.store_yaml(postgres_database)
    )
    return celery_instance(tmp_path, redis.url, settings)


def events(instance: harness.Instance, run_id: str) -> list[dict[str, Any]]:
    out = instance.ok("run", "events", run_id, "--json")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def launch_and_wait(instance: harness.Instance, *args: str) -> tuple[str, int]:
    done = instance.vigil(*args, "--wait", "--timeout", str(RUN_DEADLINE))
    return harness.run_id_of(done.stdout), done.returncode


async def ran_on(worker: Worker, run_id: str) -> None:
    """Until the worker logs the end of the run's task."""

    async def logged() -> bool:
        return f"Task vigil.run[{run_id}" in worker.log()

    await eventually(logged, RUN_DEADLINE, interval=0.1)


async def test_a_reexecution_on_another_worker_reads_its_parents_output_from_storage(
    pg_instance: harness.Instance, workers: Workers, tmp_path: pathlib.Path
) -> None:
    instance, shared = pg_instance, tmp_path / "shared"
    first = await workers.start("--concurrency", "2", name="first@test")
    root, code = launch_and_wait(instance, "run", "launch", "broken")

    assert code == 1
    assert instance.show(root)["status"] == "FAILURE"
    await ran_on(first, root)
    assert (shared / "storage" / root / "fetch_rates").is_file()
    assert not (instance.home / "storage").exists()  # nothing went to the default place
    chatty, code = launch_and_wait(instance, "run", "launch", "chatty")
    assert code == 0
    await ran_on(first, chatty)
    first.stop()  # its machine is gone, and its local copies of the logs with it:
    shutil.rmtree(instance.home / "logs", ignore_errors=True)

    second = await workers.start("--concurrency", "2", name="second@test")
    child, code = launch_and_wait(instance, "run", "reexecute", root)

    assert code == 1
    run = instance.show(child)
    assert (run["status"], run["parent_run_id"]) == ("FAILURE", root)
    assert run["launcher_info"]["launcher"] == "celery"
    await ran_on(second, child)
    found = events(instance, child)
    assert [e["step"] for e in found if e["type"] == "STEP_START"] == ["convert"]
    # convert names the currencies it read: fetch_rates's output from the first run.
    failure = next(e for e in found if e["type"] == "STEP_FAILURE")
    assert "(known: EUR, USD)" in failure["message"]
    logs = instance.ok("run", "logs", chatty)  # read from the URL
    assert "[talk stdout] written to stdout" in logs
    assert "[talk stderr] written to stderr" in logs
