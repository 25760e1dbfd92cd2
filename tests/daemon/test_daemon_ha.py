"""Many real `vigil daemon run` processes on one real PostgreSQL: the work is shared, never
done twice, and taken over when a daemon dies, stops, or is frozen past its lease.

The daemons share 12 per-second schedules (catch-up: all) and two sensors whose cursors
name the daemon that moved them (`ha_instigators.py`). After each scenario the store must
show, for every schedule, one tick row for every second from its first tick to its last
(none lost in a takeover, none twice) and one run per successful tick; for the counting
sensor, exactly one run per cursor step. Leases are read from the store; waits are
conditions with generous deadlines.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import pathlib
import signal
import time
from collections.abc import AsyncIterator, Mapping

import anyio
import pytest

from tests.acceptance.harness import IMMEDIATE, REPO, Instance, run_id_of
from tests.crash import harness as crash_harness
from tests.daemon import ha_instigators, process, test_daemon_monitor, test_daemon_retries
from tests.daemon.process import Daemon, Daemons
from tests.waiting import eventually
from vigil import storage, ticks
from vigil.config import loader

T = ticks.TickStatus
HERE = REPO / "tests" / "daemon"
STALLING = "tests.plugins.stalling_launcher:StallingLauncher"
SCHEDULES = [f"schedule:s{n}" for n in range(ha_instigators.SCHEDULES)]
SENSORS = ["sensor:counting", "sensor:gated"]
UNITS = [*SCHEDULES, *SENSORS]
DEADLINE = 90.0
POLL = 0.25  # seconds between two reads of the store (each opens a store of its own)

pytestmark = pytest.mark.postgres


def configure(instance: Instance, lease_ttl: float) -> None:
    """The shared instigators; runs "launched" by a launcher that starts no worker."""
    text = (instance.home / "vigil.yaml").read_text()
    store_section = text[text.index("store:") :]
    instance.write_config(
        f"workspace:\n  - name: ha\n    file: {HERE / 'ha_instigators.py'}\n"
        f"{IMMEDIATE}"
        f"run_launcher:\n  type: {STALLING}\n  options: {{}}\n"
        "run_monitoring: {enabled: false}\nrun_retries: {enabled: false}\n"
        "scheduling:\n  poll_interval: 0.3\n"
        f"daemon:\n  heartbeat_interval: 0.3\n  shutdown_grace: 10\n  lease_ttl: {lease_ttl}\n"
        "http:\n  enabled: false\n" + store_section
    )


@contextlib.asynccontextmanager
async def opened(instance: Instance) -> AsyncIterator[storage.Store]:
    store = await storage.open_store(loader.store_target(loader.load_settings(instance.home)))
    try:
        yield store
    finally:
        await store.close()


async def owners(instance: Instance) -> dict[str, int | None]:
    """Each instigator's owner, as the pid of its daemon (None: released or never taken)."""
    async with opened(instance) as store:
        pids = {m.daemon_id: m.pid for m in await store.list_members()}
        leases = await store.list_leases()
    found: dict[str, int | None] = dict.fromkeys(UNITS)
    for lease in leases:
        if lease.unit in found and lease.owner is not None:
            found[lease.unit] = pids.get(lease.owner)
    return found


async def wait_for_owners(instance: Instance, wanted: set[int | None]) -> dict[str, int | None]:
    """Until the instigators' owners are exactly these daemons."""
    found: dict[str, int | None] = {}

    async def reached() -> bool:
        nonlocal found
        found = await owners(instance)
        return set(found.values()) == wanted

    try:
        await eventually(reached, DEADLINE, POLL)
    except TimeoutError:
        raise AssertionError(f"owners never became {wanted}: {found}") from None
    return found


