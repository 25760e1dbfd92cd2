"""Run workers on a `vigil celery worker` are forked from its pool process's warm template:
a run's worker is the template's child (no fresh interpreter), a cancel still ends the run
CANCELED (the template ignores the signals a Celery worker's process group gets), and a
pool process that dies takes its template and run worker down."""

from __future__ import annotations

import os
import signal
from typing import Any

import psutil
import pytest

from tests.acceptance import harness
from tests.celery.workers import Worker, Workers
from tests.waiting import eventually

pytestmark = pytest.mark.postgres
DEADLINE = 90.0


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def until_gone(*pids: int) -> None:
    async def all_gone() -> bool:
        return all(gone(pid) for pid in pids)

    await eventually(all_gone, DEADLINE, interval=0.1)


def started_sleepy(instance: harness.Instance) -> tuple[str, psutil.Process]:
    run_id = harness.run_id_of(instance.ok("run", "launch", "sleepy"))
    run: dict[str, Any] = instance.wait_until(run_id, lambda r: r["status"] == "STARTED", DEADLINE)
    return run_id, psutil.Process(int(run["worker"].rpartition(":")[2]))


def pool_processes(worker: Worker) -> list[int]:
    return [child.pid for child in psutil.Process(worker.pid).children()]


async def test_a_runs_worker_is_forked_by_its_pool_processs_template_and_cancels(
    pg_instance: harness.Instance, workers: Workers
) -> None:
    worker = await workers.start("--concurrency", "1")
    run_id, run_worker = started_sleepy(pg_instance)

    template = run_worker.parent()
    assert template is not None
    assert template.cmdline()[-3:] == ["worker", "template", "--tethered"]
    assert run_worker.cmdline() == template.cmdline()  # forked, never exec'ed anew
    assert template.ppid() in pool_processes(worker)
    # A signal to the Celery worker's process group does not end the template under its run.
    template.send_signal(signal.SIGTERM)
    template.send_signal(signal.SIGINT)

    pg_instance.ok("run", "cancel", run_id)

    run = pg_instance.wait_until(run_id, lambda r: r["status"] == "CANCELED", DEADLINE)
    assert run["status"] == "CANCELED"
    assert "worker received SIGTERM" in pg_instance.ok("run", "events", run_id)
    await until_gone(run_worker.pid)
    assert not gone(template.pid)  # it ignored both signals, and stays for the next run


async def test_a_dead_pool_process_takes_its_template_and_run_worker_down(
    pg_instance: harness.Instance, workers: Workers
) -> None:
    await workers.start("--concurrency", "1")
    _, run_worker = started_sleepy(pg_instance)
    template = run_worker.parent()
    assert template is not None

    os.kill(template.ppid(), signal.SIGKILL)  # the pool process

    await until_gone(template.pid, run_worker.pid)
    # Celery replaces the pool process, which starts a template of its own.
    after = pg_instance.vigil("run", "launch", "hello", "--wait", "--timeout", str(DEADLINE))
    assert after.returncode == 0, after.stdout + after.stderr
