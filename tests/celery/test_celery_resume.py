"""A run whose worker process dies on a Celery worker is resumed through Celery: the
task's end tells the daemon's monitor the worker is dead, and a new task resumes the run."""

from __future__ import annotations

import os
import signal
from typing import Any

from tests.acceptance import harness
from tests.celery.workers import Workers
from tests.daemon.process import Daemons, wait_for_rows

DEADLINE = 90.0


def worker_pid(run: dict[str, Any]) -> int:
    return int(run["worker"].rpartition(":")[2])


async def test_a_run_whose_worker_died_is_resumed_by_a_new_celery_task(
    sqlite_celery_instance: harness.Instance, daemons: Daemons, workers: Workers
) -> None:
    instance = sqlite_celery_instance
    path = instance.home / "vigil.yaml"
    path.write_text(path.read_text() + "run_monitoring:\n  poll_interval: 0.5\n")
    daemons.start()
    await wait_for_rows(instance, {"monitor": "healthy"})
    await workers.start("--concurrency", "2")
    run_id = harness.run_id_of(instance.ok("run", "launch", "sleepy"))
    first = instance.wait_until(run_id, lambda r: r["status"] == "STARTED", DEADLINE)

    os.kill(worker_pid(first), signal.SIGKILL)

    resumed = instance.wait_until(
        run_id, lambda r: r["worker"] is not None and worker_pid(r) != worker_pid(first), DEADLINE
    )
    assert resumed["status"] == "STARTED"
    assert resumed["launcher_info"]["task_id"].endswith(":resume")
    assert "resumed" in instance.ok("run", "events", run_id)
    instance.ok("run", "cancel", run_id)
    ended = instance.wait_until(run_id, lambda r: r["status"] == "CANCELED", DEADLINE)
    assert ended["status"] == "CANCELED"
