"""Worker heartbeats end to end: a real daemon, real workers (subprocess launcher), real
signals. A worker stopped with SIGSTOP keeps its pid alive, so the launcher sees it running;
only its silence in the store tells it is dead. Short heartbeat settings, not sleeps: every
wait is a condition with a generous deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

from tests.acceptance.harness import Instance, run_id_of
from tests.daemon.process import Daemons
from tests.daemon.test_daemon_instigators import opened
from tests.daemon.test_daemon_monitor import (
    events_of,
    monitoring,
    start_daemon,
    wait_gone,
    worker_pid,
)
from tests.waiting import eventually
from vigil import runs

INTERVAL = 0.5
MISSES = 6  # silent for 3 s: dead
BEATS = {
    "poll_interval": 0.2,
    "worker_heartbeat_interval": INTERVAL,
    "worker_heartbeat_misses": MISSES,
}


async def test_a_stopped_worker_is_judged_dead_by_its_silence_killed_and_resumed(
    instance: Instance, daemons: Daemons
) -> None:
    monitoring(instance, **BEATS)
    await start_daemon(instance, daemons)
    run_id = run_id_of(instance.ok("run", "launch", "sleepy"))  # launched by the CLI
    first = instance.wait_until(run_id, lambda r: r["status"] == "STARTED" and r["worker"])
    stopped = worker_pid(first)

    os.kill(stopped, signal.SIGSTOP)
    try:
        resumed = instance.wait_until(
            run_id, lambda r: r["worker"] is not None and worker_pid(r) != stopped, deadline=120
        )
        wait_gone(instance, run_id, stopped)  # killed by the monitor, its steps with it
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGKILL)

    assert resumed["status"] == "STARTED"
    notes = [e["message"] for e in events_of(instance, run_id) if e["type"] == "ENGINE"]
    [verdict] = [m for m in notes if "no heartbeat for" in m]
    assert f"(pid {stopped}): hung, stopped or cut off from the store, so it is killed" in verdict
    assert verdict.endswith("resuming (attempt 1 of 1)")
    instance.ok("run", "cancel", run_id)
    instance.wait_until(run_id, lambda r: r["status"] == "CANCELED", deadline=120)
    wait_gone(instance, run_id, worker_pid(resumed))


async def test_a_worker_beating_through_a_long_step_is_never_judged_dead(
    instance: Instance, daemons: Daemons
) -> None:
    monitoring(instance, **BEATS)
    await start_daemon(instance, daemons)
    run_id = run_id_of(instance.ok("run", "launch", "sleepy"))
    first = instance.wait_until(run_id, lambda r: r["status"] == "STARTED" and r["worker"])
    timeout = INTERVAL * MISSES

    async with opened(instance) as store:

        async def beaten_for_three_timeouts() -> bool:
            run = await store.get_run(run_id)
            assert run.status is runs.RunStatus.STARTED, run  # never judged dead meanwhile
            assert run.start_time is not None
            beat = run.worker_heartbeat or run.start_time
            return beat - run.start_time >= 3 * timeout

        await eventually(beaten_for_three_timeouts, deadline=120, interval=0.2)
        run = await store.get_run(run_id)

    assert (run.resume_attempt, run.worker_pid) == (0, worker_pid(first))
    notes = [e["message"] for e in events_of(instance, run_id) if e["type"] == "ENGINE"]
    assert not [m for m in notes if "worker died" in m]
    instance.ok("run", "cancel", run_id)
    instance.wait_until(run_id, lambda r: r["status"] == "CANCELED", deadline=120)
    wait_gone(instance, run_id, worker_pid(first))


SLOW_IMPORT = """\
import pathlib
import sys
import time

from vigil import Definitions, job, step

if "worker" in sys.argv:  # in run workers only, not in the CLI that launches
    time.sleep(float((pathlib.Path(__file__).parent / "import_seconds").read_text()))


@step
def quick() -> int:
    return 1


defs = Definitions(jobs=[job("slow_import", [quick])])
"""


def ended(run: dict[str, object]) -> bool:
    return run["status"] in {status.value for status in runs.TERMINAL_STATUSES}


def slow_location(instance: Instance, seconds: float, load_timeout: float = 120) -> None:
    """Add a code location whose import takes `seconds` in a run worker."""
    directory = instance.home / "slow"
    directory.mkdir()
    (directory / "slow_jobs.py").write_text(SLOW_IMPORT)
    (directory / "import_seconds").write_text(str(seconds))
    path = instance.home / "vigil.yaml"
    config = path.read_text().replace(
        "workspace:\n", f"workspace:\n  - name: slow\n    file: {directory / 'slow_jobs.py'}\n", 1
    )
    scheduling = "scheduling:\n  enabled: false\n"
    assert scheduling in config
    path.write_text(config.replace(scheduling, scheduling + f"  load_timeout: {load_timeout}\n"))


async def slow_run(
    instance: Instance, daemons: Daemons, seconds: float, load_timeout: float = 120
) -> tuple[dict[str, Any], list[str]]:
    """A run of the slow location under a daemon judging heartbeats; the ended run and
    its ENGINE notes."""
    monitoring(instance, **BEATS)
    await start_daemon(instance, daemons)
    slow_location(instance, seconds, load_timeout)
    run_id = run_id_of(instance.ok("run", "launch", "slow_import"))
    run = instance.wait_until(run_id, ended, 120)
    notes = [e["message"] for e in events_of(instance, run_id) if e["type"] == "ENGINE"]
    return run, notes


async def test_a_worker_beats_while_its_code_location_imports_for_longer_than_the_timeout(
    sqlite_instance: Instance, daemons: Daemons
) -> None:
    run, notes = await slow_run(sqlite_instance, daemons, seconds=3 * INTERVAL * MISSES)

    assert run["status"] == "SUCCESS", notes
    assert not [m for m in notes if "no heartbeat for" in m or "resum" in m]


async def test_a_code_location_that_hangs_on_import_fails_the_run_at_the_load_timeout(
    sqlite_instance: Instance, daemons: Daemons
) -> None:
    instance = sqlite_instance
    run, notes = await slow_run(instance, daemons, seconds=600, load_timeout=2)

    assert run["status"] == "FAILURE"
    run_id = run["run_id"]
    assert not [m for m in notes if "no heartbeat for" in m or "resum" in m]
    [failure] = [e for e in events_of(instance, run_id) if e["type"] == "RUN_FAILURE"]
    assert failure["message"].startswith(
        "code location 'slow' did not load within 2 s (scheduling.load_timeout)"
    )
    wait_gone(instance, run_id, worker_pid(run))  # the hung import died with its process
