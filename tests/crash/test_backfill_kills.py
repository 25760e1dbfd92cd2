"""A daemon SIGKILLed while it submits a backfill's runs: each partition still gets its run
exactly once.

The backfill is stored as `vigil backfill launch` stores it; the queue is paused, so the
runs stay QUEUED and the store shows exactly what was submitted. Two kinds of kill, on
SQLite and PostgreSQL: at the crash point of the chunk's transaction (just before it, just
after its commit: `inject/sitecustomize.py`), and at random moments of a larger backfill,
several times (the restarted daemon goes on from the stored cursor).
"""

from __future__ import annotations

import collections
import pathlib
import random
import signal
import time

import anyio
import pytest

from tests.acceptance.harness import Instance
from tests.crash import harness
from tests.crash.harness import Killed
from tests.daemon.process import Daemons
from tests.waiting import eventually
from vigil import backfills
from vigil.coordinators import queued

SUBMIT = "SqlStore.submit_backfill_runs"
DEADLINE = 120.0
B = backfills.BackfillStatus


def configure(instance: Instance, chunk_size: int) -> None:
    harness.configure(instance)
    text = (instance.home / "vigil.yaml").read_text()
    instance.write_config(text + f"backfills: {{poll_interval: 0.2, chunk_size: {chunk_size}}}\n")


async def stored_backfill(instance: Instance, total: int) -> backfills.Backfill:
    """A backfill of `total` partitions, the queue paused so its runs stay QUEUED."""
    keys = [f"p{i:05d}" for i in range(total)]
    made = backfills.new_backfill("jot", "crash", keys, time.time(), max_concurrent=2)
    async with harness.opened(instance) as store:
        await store.set_flag(queued.PAUSED_FLAG, True, time.time())
        return await store.add_backfill(made)


async def submitted(instance: Instance, backfill_id: str) -> tuple[backfills.Backfill, list[str]]:
    """The backfill as stored, and the run key of each of its runs."""
    async with harness.opened(instance) as store:
        found = await store.get_backfill(backfill_id)
        queued_runs = await store.list_runs()
    keys = [r.run_key or "" for r in queued_runs if r.instigator == found.instigator]
    return found, keys


def problems(found: backfills.Backfill, keys: list[str]) -> list[str]:
    """Each run's partition among the first `cursor` partitions, once, and no other run."""
    seen = collections.Counter(keys)
    twice = sorted(k for k, n in seen.items() if n > 1)
    wrong = sorted(set(seen) - set(found.partitions[: found.cursor]))
    missing = sorted(set(found.partitions[: found.cursor]) - set(seen))
    found_problems = []
    if twice:
        found_problems.append(f"partitions submitted twice: {twice[:10]}")
    if wrong:
        found_problems.append(f"runs beyond the cursor {found.cursor}: {wrong[:10]}")
    if missing:
        found_problems.append(f"partitions before the cursor without a run: {missing[:10]}")
    return found_problems


async def wait_until_submitted(instance: Instance, backfill_id: str) -> None:
    async def done() -> bool:
        found, _ = await submitted(instance, backfill_id)
        return found.status is B.SUBMITTED

    await eventually(done, DEADLINE)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_daemon_killed_at_a_chunks_commit_submits_each_partition_once(
    when: str, instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    configure(instance, chunk_size=10)
    made = await stored_backfill(instance, 45)
    env = harness.daemon_env(tmp_path, f"{SUBMIT}:{when}:daemon")
    first = daemons.start(env=env)
    code = await first.exit_code(DEADLINE)
    assert code == -signal.SIGKILL, first.log()
    killed = Killed.read(harness.crash_marker(tmp_path))
    assert (killed.pid, killed.at) == (first.pid, f"{SUBMIT}:{when}:daemon")

    found, keys = await submitted(instance, made.backfill_id)
    assert not problems(found, keys), problems(found, keys)
    # Killed at its first chunk: before its commit nothing, after it the whole chunk.
    assert found.cursor == (0 if when == "before" else 10), found
    assert len(keys) == found.cursor

    await harness.wait_until_stale(instance)
    second = daemons.start(env=env)  # the marker holds: no second kill
    await wait_until_submitted(instance, made.backfill_id)
    found, keys = await submitted(instance, made.backfill_id)
    assert (found.cursor, found.status) == (45, B.SUBMITTED)
    assert sorted(keys) == list(found.partitions), problems(found, keys)
    assert second.process.poll() is None, second.log()


@pytest.mark.timeout(600)
async def test_a_daemon_killed_five_times_mid_backfill_submits_each_partition_once(
    instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    configure(instance, chunk_size=20)
    made = await stored_backfill(instance, 3000)
    rng = random.Random(made.backfill_id)
    env = harness.daemon_env(tmp_path)
    kills = 0
    last = 0
    while kills < 5:
        daemon = daemons.start(env=env)

        async def moved(since: int = last) -> bool:
            found, _ = await submitted(instance, made.backfill_id)
            return found.cursor > since or found.status is not B.SUBMITTING

        await eventually(moved, DEADLINE)
        # A random moment of the submission (some kills land mid-transaction).
        await anyio.sleep(rng.uniform(0.0, 0.3))
        daemon.send(signal.SIGKILL)
        assert await daemon.exit_code(30.0) == -signal.SIGKILL
        kills += 1
        found, keys = await submitted(instance, made.backfill_id)
        assert not problems(found, keys), (kills, problems(found, keys))
        last = found.cursor
        if found.status is B.SUBMITTED:
            break
        await harness.wait_until_stale(instance)

    daemons.start(env=env)
    await wait_until_submitted(instance, made.backfill_id)
    found, keys = await submitted(instance, made.backfill_id)
    assert sorted(keys) == list(found.partitions), problems(found, keys)
    assert kills >= 3, f"the backfill was submitted after {kills} kills: make it larger"
