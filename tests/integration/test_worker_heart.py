"""The run worker's heartbeat against a real store (SQLite and PostgreSQL): it beats through
a long step, rides out a store that refuses its beats, and stops its steps once its run was
given to another worker."""

from __future__ import annotations

import io
import pathlib
import time

import anyio
import pytest

from tests.integration.test_worker import new_run, settings_for
from tests.waiting import eventually
from vigil import errors, events, executors, runs, storage
from vigil.config import settings as settings_mod
from vigil.worker import heart, patience, worker

S = runs.RunStatus
E = events.EventType


def beating_env(store: storage.Store, home: pathlib.Path, token: str | None) -> worker.WorkerEnv:
    monitoring = settings_mod.RunMonitoringSettings(worker_heartbeat_interval=0.05)
    settings = settings_for(home).model_copy(update={"run_monitoring": monitoring})
    return worker.WorkerEnv(
        settings=settings,
        store=patience.PatientStore(store, log=io.StringIO()),
        executor=executors.MultiprocessExecutor(),  # the step in a process it stops
        base_dir=home,
        token=token,
    )


async def claimed_hang(store: storage.Store) -> runs.Run:
    run = new_run(S.NOT_STARTED, job_name="hang")
    await store.add_run(run)
    claimed = await store.claim_run(run.run_id, S.NOT_STARTED, time.time(), "test")
    assert claimed is not None
    return claimed


async def test_a_worker_beats_through_a_long_step_and_stops_once_taken_over(
    store: storage.Store, tmp_path: pathlib.Path
) -> None:
    run = await claimed_hang(store)
    env = beating_env(store, tmp_path, run.launch_token)
    seen: set[float] = set()

    async def beats_moved() -> bool:
        stored = await store.get_run(run.run_id)
        if stored.worker_heartbeat is not None:
            seen.add(stored.worker_heartbeat)
        return len(seen) >= 4 and stored.status is S.STARTED

    async with anyio.create_task_group() as tg:
        ended: list[runs.RunStatus] = []
        returned = anyio.Event()

        async def work() -> None:
            ended.append(await worker.run_worker(env, run.run_id))
            returned.set()

        tg.start_soon(work)
        await eventually(beats_moved, deadline=60)
        assert await store.get_events(run.run_id, event_types=[E.STEP_START])  # in its step
        note = events.NewEvent(run.run_id, E.ENGINE, time.time(), message="taken over")
        taken = await store.resume_run(run.run_id, S.STARTED, 1, time.time(), "test", note)
        assert taken is not None
        with anyio.fail_after(60):  # the refused beat stops the step; the worker returns
            await returned.wait()

    stored = await store.get_run(run.run_id)
    assert ended == [S.STARTED]  # left as the new launch has it: not ended by the old worker
    assert taken is not None
    assert (stored.status, stored.launch_token) == (S.STARTED, taken.launch_token)
    assert stored.worker_heartbeat is None  # the old worker's beats no longer count
    ends = [E.RUN_SUCCESS, E.RUN_FAILURE, E.RUN_CANCELED]
    assert await store.get_events(run.run_id, event_types=ends) == []


class FlakyBeats:
    """A store whose heartbeats fail `outage` times (the store unreachable), then pass."""

    def __init__(self, store: storage.Store, outage: int) -> None:
        self.store = store
        self.outage = outage
        self.calls = 0
        self.written = anyio.Event()

    async def record_worker_heartbeat(
        self, run_id: str, token: str | None, now: float, batch: object = ()
    ) -> bool:
        self.calls += 1
        if self.calls <= self.outage:
            raise errors.StoreUnavailable("connection refused")
        beat = await self.store.record_worker_heartbeat(run_id, token, now)
        self.written.set()
        return beat

    async def append_events(self, batch: object) -> None:
        raise AssertionError("no events in this test")


async def test_beats_the_store_refuses_are_skipped_and_the_heart_goes_on(
    store: storage.Store, capsys: pytest.CaptureFixture[str]
) -> None:
    run = await claimed_hang(store)
    await store.start_run(run.run_id, time.time(), token=run.launch_token)
    flaky = FlakyBeats(store, outage=3)
    lost: list[bool] = []
    beating = heart.Heart(
        flaky, run.run_id, run.launch_token, time.time, 0.01, lambda: lost.append(True)
    )

    with anyio.fail_after(60):
        async with heart.beating(beating):
            await flaky.written.wait()

    assert flaky.calls >= 4  # three refused, then one written
    assert lost == []
    assert (await store.get_run(run.run_id)).worker_heartbeat is not None
    assert capsys.readouterr().err.count("a heartbeat was not written: connection refused") == 3
