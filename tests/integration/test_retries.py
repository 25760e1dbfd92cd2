"""The retries loop against a real store (SQLite and PostgreSQL) on a manual clock.

The queued coordinator only records the child runs (QUEUED), so no worker is needed: what
is tested is which retries are submitted, when, and that each is submitted once.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

from tests.daemon.fakes import ManualClock
from tests.integration.test_launcher import REPO
from vigil import coordinators, errors, events, launchers, reexecution, retrying, runs, storage
from vigil.config import settings as settings_mod
from vigil.coordinators import queued
from vigil.daemon.loops import retries

S = runs.RunStatus
E = events.EventType
T0 = 1_000_000.0


class NoLauncher(launchers.RunLauncher):
    async def launch(self, run: runs.Run) -> dict[str, str]:
        raise errors.LaunchError("not in these tests")

    async def terminate(self, run: runs.Run) -> bool:
        return False

    async def check_worker_health(self, run: runs.Run) -> launchers.HealthCheck:
        return launchers.HealthCheck(launchers.WorkerHealth.UNKNOWN)


def loop_for(
    store: storage.Store, clock: ManualClock, immediate: bool = False, **values: object
) -> retries.RetriesLoop:
    context = launchers.LaunchContext(REPO, REPO, {}, REPO)
    launcher = NoLauncher(NoLauncher.Options(), context)
    coordinator: coordinators.RunCoordinator = queued.QueuedCoordinator(
        queued.QueuedOptions(), store, launcher, clock.now
    )
    if immediate:
        coordinator = coordinators.ImmediateCoordinator(
            coordinators.RunCoordinator.Options(), store, launcher, clock.now
        )
    config = {"max_retries": 2, "delay": {"initial": 10, "factor": 2, "jitter": 0}, **values}
    settings = settings_mod.RunRetriesSettings.model_validate(config)
    return retries.RetriesLoop(coordinator, store, clock, settings)


async def ended_run(
    store: storage.Store,
    status: runs.RunStatus = S.FAILURE,
    reason: runs.EndReason = runs.EndReason.STEP_FAILURE,
    **tags: str,
) -> runs.Run:
    run_id = str(uuid.uuid4())
    run = runs.Run(
        run_id=run_id,
        job_name="abc",
        status=S.STARTED,
        tags=tags,
        code_location="it",
        root_run_id=run_id,
        created_at=T0,
        updated_at=T0,
    )
    await store.add_run(run)
    kind = E.RUN_FAILURE if status is S.FAILURE else E.RUN_CANCELED
    end = events.NewEvent(run_id, kind, T0, message="ended", data={"reason": reason.value})
    assert await store.transition_run(run_id, S.STARTED, status, T0, event=end)
    return await store.get_run(run_id)


async def lineage(store: storage.Store, root: str) -> list[runs.Run]:
    every = await store.list_runs(storage.RunFilter(root_run_id=root))
    return sorted(every, key=lambda r: r.retry_number)


async def notes(store: storage.Store, run_id: str) -> list[str]:
    return [e.message for e in await store.get_events(run_id, event_types=(E.ENGINE,))]


def claim_all(store: storage.Store, clock: ManualClock) -> Awaitable[list[runs.Run]]:
    return store.claim_queued_runs(lambda queued, _: [r.run_id for r in queued], clock.now(), "t")


async def test_a_failure_is_retried_after_its_delay_once(store: storage.Store) -> None:
    clock = ManualClock(T0)
    loop = loop_for(store, clock)
    failed = await ended_run(store)

    await loop.iterate()
    # The retry is stored at once, waiting for its due time; the queue does not claim it.
    chain = await lineage(store, failed.run_id)
    assert len(chain) == 2
    child = chain[1]
    assert (child.status, child.parent_run_id, child.retry_number) == (S.QUEUED, failed.run_id, 1)
    assert (child.instigator, child.run_key) == (retrying.INSTIGATOR, f"retry-of:{failed.run_id}")
    assert child.not_before == T0 + 10
    assert child.tags[runs.TAG_REEXECUTION] == "from_failure"
    assert loop.statistics() == retries.RetriesStatistics(1, 1, T0 + 10)
    [note] = await notes(store, failed.run_id)
    assert note.startswith(f"retry 1 of 2 (from_failure) submitted as run {child.run_id}, due at ")
    assert await claim_all(store, clock) == []

    clock.advance(10)
    await loop.iterate()
    assert len(await lineage(store, failed.run_id)) == 2  # submitted once
    assert loop.statistics() == retries.RetriesStatistics(1, 0, None)
    assert [r.run_id for r in await claim_all(store, clock)] == [child.run_id]


async def test_a_restarted_loop_never_submits_a_retry_twice(store: storage.Store) -> None:
    clock = ManualClock(T0 + 100)
    failed = await ended_run(store)
    await loop_for(store, clock).iterate()
    # A daemon killed after the submission, before the cursor moved: the next one reads
    # the failure again and the store refuses the second run with that key.
    await store.set_flag(retries.CURSOR_FLAG, 0, clock.now())
    again = loop_for(store, clock)
    await again.iterate()
    assert len(await lineage(store, failed.run_id)) == 2
    assert again.statistics().submitted == 0
    assert await store.get_flag(retries.CURSOR_FLAG) > 0


async def test_the_chain_follows_the_child_failures_until_exhausted(store: storage.Store) -> None:
    clock = ManualClock(T0 + 1000)
    loop = loop_for(store, clock)
    failed = await ended_run(store)
    await loop.iterate()
    for number in (1, 2):
        child = (await lineage(store, failed.run_id))[number]
        end = events.NewEvent(
            child.run_id, E.RUN_FAILURE, clock.now(), data={"reason": "step_failure"}
        )
        assert await store.transition_run(child.run_id, S.QUEUED, S.FAILURE, clock.now(), event=end)
        clock.advance(100)
        await loop.iterate()
    chain = await lineage(store, failed.run_id)
    assert [r.retry_number for r in chain] == [0, 1, 2]
    assert chain[2].run_key == f"retry-of:{chain[1].run_id}"
    assert chain[2].parent_run_id == chain[1].run_id


async def test_manual_and_automatic_re_executions_share_one_numbering(
    store: storage.Store,
) -> None:
    clock = ManualClock(T0 + 1000)
    failed = await ended_run(store)
    manual = reexecution.child_run(failed, reexecution.Mode.ALL_STEPS, clock.now())
    assert (await store.add_run(manual)).retry_number == 1
    await loop_for(store, clock).iterate()  # the automatic retry of the same failed run
    chain = await lineage(store, failed.run_id)
    assert sorted(r.retry_number for r in chain) == [0, 1, 2]
    automatic = next(r for r in chain if r.instigator == retrying.INSTIGATOR)
    assert automatic.retry_number == 2
    assert automatic.tags[runs.TAG_RETRY_NUMBER] == "2"


async def test_canceled_and_bad_tags_are_not_retried_and_do_not_stop_the_loop(
    store: storage.Store,
) -> None:
    clock = ManualClock(T0 + 100)
    loop = loop_for(store, clock)
    canceled = await ended_run(store, S.CANCELED, runs.EndReason.CANCELED)
    bad = await ended_run(store, **{runs.TAG_MAX_RETRIES: "lots"})
    good = await ended_run(store)
    await loop.iterate()
    assert len(await lineage(store, canceled.run_id)) == 1
    assert len(await lineage(store, bad.run_id)) == 1
    assert len(await lineage(store, good.run_id)) == 2
    assert await notes(store, bad.run_id) == [
        "no retry: tag vigil/max_retries='lots' is not a whole number from 0 to 1000"
    ]
    assert await store.get_flag(retries.CURSOR_FLAG) >= 3


async def test_the_cursor_moves_past_waiting_retries(store: storage.Store) -> None:
    clock = ManualClock(T0)
    loop = loop_for(store, clock, delay={"initial": 300, "jitter": 0})
    ended = [await ended_run(store) for _ in range(3)]
    await loop.iterate()
    last_end = await store.get_events(ended[-1].run_id, event_types=(E.RUN_FAILURE,))
    assert await store.get_flag(retries.CURSOR_FLAG) == last_end[0].event_id
    assert loop.statistics() == retries.RetriesStatistics(3, 3, T0 + 300)


async def test_an_immediate_coordinator_launches_a_waiting_retry_when_due(
    store: storage.Store,
) -> None:
    clock = ManualClock(T0)
    loop = loop_for(store, clock, immediate=True)
    failed = await ended_run(store)
    await loop.iterate()
    [_, child] = await lineage(store, failed.run_id)
    assert (child.status, child.not_before) == (S.NOT_STARTED, T0 + 10)
    clock.advance(10)
    await loop.iterate()
    # Launched once due: this launcher refuses, so the launch ended it FAILURE.
    assert (await store.get_run(child.run_id)).status is S.FAILURE


async def test_a_retry_inserted_but_never_launched_is_launched_after_restart(
    store: storage.Store,
) -> None:
    clock = ManualClock(T0 + 100)
    failed = await ended_run(store)
    # A daemon with the immediate coordinator inserted the retry and died before launching.
    key = retrying.run_key(failed.run_id)
    orphan = reexecution.child_run(
        failed,
        reexecution.Mode.FROM_FAILURE,
        clock.now(),
        instigator=retrying.INSTIGATOR,
        run_key=key,
    )
    await store.add_run(orphan)
    await loop_for(store, clock, immediate=True).iterate()
    chain = await lineage(store, failed.run_id)
    assert [r.run_id for r in chain] == [failed.run_id, orphan.run_id]
    launched = chain[1]
    assert launched.status is S.FAILURE  # launched: this launcher refuses, so it failed
    [failure] = await store.get_events(orphan.run_id, event_types=(E.RUN_FAILURE,))
    assert failure.message == "not in these tests"
