"""The queued coordinator against a real store: limits, order, pause, launch failures."""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import psutil

from tests import waiting
from tests.integration import test_worker
from vigil import coordinators, errors, events, launchers, runs, storage
from vigil.coordinators import admission, base, queued
from vigil.daemon import orphans

S = runs.RunStatus


class ScriptedLauncher(launchers.RunLauncher):
    """Records launches; fails or hangs as a test says, without starting processes."""

    def __init__(self) -> None:
        here = pathlib.Path.cwd()
        super().__init__(
            launchers.RunLauncher.Options(), launchers.LaunchContext(here, here, {}, here)
        )
        self.launched: list[str] = []
        self.failures: list[BaseException] = []
        self.hang = False
        self.hang_once = False
        self.tokens: list[str | None] = []

    async def launch(self, run: runs.Run) -> Mapping[str, Any]:
        self.tokens.append(run.launch_token)
        if self.hang or self.hang_once:
            self.hang_once = False
            await anyio.sleep_forever()
        if self.failures:
            raise self.failures.pop(0)
        self.launched.append(run.run_id)
        return {"launcher": "scripted"}

    async def terminate(self, run: runs.Run) -> bool:
        return False

    async def check_worker_health(self, run: runs.Run) -> launchers.HealthCheck:
        return launchers.HealthCheck(launchers.WorkerHealth.UNKNOWN)


def coordinator(
    store: storage.Store,
    launcher: ScriptedLauncher,
    observer: coordinators.LaunchObserver | None = None,
    **options: Any,
) -> queued.QueuedCoordinator:
    return queued.QueuedCoordinator(
        queued.QueuedOptions(**options), store, launcher, time.time, "test", observer
    )


async def submit(c: queued.QueuedCoordinator, n: int, **tags: str) -> list[str]:
    ids = []
    for _ in range(n):
        run = await c.submit(test_worker.new_run(status=S.NOT_STARTED, tags=tags))
        assert run.status is S.QUEUED
        ids.append(run.run_id)
    return ids


async def test_submit_queues_and_dequeue_launches_within_the_global_limit(
    store: storage.Store,
) -> None:
    launcher = ScriptedLauncher()
    c = coordinator(store, launcher, max_concurrent_runs=2)
    ids = await submit(c, 5)
    assert (await store.get_run(ids[0])).status is S.QUEUED
    kinds = [e.event_type for e in await store.get_events(ids[0])]
    assert kinds == [events.EventType.RUN_ENQUEUED]

    launched = await c.dequeue()
    assert [r.run_id for r in launched] == ids[:2]
    assert launcher.launched == ids[:2]
    assert (await store.get_run(ids[0])).status is S.STARTING
    assert (await store.get_run(ids[0])).launcher_info == {"launcher": "scripted"}
    assert await c.dequeue() == []
    waiting = await c.queue()
    assert [(e.run.run_id, e.reason) for e in waiting] == [(i, "global limit 2/2") for i in ids[2:]]


async def test_priority_first_and_a_tag_held_run_blocks_nothing(store: storage.Store) -> None:
    launcher = ScriptedLauncher()
    limit = admission.TagLimit(key="team", value="data", limit=1)
    c = coordinator(store, launcher, max_concurrent_runs=10, tag_concurrency_limits=(limit,))
    data = await submit(c, 2, team="data")
    urgent = await submit(c, 1, team="ml", **{"vigil/priority": "5"})
    later = await submit(c, 1, team="ml")
    await c.dequeue()
    assert launcher.launched == [urgent[0], data[0], later[0]]
    assert [(e.run.run_id, e.reason) for e in await c.queue()] == [(data[1], "tag team=data 1/1")]


async def test_a_paused_queue_launches_nothing_until_resumed(store: storage.Store) -> None:
    launcher = ScriptedLauncher()
    c = coordinator(store, launcher)
    await c.set_paused(True)
    ids = await submit(c, 2)
    assert await c.dequeue() == []
    assert [e.reason for e in await c.queue()] == ["queue paused", "queue paused"]
    await c.set_paused(False)
    assert [r.run_id for r in await c.dequeue()] == ids


async def test_a_launcher_that_raises_leaves_a_failure_with_its_error(store: storage.Store) -> None:
    launcher = ScriptedLauncher()
    launcher.failures.append(errors.LaunchError("no capacity on the cluster"))
    c = coordinator(store, launcher)
    [run_id] = await submit(c, 1)
    await c.dequeue()
    assert (await store.get_run(run_id)).status is S.FAILURE
    failed = await store.get_events(run_id, event_types=(events.EventType.RUN_FAILURE,))
    assert [e.message for e in failed] == ["no capacity on the cluster"]


async def test_a_transient_launch_error_is_retried(store: storage.Store) -> None:
    launcher = ScriptedLauncher()
    launcher.failures.append(errors.StoreUnavailable("connection reset"))
    c = coordinator(store, launcher, launch_retries=2)
    [run_id] = await submit(c, 1)
    await c.dequeue()
    assert launcher.launched == [run_id]
    assert (await store.get_run(run_id)).status is S.STARTING


