"""A run's worker and its step processes are named after the run (Linux `comm`), so `ps`
tells runs apart."""

from __future__ import annotations

import pathlib

import psutil

from tests.acceptance.harness import Instance, run_id_of
from tests.waiting import eventually


def comm(pid: int) -> str:
    return pathlib.Path(f"/proc/{pid}/comm").read_text().strip()


async def test_worker_and_step_processes_carry_the_run_id_and_their_job_or_step(
    sqlite_instance: Instance,
) -> None:
    instance = sqlite_instance
    run_id = run_id_of(instance.ok("run", "launch", "sleepy"))
    try:
        run = instance.wait_until(run_id, lambda r: r["worker"] is not None)
        worker = psutil.Process(int(run["worker"].rsplit(":", 1)[1]))
        step = f"s:{run_id[:8]}:wait"  # wait_forever, cut at the kernel's 15 bytes

        async def step_named() -> bool:
            return step in [comm(child.pid) for child in worker.children()]

        await eventually(step_named)
        assert comm(worker.pid) == f"w:{run_id[:8]}:slee"  # sleepy, cut likewise
    finally:
        instance.ok("run", "cancel", run_id)
