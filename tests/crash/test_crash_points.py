"""A daemon or a worker SIGKILLed at a crash point: every run still ends SUCCESS, once.

Each test queues runs of a job whose steps write a line per execution
(`tests/crash/jobs.py`), starts a real daemon armed with one crash point
(`inject/sitecustomize.py`), and checks that the process died exactly there. A killed
daemon is restarted once its heartbeats are stale (the marker stops a second kill); a
killed worker is left to the monitor. Then every run must end SUCCESS with one RUN_SUCCESS
event, no failure, nothing by the start timeout (600 s: only a relaunch can explain a
success), and each step must have run once. On both stores; waits are conditions with
generous deadlines.

The store verbs are named in one table, just below: rename a verb there.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import signal
from collections.abc import Iterable, Mapping

import anyio
import psutil
import pytest

from tests import pg_server
from tests.acceptance.harness import Instance
from tests.crash import harness
from tests.crash.harness import Killed
from tests.daemon.process import Daemon, Daemons
from tests.waiting import eventually
from vigil import runs

# The store verbs the crash points name (Class.method of vigil.storage.sql).
CLAIM = "SqlStore.claim_queued_runs"
RECORD_LAUNCHES = "SqlStore.record_launches"
START = "SqlStore.start_run"
END = "SqlStore.end_run"  # the worker's end (`SqlStore.transition_run` before commit 203f9b9)

RUNS = 8
KILL_DEADLINE = 60.0
END_DEADLINE = 120.0
TEST_TIMEOUT = 360
OUTAGE_SECONDS = 30.0
S = runs.RunStatus

pytestmark = pytest.mark.crash


@dataclasses.dataclass(frozen=True)
class KillPoint:
    verb: str
    when: str  # before | after
    role: str  # daemon | worker
    short: bool = False  # in the short form of the suite

    @property
    def spec(self) -> str:
        return f"{self.verb}:{self.when}:{self.role}"

    @property
    def name(self) -> str:
        return f"{self.role}-{self.verb.rsplit('.', 1)[-1]}-{self.when}"


POINTS = (
    KillPoint(CLAIM, "after", "daemon", short=True),
    KillPoint(CLAIM, "before", "daemon"),
    KillPoint(RECORD_LAUNCHES, "before", "daemon"),
    KillPoint(RECORD_LAUNCHES, "after", "daemon"),
    KillPoint(START, "before", "worker", short=True),
    KillPoint(START, "after", "worker"),
    KillPoint(END, "before", "worker", short=True),
    KillPoint(END, "after", "worker"),
)


PARAMS = [
    pytest.param(p, id=p.name, marks=() if p.short else pytest.mark.crash_long) for p in POINTS
]


@pytest.mark.timeout(TEST_TIMEOUT)
@pytest.mark.parametrize("point", PARAMS)
async def test_a_process_killed_at_a_crash_point_loses_and_repeats_nothing(
    point: KillPoint, instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    harness.configure(instance)
    run_ids = await harness.submit(instance, "jot", RUNS)
    env = harness.daemon_env(tmp_path, point.spec)
    first = daemons.start(env=env)
    if point.role == "daemon":
        await _check_daemon_killed(instance, first, point, run_ids, tmp_path)
        await harness.wait_until_stale(instance)
        daemon = daemons.start(env=env)
    else:
        await _check_worker_killed(first, point, run_ids, tmp_path)
        daemon = first

    await harness.wait_until_ended(instance, run_ids, END_DEADLINE)
    await harness.wait_until_quiet(instance, run_ids, daemon, tmp_path)
    executions = harness.step_executions(tmp_path)
    problems = await harness.outcome_problems(instance, run_ids, harness.JOT_STEPS, executions)
    assert not problems, "\n".join(problems)
    await _check_stops_cleanly(daemon)


async def _check_daemon_killed(
    instance: Instance,
    daemon: Daemon,
    point: KillPoint,
    run_ids: list[str],
    tmp_path: pathlib.Path,
) -> None:
    """It died by SIGKILL, at the crash point, and the store shows where it stopped."""
    try:
        code = await daemon.exit_code(KILL_DEADLINE)
    except TimeoutError:
        raise AssertionError(f"not killed at {point.spec}: {daemon.log()}") from None
    assert code == -signal.SIGKILL, daemon.log()
    killed = Killed.read(harness.crash_marker(tmp_path))
    assert (killed.pid, killed.role, killed.at) == (daemon.pid, "daemon", point.spec)
    found = await harness.runs_by_id(instance, run_ids)
    problems = _state_at_kill(point, killed, found)
    assert not problems, "\n".join(problems)


def _state_at_kill(point: KillPoint, killed: Killed, found: Mapping[str, runs.Run]) -> list[str]:
    """What the store must show of a daemon killed at `point` (its workers may go on):
    before a claim, nothing claimed; after it, exactly the claimed runs STARTING and not
    launched; before or after recording launches, the runs named none or all recorded."""
    named = [found[run_id] for run_id in killed.run_ids]
    others = [run for run_id, run in found.items() if run_id not in killed.run_ids]
    launched = [run.run_id for run in named if "pid" in run.launcher_info]
    problems = []
    if point.verb == CLAIM and point.when == "before":
        if named or any(run.status is not S.QUEUED for run in others):
            problems.append(f"a claim before the kill: {_statuses(found.values())}")
    elif point.verb == CLAIM:
        if not named or any(run.status is not S.STARTING for run in named) or launched:
            problems.append(f"the claimed runs moved on: {_statuses(named)}, launched {launched}")
        if any(run.status is not S.QUEUED for run in others):
            problems.append(f"more than one claim: {_statuses(others)}")
    elif not named:
        problems.append("the launches recorded concern no run")
    elif len(launched) != (0 if point.when == "before" else len(named)):
        problems.append(f"{len(launched)} of {len(named)} launches recorded {point.when} the kill")
    return problems


def _statuses(found: Iterable[runs.Run]) -> dict[str, str]:
    return {run.run_id[:8]: str(run.status) for run in found}


async def _check_worker_killed(
    daemon: Daemon, point: KillPoint, run_ids: list[str], tmp_path: pathlib.Path
) -> None:
    """A worker (not the daemon) died at the crash point, running one of our runs."""
    killed = await harness.read_marker(harness.crash_marker(tmp_path), KILL_DEADLINE)
    assert (killed.role, killed.at) == ("worker", point.spec)
    assert killed.pid != daemon.pid
    assert len(killed.run_ids) == 1, killed
    assert killed.run_ids[0] in run_ids

    async def dead() -> bool:
        try:
            return psutil.Process(killed.pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    await eventually(dead, KILL_DEADLINE)
    assert daemon.process.poll() is None, daemon.log()


async def _check_stops_cleanly(daemon: Daemon) -> None:
    """The last daemon was never killed (the marker held) and drains on SIGTERM."""
    assert daemon.process.poll() is None, f"the daemon died: {daemon.log()}"
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0, daemon.log()


@pytest.mark.timeout(TEST_TIMEOUT)
@pytest.mark.parametrize(
    "instance",
    ["sqlite", pytest.param("postgres", marks=(pytest.mark.postgres, pytest.mark.crash_long))],
    indirect=True,
)
async def test_a_launch_that_hangs_past_its_timeout_leaves_one_worker(
    instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    hung = tmp_path / "hung"
    queue = "{max_concurrent_runs: 3, poll_interval: 0.2, launch_timeout: 1}"
    harness.configure(instance, queue=queue, launcher=harness.hanging_launcher(hung))
    run_ids = await harness.submit(instance, "slow_jot", 3)
    gate = harness.Gate(tmp_path)  # the first worker's step runs until the hang is over
    daemon = daemons.start(env=harness.daemon_env(tmp_path))

    await harness.wait_for_file(hung.with_name(f"{hung.name}.over"), KILL_DEADLINE)
    gate.open()
    await harness.wait_until_ended(instance, run_ids, END_DEADLINE)
    await harness.wait_until_quiet(instance, run_ids, daemon, tmp_path)
    assert json.loads(hung.read_text())["run_id"] in run_ids  # a launch did hang
    executions = harness.step_executions(tmp_path)
    problems = await harness.outcome_problems(instance, run_ids, harness.SLOW_STEPS, executions)
    assert not problems, "\n".join(problems)
    await _check_stops_cleanly(daemon)


@pytest.mark.crash_long
@pytest.mark.postgres
@pytest.mark.timeout(TEST_TIMEOUT)
async def test_steps_that_finish_while_postgres_is_down_end_their_runs_once(
    outage_server: pg_server.Server,
    outage_instance: Instance,
    daemons: Daemons,
    tmp_path: pathlib.Path,
) -> None:
    instance = outage_instance
    harness.configure(instance)
    run_ids = await harness.submit(instance, "slow_jot", 4)  # 3 at once, then 1
    gate = harness.Gate(tmp_path)
    daemon = daemons.start(env=harness.daemon_env(tmp_path))

    async def three_steps_running() -> bool:
        return len(harness.step_lines(tmp_path)) >= 3

    await eventually(three_steps_running, KILL_DEADLINE)
    await harness.stop_server(outage_server)
    gate.open()  # the three steps end while the store is down
    await anyio.sleep(OUTAGE_SECONDS)  # the outage itself
    await harness.start_server(outage_server)

    await harness.wait_until_ended(instance, run_ids, END_DEADLINE)
    await harness.wait_until_quiet(instance, run_ids, daemon, tmp_path)
    executions = harness.step_executions(tmp_path)
    problems = await harness.outcome_problems(instance, run_ids, harness.SLOW_STEPS, executions)
    assert not problems, "\n".join(problems)
    await _check_stops_cleanly(daemon)