async def test_a_launch_that_hangs_times_out_into_a_failure(store: storage.Store) -> None:
    launcher = ScriptedLauncher()
    launcher.hang = True
    c = coordinator(store, launcher, launch_timeout=0.2, launch_retries=0)
    [run_id] = await submit(c, 1)
    await c.dequeue()
    run = await store.get_run(run_id)
    assert run.status is S.FAILURE
    failed = await store.get_events(run_id, event_types=(events.EventType.RUN_FAILURE,))
    assert failed[0].message.startswith("launch failed after 1 attempts")


async def test_a_timed_out_launch_takes_a_new_token_before_it_is_tried_again(
    store: storage.Store,
) -> None:
    launcher = ScriptedLauncher()
    launcher.hang_once = True  # as if the first launch still forked its worker
    c = coordinator(store, launcher, launch_timeout=0.2, launch_retries=1)
    [run_id] = await submit(c, 1)
    await c.dequeue()
    first, second = launcher.tokens
    assert first is not None
    assert second not in (None, first)
    run = await store.get_run(run_id)
    assert (run.status, run.launch_token, dict(run.launcher_info)) == (
        S.STARTING,
        second,
        {"launcher": "scripted"},
    )
    # A worker of the first launch, had it started after all, loses its start.
    assert await store.start_run(run_id, time.time(), token=first) is None
    [note] = await store.get_events(run_id, event_types=(events.EventType.ENGINE,))
    assert "launch attempt 1 failed (no answer within the launch timeout)" in note.message


async def test_a_launch_failure_ends_the_run_with_its_reason(store: storage.Store) -> None:
    launcher = ScriptedLauncher()
    launcher.failures.append(errors.LaunchError("image not found"))
    c = coordinator(store, launcher)
    [run_id] = await submit(c, 1)
    await c.dequeue()
    [end] = await store.get_events(run_id, event_types=(events.EventType.RUN_FAILURE,))
    assert end.data == {"reason": "launch_failed", "by": "coordinator"}


async def test_a_run_not_yet_due_waits_in_the_queue_with_its_reason(
    store: storage.Store,
) -> None:
    launcher = ScriptedLauncher()
    c = coordinator(store, launcher)
    later = test_worker.new_run(status=S.NOT_STARTED, not_before=time.time() + 3600)
    await c.submit(later)
    [now_id] = await submit(c, 1)
    assert [r.run_id for r in await c.dequeue()] == [now_id]
    [entry] = await c.queue()
    assert entry.run.run_id == later.run_id
    assert entry.reason is not None
    assert entry.reason.startswith("not due before ")


async def test_claims_whose_claimer_is_gone_are_launched_again_once(
    store: storage.Store,
) -> None:
    launcher = ScriptedLauncher()
    launcher.hang = True  # the claimer "dies" in its launch
    dead = coordinator(store, launcher, launch_timeout=0.1, launch_retries=0)
    dead.claimer = "dead-daemon"
    ids = await submit(dead, 2)
    claimed = await store.claim_queued_runs(
        lambda q, _: [r.run_id for r in q], time.time(), "dead-daemon"
    )
    assert sorted(r.run_id for r in claimed) == sorted(ids)

    survivor = coordinator(store, ScriptedLauncher())
    assert await survivor.relaunch_orphans(["dead-daemon"], time.time() + 1) == []  # live
    taken = await survivor.relaunch_orphans([], time.time() + 1)
    assert sorted(r.run_id for r in taken) == sorted(ids)
    assert await survivor.relaunch_orphans([], time.time() + 1) == []  # launched: not again
    for run in taken:
        stored = await store.get_run(run.run_id)
        assert (stored.claimed_by, stored.launch_token) == ("test", run.launch_token)
        assert stored.launched_at is not None
        old = next(r for r in claimed if r.run_id == run.run_id).launch_token
        assert await store.start_run(run.run_id, time.time(), token=old) is None


class Observer:
    def __init__(self) -> None:
        self.launches: list[float] = []
        self.waits: list[float] = []
        self.failures = 0

    def observe_launch(self, seconds: float) -> None:
        self.launches.append(seconds)

    def observe_queue_wait(self, seconds: float) -> None:
        self.waits.append(seconds)

    def launch_failed(self) -> None:
        self.failures += 1


async def test_launches_are_observed_and_held_runs_counted_by_reason(
    store: storage.Store,
) -> None:
    launcher = ScriptedLauncher()
    launcher.failures.append(errors.LaunchError("boom"))
    observer = Observer()
    c = coordinator(store, launcher, observer, max_concurrent_runs=2)
    await submit(c, 5)
    await c.dequeue()
    assert len(observer.launches) == 1
    assert len(observer.waits) == 1
    assert observer.failures == 1
    assert c.statistics().held == {"global": 3}
    assert c.statistics().launches_in_flight == 0


class RecordingWrites:
    """Wraps the store's `record_launches`: counts the writes, fails the first ones if asked."""

    def __init__(self, store: storage.Store, failures: int = 0) -> None:
        self.batches: list[list[str]] = []
        self._failures = failures
        self._record = store.record_launches
        store.record_launches = self  # type: ignore[method-assign]

    async def __call__(self, launches: Sequence[storage.Launch], now: float) -> None:
        if self._failures:
            self._failures -= 1
            raise errors.StoreUnavailable("connection reset")
        self.batches.append(sorted(launch.run_id for launch in launches))
        await self._record(launches, now)


