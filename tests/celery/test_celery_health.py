"""The Celery launcher's health check and kill against a real broker and real workers:
a started task whose worker answers is RUNNING; a worker that vanished, or a broker that is
down, is UNKNOWN (never DEAD on doubt); `kill` takes the run worker down with its pool
process, and the ended task is DEAD."""

from __future__ import annotations

import os
import pathlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import psutil
import pytest

from tests import redis_server
from tests.acceptance import harness
from tests.celery.workers import Workers
from tests.waiting import eventually
from vigil import runs
from vigil.celery import options
from vigil.launchers import base
from vigil.launchers import celery as celery_launcher

pytestmark = pytest.mark.postgres
H = base.WorkerHealth
DEADLINE = 90.0


@pytest.fixture
async def launcher(
    redis: redis_server.Server, tmp_path: pathlib.Path
) -> AsyncIterator[celery_launcher.CeleryLauncher]:
    opts = options.CeleryOptions(broker_url=redis.url, connect_timeout=2)
    context = base.LaunchContext(tmp_path, tmp_path, {}, tmp_path)
    opened = celery_launcher.CeleryLauncher(opts, context)
    try:
        yield opened
    finally:
        await opened.close()


def started_run(instance: harness.Instance) -> tuple[runs.Run, int]:
    """A sleepy run, STARTED on a Celery worker, as the launcher sees it, and its pid."""
    run_id = harness.run_id_of(instance.ok("run", "launch", "sleepy"))
    shown: dict[str, Any] = instance.wait_until(
        run_id, lambda r: r["status"] == "STARTED", DEADLINE
    )
    run = runs.Run(run_id, "sleepy", runs.RunStatus.STARTED, launcher_info=shown["launcher_info"])
    return run, int(shown["worker"].rpartition(":")[2])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_health_follows_the_task_and_kill_takes_the_run_worker_down(
    pg_instance: harness.Instance,
    workers: Workers,
    launcher: celery_launcher.CeleryLauncher,
) -> None:
    await workers.start("--concurrency", "1")
    run, pid = started_run(pg_instance)
    assert (await launcher.check_worker_health(run)).health is H.RUNNING

    assert await launcher.kill(run)

    async def run_worker_gone() -> bool:
        return gone(pid)

    await eventually(run_worker_gone, DEADLINE)

    async def dead() -> bool:
        return (await launcher.check_worker_health(run)).health is H.DEAD

    await eventually(dead, DEADLINE, interval=0.2)


async def test_a_vanished_worker_or_a_broker_down_is_unknown(
    pg_instance: harness.Instance,
    workers: Workers,
    launcher: celery_launcher.CeleryLauncher,
    redis: redis_server.Server,
) -> None:
    worker = await workers.start("--concurrency", "1")
    run, pid = started_run(pg_instance)

    os.killpg(worker.pid, signal.SIGKILL)  # the machine is gone: no warm shutdown

    async def run_worker_gone() -> bool:
        return gone(pid)

    await eventually(run_worker_gone, DEADLINE)
    check = await launcher.check_worker_health(run)
    assert check.health is H.UNKNOWN
    assert "does not answer" in check.detail

    redis_server.stop(redis)
    check = await launcher.check_worker_health(run)
    assert check.health is H.UNKNOWN
    assert await launcher.terminate(run)  # cannot tell: a worker may be alive
