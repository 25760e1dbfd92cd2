"""The conditional verbs of a run's launch, start, resume and end, on SQLite and PostgreSQL.

Each is one transaction with its guard: a claim writes a new launch token; a worker starts
only with its token; a launch replaced (reclaimed, resumed) stops counting; an end carries
its reason in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from vigil import errors, events, runs, storage
from vigil.storage import sql

S = runs.RunStatus
E = events.EventType
R = runs.EndReason


def make_run(run_id: str, **fields: object) -> runs.Run:
    defaults: dict[str, object] = {"job_name": "etl", "status": S.NOT_STARTED, "created_at": 1.0}
    return runs.Run(run_id=run_id, **{**defaults, **fields})


def note(run_id: str, message: str = "note") -> events.NewEvent:
    return events.NewEvent(run_id, E.ENGINE, 1.0, message=message)


async def claimed(store: sql.SqlStore, run_id: str = "r1", claimer: str = "d1") -> runs.Run:
    await store.add_run(make_run(run_id))
    run = await store.claim_run(run_id, S.NOT_STARTED, 2.0, claimer)
    assert run is not None
    return run


async def test_a_claim_takes_a_new_token_once(store: sql.SqlStore) -> None:
    run = await claimed(store)

    assert (run.status, run.claimed_by, run.launched_at) == (S.STARTING, "d1", None)
    assert run.launch_token
    assert await store.claim_run("r1", S.NOT_STARTED, 3.0, "d2") is None
    [starting] = await store.get_events("r1")
    assert (starting.event_type, starting.data) == (E.RUN_STARTING, {"claimer": "d1"})
    with pytest.raises(errors.UnknownRun):
        await store.claim_run("nope", S.NOT_STARTED, 3.0, "d1")


async def test_queue_claims_write_a_token_and_the_claimer(store: sql.SqlStore) -> None:
    await store.add_runs([make_run(f"q{i}", status=S.QUEUED) for i in range(3)])

    got = await store.claim_queued_runs(lambda queued, _: [r.run_id for r in queued], 5.0, "d1")

    assert {r.claimed_by for r in got} == {"d1"}
    assert all(r.launch_token for r in got)


async def test_a_worker_starts_only_with_its_token(store: sql.SqlStore) -> None:
    run = await claimed(store)
    update = storage.RunUpdate(start_time=3.0, worker_pid=7)

    assert await store.start_run("r1", 3.0, update, token="stale") is None
    started = await store.start_run("r1", 3.0, update, note("r1", "started"), run.launch_token)

    assert started is not None
    assert (started.status, started.worker_pid) == (S.STARTED, 7)
    assert [e.message for e in await store.get_events("r1", event_types=[E.ENGINE])] == ["started"]


async def test_a_launch_is_recorded_only_under_its_token(store: sql.SqlStore) -> None:
    run = await claimed(store)

    await store.record_launches([storage.Launch("r1", "stale", {"pid": 1})], 3.0)
    assert (await store.get_run("r1")).launched_at is None
    await store.record_launches([storage.Launch("r1", run.launch_token, {"pid": 2})], 3.0)

    stored = await store.get_run("r1")
    assert (dict(stored.launcher_info), stored.launched_at) == ({"pid": 2}, 3.0)


async def test_a_launch_never_recorded_is_reclaimed_once(store: sql.SqlStore) -> None:
    run = await claimed(store)

    again = await store.reclaim_launch("r1", run.launch_token, 9.0, "d2", note("r1", "again"))
    assert again is not None
    assert again.launch_token not in (None, run.launch_token)
    assert (again.claimed_by, again.updated_at) == ("d2", 9.0)
    # The old token lost: a second reclaim of it, and a worker of it, get nothing.
    assert await store.reclaim_launch("r1", run.launch_token, 9.5, "d3", note("r1")) is None
    assert await store.start_run("r1", 10.0, token=run.launch_token) is None
    assert await store.start_run("r1", 10.0, token=again.launch_token) is not None


async def test_a_recorded_or_started_launch_is_not_reclaimed(store: sql.SqlStore) -> None:
    run = await claimed(store)
    await store.record_launches([storage.Launch("r1", run.launch_token, {"pid": 1})], 3.0)

    assert await store.reclaim_launch("r1", run.launch_token, 9.0, "d2", note("r1")) is None


async def test_orphaned_claims_are_those_of_gone_claimers_never_launched(
    store: sql.SqlStore,
) -> None:
    for run_id, claimer in [("live", "d1"), ("dead", "d2"), ("launched", "d2"), ("new", "d2")]:
        await store.add_run(make_run(run_id))
        now = 50.0 if run_id == "new" else 2.0
        run = await store.claim_run(run_id, S.NOT_STARTED, now, claimer)
        assert run is not None
        if run_id == "launched":
            await store.record_launches([storage.Launch(run_id, run.launch_token, {})], 3.0)

    found = await store.orphaned_claims({"d1"}, claimed_before=10.0)

    assert [r.run_id for r in found] == ["dead"]
    assert {r.run_id for r in await store.orphaned_claims(set(), 100.0)} == {"live", "dead", "new"}


async def test_a_resume_takes_each_attempt_once(store: sql.SqlStore) -> None:
    run = await claimed(store)
    await store.start_run("r1", 3.0, token=run.launch_token)

    first = await store.resume_run("r1", S.STARTED, 1, 4.0, "d1", note("r1", "resume 1"))
    assert first is not None
    assert (first.resume_attempt, first.status) == (1, S.STARTED)
    assert (
        await store.resume_run("r1", S.STARTED, 1, 4.5, "d2", note("r1")) is None
    )  # taken already
    # The dead worker's token no longer ends the run; the resumed worker's does.
    failed = runs.RunEnd(S.FAILURE, "old worker")
    assert not await store.end_run("r1", S.STARTED, failed, 5.0, token=run.launch_token)
    resumed = await store.start_run("r1", 5.0, token=first.launch_token, resume=True)
    assert resumed is not None
    assert resumed.status is S.STARTED
    assert await store.end_run(
        "r1", S.STARTED, runs.RunEnd(S.SUCCESS, "ok"), 6.0, token=first.launch_token
    )


async def test_concurrent_resumes_of_one_attempt_have_one_winner(
    store: sql.SqlStore, other_store: sql.SqlStore
) -> None:
    run = await claimed(store)
    await store.start_run("r1", 3.0, token=run.launch_token)

    results = await asyncio.gather(
        *(
            s.resume_run("r1", S.STARTED, 1, 4.0, f"d{i}", note("r1"))
            for i, s in enumerate([store, other_store] * 5)
        )
    )

    assert sum(result is not None for result in results) == 1
    assert len(await store.get_events("r1", event_types=[E.ENGINE])) == 1


async def test_an_end_writes_its_reason_after_the_pending_events(store: sql.SqlStore) -> None:
    run = await claimed(store)
    await store.start_run("r1", 3.0, token=run.launch_token)
    end = runs.RunEnd(S.FAILURE, "failed: a", R.STEP_FAILURE, by="worker")

    won = await store.end_run("r1", S.STARTED, end, 7.0, [note("r1", "last step event")])

    assert won
    assert not await store.end_run("r1", S.STARTED, end, 8.0)  # ended once
    *_, last, final = await store.get_events("r1")
    assert last.message == "last step event"
    assert (final.event_type, final.message) == (E.RUN_FAILURE, "failed: a")
    assert final.data == {"reason": "step_failure", "by": "worker"}
    stored = await store.get_run("r1")
    assert (stored.status, stored.end_time) == (S.FAILURE, 7.0)


def test_an_end_must_be_terminal() -> None:
    with pytest.raises(errors.InvalidTransition):
        runs.RunEnd(S.STARTED, "not an end")


async def test_a_cancel_ends_a_run_that_never_launched_at_once(store: sql.SqlStore) -> None:
    await store.add_run(make_run("r1", status=S.QUEUED))

    run = await store.request_cancel("r1", 4.0)

    assert run.status is S.CANCELED
    [*_, end] = await store.get_events("r1")
    assert (end.event_type, end.data) == (E.RUN_CANCELED, {"reason": "canceled"})


async def test_a_cancel_of_a_launched_run_asks_its_worker(store: sql.SqlStore) -> None:
    await claimed(store)

    assert (await store.request_cancel("r1", 4.0)).status is S.CANCELING
    assert (await store.request_cancel("r1", 5.0)).status is S.CANCELING  # no second event
    assert [e.event_type for e in await store.get_events("r1")] == [E.RUN_STARTING, E.RUN_CANCELING]
    with pytest.raises(errors.UnknownRun):
        await store.request_cancel("nope", 5.0)


def everything(queued: Sequence[runs.Run], in_flight: object) -> list[str]:
    return [run.run_id for run in queued]


async def test_a_launch_given_back_is_queued_again_once_and_due_later(store: sql.SqlStore) -> None:
    await store.add_runs([make_run("r1", status=S.QUEUED)])
    [run] = await store.claim_queued_runs(everything, 2.0, "d1")

    assert not await store.requeue_launch("r1", "another token", 3.0, 8.0, note("r1"))
    assert await store.requeue_launch("r1", run.launch_token, 3.0, 8.0, note("r1", "back"))
    assert not await store.requeue_launch("r1", run.launch_token, 3.0, 8.0, note("r1"))

    back = await store.get_run("r1")
    assert (back.status, back.claimed_by, back.not_before) == (S.QUEUED, None, 8.0)
    assert await store.claim_queued_runs(everything, 7.0, "d1") == []
    [again] = await store.claim_queued_runs(everything, 8.0, "d2")
    assert again.launch_token not in (None, run.launch_token)
    assert [e.message for e in await store.get_events("r1", event_types=[E.ENGINE])] == ["back"]


async def test_a_recorded_launch_is_never_given_back(store: sql.SqlStore) -> None:
    run = await claimed(store)
    await store.record_launches([storage.Launch("r1", run.launch_token, {"pid": 1})], 3.0)

    assert not await store.requeue_launch("r1", run.launch_token, 4.0, 9.0, note("r1"))
    assert (await store.get_run("r1")).status is S.STARTING
    with pytest.raises(errors.UnknownRun):
        await store.requeue_launch("nope", None, 4.0, 9.0, note("nope"))