async def wait_for_ticks_after(instance: Instance, moment: float) -> None:
    """Until every schedule has a finished tick scheduled after `moment`."""

    async def reached() -> bool:
        async with opened(instance) as store:
            for name in SCHEDULES:
                newest = await store.list_ticks(name, [T.SUCCESS], limit=1)
                if not newest or newest[0].scheduled_time <= moment:
                    return False
        return True

    await eventually(reached, DEADLINE, POLL)


async def stop(*daemons: Daemon) -> None:
    for daemon in daemons:
        daemon.send(signal.SIGTERM)
    for daemon in daemons:
        assert await daemon.exit_code() == 0, daemon.log()


async def schedule_problems(instance: Instance) -> list[str]:
    """Every second of each schedule's span ticked once, with one run per successful tick."""
    problems: list[str] = []
    async with opened(instance) as store:
        for name in SCHEDULES:
            found = await store.list_ticks(name)
            made = await store.instigator_runs(name)
            problems += _tick_problems(name, found, len(made))
    return problems


def _tick_problems(name: str, found: list[ticks.Tick], runs_made: int) -> list[str]:
    times = sorted(t.scheduled_time for t in found)
    problems = []
    if len(times) < 3:
        problems.append(f"{name}: only {len(times)} ticks")
    elif times != [times[0] + n for n in range(len(times))]:
        gaps = [(a, b) for a, b in itertools.pairwise(times) if b - a != 1.0]
        problems.append(f"{name}: ticks not one a second: {gaps[:5]}")
    left = [t.tick_id for t in found if t.status is T.STARTED]
    if left:
        problems.append(f"{name}: ticks left STARTED: {left}")
    succeeded = [t for t in found if t.status is T.SUCCESS]
    run_ids = [r for t in succeeded for r in t.run_ids]
    if any(len(t.run_ids) != 1 for t in succeeded) or len(set(run_ids)) != runs_made:
        problems.append(f"{name}: {len(succeeded)} successful ticks, {runs_made} runs")
    return problems


async def counting_problems(instance: Instance) -> list[str]:
    """The counting sensor made run k<n> for each cursor step n, each once."""
    async with opened(instance) as store:
        [state] = await store.list_instigators(["sensor:counting"])
        keys = [r.run_key for r in await store.instigator_runs("sensor:counting")]
    steps = int((state.cursor or "0:0").split(":")[1])
    duplicated = [k for k, n in collections.Counter(keys).items() if n > 1]
    expected = {f"k{n}" for n in range(steps)}
    if duplicated or set(keys) != expected:
        return [f"counting: cursor at {steps}, run keys {sorted(keys)} (twice: {duplicated})"]
    return []


def pid_of(found: Mapping[str, int | None], unit: str) -> int:
    pid = found[unit]
    assert pid is not None
    return pid


