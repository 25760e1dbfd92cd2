"""Two daemons on one PostgreSQL, one SIGKILLed at a crash point: the other takes its work
over, and every run still ends SUCCESS, once, each step run once.

Both daemons are armed with the same crash point and share its marker, so whichever gets
there first is killed and the other is not (`inject/sitecustomize.py`). Nobody restarts
the killed one: its claims, its launches and its monitor shards must be taken over by the
survivor once its leases expire (`daemon.lease_ttl`, short here). The run start timeout
is far beyond every deadline, so only a takeover can explain a success.
"""

from __future__ import annotations

import pathlib
import signal

import pytest

from tests.acceptance.harness import Instance
from tests.crash import harness
from tests.crash.test_crash_points import CLAIM, RECORD_LAUNCHES
from tests.daemon.process import Daemons

RUNS = 8
LEASE_TTL = 2.0
KILL_DEADLINE = 90.0
END_DEADLINE = 180.0
TEST_TIMEOUT = 420

pytestmark = [pytest.mark.crash, pytest.mark.postgres]


@pytest.mark.timeout(TEST_TIMEOUT)
@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(f"{CLAIM}:after:daemon", id="claim-after"),
        pytest.param(f"{RECORD_LAUNCHES}:before:daemon", id="record-launches-before"),
        pytest.param(
            f"{RECORD_LAUNCHES}:after:daemon",
            id="record-launches-after",
            marks=pytest.mark.crash_long,
        ),
    ],
)
async def test_a_daemon_killed_at_a_crash_point_is_taken_over_by_the_other(
    spec: str, pg_instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    harness.configure(pg_instance, lease_ttl=LEASE_TTL)
    run_ids = await harness.submit(pg_instance, "jot", RUNS)
    env = harness.daemon_env(tmp_path, spec)
    pair = [daemons.start(env=env), daemons.start(env=env)]

    killed = await harness.read_marker(harness.crash_marker(tmp_path), KILL_DEADLINE)
    [victim] = [d for d in pair if d.pid == killed.pid]
    [survivor] = [d for d in pair if d.pid != killed.pid]
    assert (killed.role, killed.at) == ("daemon", spec)
    assert await victim.exit_code(KILL_DEADLINE) == -signal.SIGKILL

    await harness.wait_until_ended(pg_instance, run_ids, END_DEADLINE)
    await harness.wait_until_quiet(pg_instance, run_ids, survivor, tmp_path)
    executions = harness.step_executions(tmp_path)
    problems = await harness.outcome_problems(pg_instance, run_ids, harness.JOT_STEPS, executions)
    assert not problems, "\n".join(problems)
    assert survivor.process.poll() is None, survivor.log()
    survivor.send(signal.SIGTERM)
    assert await survivor.exit_code() == 0, survivor.log()
