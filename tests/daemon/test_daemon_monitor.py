"""The run monitor end to end: real daemons, real workers, real signals.

Waits are conditions with deadlines. Where a test says the daemon's poll is 60 s, the run
is handled well within the deadline only because the launcher told of the worker's exit.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
from typing import Any

import psutil

from tests.acceptance.harness import IMMEDIATE, Instance, run_id_of
from tests.daemon.process import TICKER, Daemons, configure, wait_for_rows
from tests.daemon.test_daemon_queue import QUEUED

STUCK = "run_launcher:\n  type: tests.plugins.stuck_launcher:StuckLauncher\n"
PATIENT_STEPS = "executor:\n  type: multiprocess\n  options: {terminate_grace: 600}\n"


def add_config(instance: Instance, text: str) -> None:
    path = instance.home / "vigil.yaml"
    path.write_text(path.read_text() + text)


def monitoring(instance: Instance, **values: object) -> None:
    lines = "".join(f"  {key}: {value}\n" for key, value in values.items())
    add_config(instance, "run_monitoring:\n" + lines)


def events_of(instance: Instance, run_id: str) -> list[dict[str, Any]]:
    out = instance.ok("run", "events", run_id, "--json")
    return [json.loads(line) for line in out.splitlines()]


def worker_pid(run: dict[str, Any]) -> int:
    return int(run["worker"].rsplit(":", 1)[1])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def describe(pid: int) -> str:
    """What a process that should be gone is doing (for a failed wait)."""
    try:
        proc = psutil.Process(pid)
        children = [(c.pid, c.status(), c.cmdline()) for c in proc.children(recursive=True)]
        threads = {
            t.name: (t / "wchan").read_text()
            for t in pathlib.Path(f"/proc/{pid}/task").iterdir()
            if (t / "wchan").exists()
        }
        return (
            f"pid {pid} {proc.status()} ppid {proc.ppid()} {proc.cmdline()} "
            f"threads {threads} children {children}"
        )
    except (psutil.Error, OSError) as exc:
        return f"pid {pid}: {exc}"


def wait_gone(instance: Instance, run_id: str, *pids: int) -> None:
    try:
        instance.wait_until(run_id, lambda _: all(gone(pid) for pid in pids))
    except AssertionError:
        raise AssertionError("; ".join(describe(pid) for pid in pids)) from None


async def start_daemon(instance: Instance, daemons: Daemons) -> None:
    configure(instance, TICKER)
    daemons.start()
    await wait_for_rows(instance, {"monitor": "healthy", "retries": "healthy"})


def kill_worker_and_wait_for_a_new_one(instance: Instance, run_id: str) -> dict[str, Any]:
    first = instance.wait_until(run_id, lambda r: r["status"] == "STARTED" and r["worker"])
    os.kill(worker_pid(first), signal.SIGKILL)
    return instance.wait_until(
        run_id, lambda r: r["worker"] is not None and worker_pid(r) != worker_pid(first)
    )


async def test_a_killed_worker_of_the_daemon_is_resumed_at_once_then_failed(
    instance: Instance, daemons: Daemons
) -> None:
    config = (instance.home / "vigil.yaml").read_text()
    instance.write_config(config.replace(IMMEDIATE, QUEUED))
    monitoring(instance, poll_interval=60)
    await start_daemon(instance, daemons)
    run_id = run_id_of(instance.ok("run", "launch", "sleepy"))

    resumed = kill_worker_and_wait_for_a_new_one(instance, run_id)
    assert resumed["status"] == "STARTED"
    notes = [e["message"] for e in events_of(instance, run_id) if e["type"] == "ENGINE"]
    assert any("was killed by signal SIGKILL); resuming (attempt 1 of 1)" in m for m in notes)

    os.kill(worker_pid(resumed), signal.SIGKILL)
    failed = instance.wait_until(run_id, lambda r: r["status"] == "FAILURE")
    assert failed["run_id"] == run_id
    failure = [e for e in events_of(instance, run_id) if e["type"] == "RUN_FAILURE"]
    assert len(failure) == 1
    assert "was killed by signal SIGKILL" in failure[0]["message"]
    assert "no resume attempts left (1 of 1 used)" in failure[0]["message"]
    assert failure[0]["data"]["reason"] == "worker_died"


async def test_a_killed_worker_launched_by_the_cli_is_found_by_the_poll(
    instance: Instance, daemons: Daemons
) -> None:
    monitoring(instance, poll_interval=0.2)
    await start_daemon(instance, daemons)
    run_id = run_id_of(instance.ok("run", "launch", "sleepy"))  # launched by the CLI

    resumed = kill_worker_and_wait_for_a_new_one(instance, run_id)
    notes = [e["message"] for e in events_of(instance, run_id) if e["type"] == "ENGINE"]
    assert any("is gone); resuming (attempt 1 of 1)" in m for m in notes)

    os.kill(worker_pid(resumed), signal.SIGKILL)  # now the daemon's own worker
    failed = instance.wait_until(run_id, lambda r: r["status"] == "FAILURE")
    failure = [e for e in events_of(instance, run_id) if e["type"] == "RUN_FAILURE"]
    assert "killed by signal SIGKILL" in failure[0]["message"]
    assert [(e["resumes"], e["reason"]) for e in failed["lineage"]] == [(1, "worker_died")]
    shown = instance.ok("run", "show", run_id)
    assert "(original, resumed 1x) the worker died (worker pid" in shown


async def test_a_run_stuck_starting_is_failed_and_its_worker_terminated(
    instance: Instance, daemons: Daemons
) -> None:
    add_config(instance, STUCK)
    monitoring(instance, poll_interval=0.2, start_timeout=1)
    await start_daemon(instance, daemons)
    launched = instance.ok("run", "launch", "hello")
    assert launched.split()[1] == "STARTING"  # as launched: its worker never starts it
    run_id = run_id_of(launched)

    failed = instance.wait_until(run_id, lambda r: r["status"] == "FAILURE")
    assert failed["end_time"] is not None
    failure = [e for e in events_of(instance, run_id) if e["type"] == "RUN_FAILURE"]
    assert failure[0]["message"] == "did not start within the start timeout of 1 s"
    assert failure[0]["data"] == {"reason": "start_timeout", "by": "monitor"}
    stray = int(failed["launcher_info"]["pid"])
    wait_gone(instance, run_id, stray)


async def test_max_runtime_ends_a_run(instance: Instance, daemons: Daemons) -> None:
    monitoring(instance, poll_interval=0.2)
    await start_daemon(instance, daemons)
    run_id = run_id_of(instance.ok("run", "launch", "sleepy", "--tag", "vigil/max_runtime=1"))
    # The worker's pid, whatever the status by then: the run may be over before a look.
    started = instance.wait_until(run_id, lambda r: r["worker"] is not None)

    instance.wait_until(run_id, lambda r: r["status"] == "FAILURE")
    failure = [e for e in events_of(instance, run_id) if e["type"] == "RUN_FAILURE"]
    assert failure[0]["message"] == "exceeded max runtime of 1 s"
    assert failure[0]["data"]["reason"] == "max_runtime"
    wait_gone(instance, run_id, worker_pid(started))


async def test_a_cancel_the_worker_ignores_ends_canceled(
    instance: Instance, daemons: Daemons
) -> None:
    add_config(instance, PATIENT_STEPS)
    monitoring(instance, poll_interval=0.2, cancel_timeout=1)
    await start_daemon(instance, daemons)
    run_id = run_id_of(instance.ok("run", "launch", "stubborn"))
    started = instance.wait_until(run_id, lambda r: r["status"] == "STARTED" and r["worker"])
    instance.wait_until(run_id, lambda _: bool(psutil.Process(worker_pid(started)).children()))
    step_pid = psutil.Process(worker_pid(started)).children()[0].pid

    assert instance.ok("run", "cancel", run_id, "--timeout", "0").split()[1] == "CANCELING"
    instance.wait_until(run_id, lambda r: r["status"] == "CANCELED")
    canceled = [e for e in events_of(instance, run_id) if e["type"] == "RUN_CANCELED"]
    assert canceled[0]["message"] == (
        "the worker did not stop within the cancel timeout of 1 s and was killed"
    )
    assert canceled[0]["data"]["reason"] == "cancel_timeout"
    wait_gone(instance, run_id, worker_pid(started), step_pid)