@pytest.mark.parametrize(
    "crash_at",
    [
        pytest.param(None, id="sigkill-the-owner-of-s0"),
        pytest.param("SqlStore.plan_ticks:after:daemon", id="sigkill-after-starting-ticks"),
        pytest.param("SqlStore.finish_ticks:before:daemon", id="sigkill-before-ending-ticks"),
    ],
)
async def test_a_killed_daemons_instigators_are_taken_over_with_no_tick_lost_or_twice(
    crash_at: str | None, pg_instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    """SIGKILLed at a moment of the test's choosing, or by a crash point armed in both
    daemons (the first to reach it dies there: its runs submitted, its ticks STARTED)."""
    configure(pg_instance, lease_ttl=2.0)
    env = {"INSTIGATOR_DIR": str(tmp_path)}
    if crash_at is not None:
        env |= crash_harness.daemon_env(tmp_path, crash_at)
    pair = [daemons.start(env=env), daemons.start(env=env)]
    victim = await _victim(pg_instance, pair, crash_at, tmp_path)
    [survivor] = [d for d in pair if d is not victim]
    assert await victim.exit_code(DEADLINE) == -signal.SIGKILL
    killed_at = time.time()
    await wait_for_owners(pg_instance, {survivor.pid})
    await wait_for_ticks_after(pg_instance, killed_at + 3)
    assert "leases.taken_over" in survivor.log()
    await stop(survivor)

    problems = await schedule_problems(pg_instance) + await counting_problems(pg_instance)
    assert not problems, "\n".join(problems)


async def _victim(
    instance: Instance, pair: list[Daemon], crash_at: str | None, tmp_path: pathlib.Path
) -> Daemon:
    """The daemon the crash point killed, or the owner of s0, killed now."""
    if crash_at is not None:
        killed = await crash_harness.read_marker(crash_harness.crash_marker(tmp_path), DEADLINE)
        [victim] = [d for d in pair if d.pid == killed.pid]
        return victim
    found = await wait_for_owners(instance, {d.pid for d in pair})
    await wait_for_ticks_after(instance, time.time() + 2)
    [victim] = [d for d in pair if d.pid == pid_of(found, "schedule:s0")]
    victim.send(signal.SIGKILL)
    return victim


async def test_a_clean_stop_hands_its_instigators_over_at_once_and_a_joiner_takes_its_share(
    pg_instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    # Leases outlive a daemon by 120 s here: a takeover sooner than that is a handover.
    configure(pg_instance, lease_ttl=120.0)
    env = {"INSTIGATOR_DIR": str(tmp_path)}
    first = daemons.start(env=env)
    await wait_for_owners(pg_instance, {first.pid})
    second = daemons.start(env=env)  # joins: takes its share from the first
    await wait_for_owners(pg_instance, {first.pid, second.pid})
    await wait_for_ticks_after(pg_instance, time.time() + 2)

    first.send(signal.SIGTERM)
    assert await first.exit_code() == 0, first.log()
    assert "leases.released" in first.log()
    await wait_for_owners(pg_instance, {second.pid})
    await wait_for_ticks_after(pg_instance, time.time() + 2)
    assert "leases.taken_over" not in second.log()  # released, not taken from the dead
    await stop(second)

    problems = await schedule_problems(pg_instance) + await counting_problems(pg_instance)
    assert not problems, "\n".join(problems)


async def test_a_daemon_frozen_past_its_lease_cannot_commit_a_tick_it_lost(
    pg_instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    configure(pg_instance, lease_ttl=2.0)
    (tmp_path / "gate.on").touch()
    env = {"INSTIGATOR_DIR": str(tmp_path)}
    pair = [daemons.start(env=env), daemons.start(env=env)]
    waiting = await _waiting_at_gate(tmp_path, set())
    [frozen] = [d for d in pair if d.pid == waiting]
    [other] = [d for d in pair if d is not frozen]

    frozen.send(signal.SIGSTOP)  # its evaluation process waits on at the gate
    try:
        await wait_for_owners_of(pg_instance, "sensor:gated", other.pid)
        await _waiting_at_gate(tmp_path, {frozen.pid})  # the other evaluates the same tick
        (tmp_path / "gate.open").touch()
        await _cursor_written_by(pg_instance, other.pid)
    finally:
        frozen.send(signal.SIGCONT)
    await frozen.logged("tick.fenced", DEADLINE)
    await stop(*pair)

    async with opened(pg_instance) as store:
        cursors = [t.cursor for t in await store.list_ticks("sensor:gated")]
        keys = [r.run_key for r in await store.instigator_runs("sensor:gated")]
    assert f"{frozen.pid}:1" not in cursors  # its late ending of the first tick was refused
    assert f"{other.pid}:1" in cursors
    assert len(keys) == len(set(keys))


async def wait_for_owners_of(instance: Instance, unit: str, pid: int) -> None:
    async def reached() -> bool:
        return (await owners(instance))[unit] == pid

    await eventually(reached, DEADLINE, POLL)


async def _waiting_at_gate(tmp_path: pathlib.Path, seen: set[int]) -> int:
    """The pid of a daemon (not in `seen`) whose evaluation waits at the gate."""
    found: list[int] = []

    async def reached() -> bool:
        found[:] = [int(p.suffix[1:]) async for p in anyio.Path(tmp_path).glob("waiting.*")]
        return bool(set(found) - seen)

    await eventually(reached, DEADLINE)
    return min(set(found) - seen)


async def _cursor_written_by(instance: Instance, pid: int) -> None:
    async def reached() -> bool:
        async with opened(instance) as store:
            [state] = await store.list_instigators(["sensor:gated"]) or [None]
        return state is not None and (state.cursor or "").startswith(f"{pid}:")

    await eventually(reached, DEADLINE, POLL)


async def test_a_daemon_killed_as_it_submits_a_retry_leaves_the_other_to_launch_it_once(
    pg_instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    """The retries cursor's owner dies just after inserting a retry run, before launching it
    or moving its cursor: the other daemon takes the cursor over, finds the retry already
    submitted (its run key), and launches it; each retry exists once."""
    test_daemon_retries.retries(pg_instance, max_retries=2)
    process.configure(pg_instance, process.TICKER, lease_ttl=2.0)
    env = crash_harness.daemon_env(tmp_path, "SqlStore.add_run:after:daemon")
    pair = [daemons.start(env=env), daemons.start(env=env)]
    root = run_id_of(pg_instance.vigil("run", "launch", "broken").stdout)

    killed = await crash_harness.read_marker(crash_harness.crash_marker(tmp_path), DEADLINE)
    assert killed.pid in {d.pid for d in pair}
    chain = test_daemon_retries.wait_for_lineage(pg_instance, root, ["FAILURE"] * 3)
    assert [run["tags"].get("vigil/retry_number") for run in chain] == [None, "1", "2"]
    assert killed.run_ids == (chain[1]["run_id"],) or killed.run_ids == (chain[2]["run_id"],)
    [survivor] = [d for d in pair if d.pid != killed.pid]
    await stop(survivor)


async def test_a_daemon_killed_as_it_resumes_a_run_leaves_the_other_to_resume_it(
    pg_instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    """A run's worker is killed; the daemon watching the run's shard takes the resume (a
    new launch token) and dies before launching the new worker. The other daemon takes
    the shard over, finds no worker, and resumes the run with the next attempt."""
    test_daemon_monitor.monitoring(pg_instance, poll_interval=0.2, max_resume_attempts=2)
    process.configure(pg_instance, process.TICKER, lease_ttl=2.0)
    env = crash_harness.daemon_env(tmp_path, "SqlStore.resume_run:after:daemon")
    pair = [daemons.start(env=env), daemons.start(env=env)]
    run_id = run_id_of(pg_instance.ok("run", "launch", "sleepy"))

    first = pg_instance.wait_until(run_id, lambda r: r["status"] == "STARTED" and r["worker"])
    os.kill(test_daemon_monitor.worker_pid(first), signal.SIGKILL)
    killed = await crash_harness.read_marker(crash_harness.crash_marker(tmp_path), DEADLINE)
    assert killed.run_ids == (run_id,)
    [survivor] = [d for d in pair if d.pid != killed.pid]

    def resumed_twice(run: dict[str, object]) -> bool:
        return run["status"] == "STARTED" and run["worker"] != first["worker"]

    pg_instance.wait_until(run_id, resumed_twice, deadline=DEADLINE)
    notes = [
        e["message"]
        for e in test_daemon_monitor.events_of(pg_instance, run_id)
        if e["type"] == "ENGINE"
    ]
    assert len([m for m in notes if "resuming (attempt 1 of 2)" in m]) == 1, notes
    assert len([m for m in notes if "resuming (attempt 2 of 2)" in m]) == 1, notes
    pg_instance.ok("run", "cancel", run_id)
    pg_instance.wait_until(run_id, lambda r: r["status"] == "CANCELED", deadline=DEADLINE)
    await stop(survivor)