async def test_launches_that_finish_together_are_recorded_together(
    store: storage.Store,
) -> None:
    writes = RecordingWrites(store)
    c = coordinator(store, ScriptedLauncher(), max_concurrent_runs=-1)
    ids = await submit(c, 10)
    await c.dequeue()
    assert sorted(i for batch in writes.batches for i in batch) == sorted(ids)
    assert len(writes.batches) <= 2  # one write for the first launch, one for the rest
    for run in await store.list_runs():
        assert run.launcher_info == {"launcher": "scripted"}


async def test_a_store_error_while_recording_a_launch_never_launches_twice(
    store: storage.Store,
) -> None:
    launcher = ScriptedLauncher()
    writes = RecordingWrites(store, failures=1)
    c = coordinator(store, launcher, launch_retries=2)
    [run_id] = await submit(c, 1)
    await c.dequeue()
    assert launcher.launched == [run_id]
    assert writes.batches == [[run_id]]
    run = await store.get_run(run_id)
    assert (run.status, run.launcher_info) == (S.STARTING, {"launcher": "scripted"})


async def test_the_monitor_looks_again_when_an_unowned_claim_is_old_enough(
    store: storage.Store,
) -> None:
    # A daemon killed before its first heartbeat: its claim is unowned but young.
    [run_id] = await submit(coordinator(store, ScriptedLauncher()), 1)
    await store.claim_queued_runs(lambda q, _: [r.run_id for r in q], 100.0, "never-beat")
    survivor = coordinator(store, ScriptedLauncher())
    claims = orphans.OrphanedClaims(survivor, store, heartbeat_interval=0.5, every=10.0)

    assert await claims.relaunch(now=101.0) == []
    assert claims.next_due == 101.5  # claimed at 100, orphaned after 3 heartbeat intervals
    assert await claims.relaunch(now=101.2) == []  # between two looks
    [taken] = await claims.relaunch(now=101.5)
    assert taken.run_id == run_id
    assert claims.next_due is None


async def test_a_claim_this_daemon_never_heard_of_is_launched_again(
    store: storage.Store,
) -> None:
    """The store went away as a claim committed: the claim holds, but the daemon that made
    it never learned of it and launches it nowhere. The monitor launches it again once old
    enough; never a claim the daemon is launching."""
    launcher = ScriptedLauncher()
    c = coordinator(store, launcher)
    [lost_id, busy_id] = await submit(c, 2)
    await store.claim_run(lost_id, S.QUEUED, 100.0, c.claimer)  # committed, never heard of
    busy = await store.claim_run(busy_id, S.QUEUED, 100.0, c.claimer)
    assert busy is not None
    claims = orphans.OrphanedClaims(c, store, heartbeat_interval=0.5, every=0.0)

    async def launching() -> bool:
        return busy_id in c.launching()

    async with anyio.create_task_group() as tg:
        launcher.hang_once = True  # the busy claim's launch is in progress, and stays so
        tg.start_soon(c.start_worker, busy)
        await waiting.eventually(launching)
        taken = await claims.relaunch(now=200.0)
        tg.cancel_scope.cancel()

    assert [r.run_id for r in taken] == [lost_id]
    assert launcher.launched == [lost_id]
    events_ = await store.get_events(lost_id, event_types=[events.EventType.ENGINE])
    assert any("did not learn of its claim" in e.message for e in events_)


async def test_a_cli_claim_is_orphaned_when_its_process_is_gone_never_while_it_runs(
    store: storage.Store,
) -> None:
    """A CLI's claim names its process: however long its launch takes while it runs, the
    monitor leaves it alone (a slow, healthy `run launch` was once replaced); once it is
    gone, the claim is launched again at once, without the heartbeat wait."""
    [alive_id, dead_id] = await submit(coordinator(store, ScriptedLauncher()), 2)
    me = base.cli_claimer()
    # A process gone, its pid taken by another (this one): the start time tells them apart.
    started = round(psutil.Process().create_time() * 1000)
    dead = me.replace(f"cli:{os.getpid()}:{started}@", f"cli:{os.getpid()}:{started - 5000}@")
    assert dead != me
    await store.claim_run(alive_id, S.QUEUED, 100.0, me)
    await store.claim_run(dead_id, S.QUEUED, 100.0, dead)
    survivor = coordinator(store, ScriptedLauncher())
    claims = orphans.OrphanedClaims(survivor, store, heartbeat_interval=0.5, every=0.0)

    taken = await claims.relaunch(now=100.1)  # young, but its process is gone
    later = await claims.relaunch(now=10_000.0)  # old, but its process runs

    assert [r.run_id for r in taken] == [dead_id]
    assert later == []
    assert base.cli_claim_alive(me) is True
    assert base.cli_claim_alive(dead) is False
    assert base.cli_claim_alive("cli:12:34@another-host-entirely") is None
    assert base.cli_claim_alive("a-daemon-id") is None
