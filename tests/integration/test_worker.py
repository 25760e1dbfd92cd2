"""The run worker in this process against a real store: subsets, resume, bad code."""

from __future__ import annotations

import dataclasses
import io
import pathlib
import time
import uuid

import pytest

from vigil import blobs, errors, events, executors, runs, storage
from vigil.config import settings as settings_mod
from vigil.executors import outputs
from vigil.worker import patience, worker

JOBS = pathlib.Path(__file__).with_name("jobs.py")
S = runs.RunStatus
E = events.EventType


def settings_for(
    home: pathlib.Path, location: pathlib.Path = JOBS
) -> settings_mod.InstanceSettings:
    loc = settings_mod.CodeLocationSettings(name="it", file=location)
    return settings_mod.InstanceSettings(home=home, workspace=(loc,))


def new_run(status: runs.RunStatus = S.STARTING, **fields: object) -> runs.Run:
    run_id = str(uuid.uuid4())
    now = time.time()
    base = runs.Run(
        run_id=run_id,
        job_name="abc",
        status=status,
        code_location="it",
        root_run_id=run_id,
        created_at=now,
        updated_at=now,
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


async def execute(
    store: storage.Store,
    settings: settings_mod.InstanceSettings,
    run: runs.Run,
    resume: bool = False,
) -> runs.RunStatus:
    env = worker.WorkerEnv(
        settings=settings,
        store=store,
        executor=executors.InProcessExecutor(),
        base_dir=settings.home,
    )
    return await worker.run_worker(env, run.run_id, resume=resume)


async def started_steps(store: storage.Store, run_id: str) -> list[str | None]:
    return [e.step for e in await store.get_events(run_id, event_types=(E.STEP_START,))]


def stored_output(tmp_path: pathlib.Path, run_id: str, step: str) -> object:
    """A stored output, read by the digest its file has (the worker under test wrote it)."""
    kept = outputs.PickleOutputStore(blobs.LocalRoot(tmp_path / "storage"))
    return kept.get(run_id, step, kept.digest(run_id, step))


async def test_a_run_goes_from_starting_to_success(
    store: storage.Store, tmp_path: pathlib.Path
) -> None:
    run = new_run()
    await store.add_run(run)
    assert await execute(store, settings_for(tmp_path), run) is S.SUCCESS
    stored = await store.get_run(run.run_id)
    assert stored.status is S.SUCCESS
    assert stored.worker_pid is not None
    assert stored.start_time is not None
    assert stored.end_time is not None
    assert await started_steps(store, run.run_id) == ["a", "b", "c"]
    assert stored_output(tmp_path, run.run_id, "c") == 20


async def test_a_subset_reuses_the_parents_outputs(
    store: storage.Store, tmp_path: pathlib.Path
) -> None:
    settings = settings_for(tmp_path)
    parent = new_run(run_config={"steps": {"c": {"fail": True}}})
    await store.add_run(parent)
    assert await execute(store, settings, parent) is S.FAILURE

    child = new_run(parent_run_id=parent.run_id, root_run_id=parent.run_id, step_selection=("c",))
    await store.add_run(child)
    assert await execute(store, settings, child) is S.SUCCESS
    assert await started_steps(store, child.run_id) == ["c"]
    assert stored_output(tmp_path, child.run_id, "c") == 20


async def test_resume_skips_the_steps_that_succeeded(
    store: storage.Store, tmp_path: pathlib.Path
) -> None:
    settings = settings_for(tmp_path)
    run = new_run(status=S.STARTED)
    await store.add_run(run)
    kept = outputs.PickleOutputStore(blobs.LocalRoot(tmp_path / "storage"))
    digests = {"a": kept.put(run.run_id, "a", 5).digest, "b": kept.put(run.run_id, "b", 6).digest}
    now = time.time()
    recorded = [
        event
        for s in ("a", "b")
        for event in (
            events.NewEvent(run.run_id, E.STEP_OUTPUT, now, step=s, data={"digest": digests[s]}),
            events.NewEvent(run.run_id, E.STEP_SUCCESS, now, step=s),
        )
    ]
    await store.append_events(recorded)
    assert await execute(store, settings, run, resume=True) is S.SUCCESS
    assert await started_steps(store, run.run_id) == ["c"]
    assert stored_output(tmp_path, run.run_id, "c") == 60


async def test_resume_takes_a_step_whose_output_is_stored_as_done(
    store: storage.Store, tmp_path: pathlib.Path
) -> None:
    # The worker died after step b wrote its output, before its events were written (they
    # go with the run's end): b is not run again.
    settings = settings_for(tmp_path)
    run = new_run(status=S.STARTED)
    await store.add_run(run)
    kept = outputs.PickleOutputStore(blobs.LocalRoot(tmp_path / "storage"))
    kept.put(run.run_id, "a", 5)
    kept.put(run.run_id, "b", 6)
    success = events.NewEvent(run.run_id, E.STEP_SUCCESS, time.time(), step="a")
    await store.append_events([success])
    assert await execute(store, settings, run, resume=True) is S.SUCCESS
    assert await started_steps(store, run.run_id) == ["c"]
    recovered = await store.get_events(run.run_id, event_types=(E.STEP_SUCCESS,))
    assert [e.step for e in recovered if e.data.get("recovered")] == ["b"]


async def test_a_location_that_fails_to_load_fails_the_run(
    store: storage.Store, tmp_path: pathlib.Path
) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import vigil\nraise RuntimeError('boom at import')\n")
    run = new_run()
    await store.add_run(run)
    assert await execute(store, settings_for(tmp_path, broken), run) is S.FAILURE
    failure = await store.get_events(run.run_id, event_types=(E.RUN_FAILURE,))
    assert len(failure) == 1
    assert "broken.py:2: RuntimeError: boom at import" in failure[0].message


async def test_a_run_canceled_before_its_worker_started_ends_canceled(
    store: storage.Store, tmp_path: pathlib.Path
) -> None:
    run = new_run()
    await store.add_run(run)
    assert await store.transition_run(run.run_id, S.STARTING, S.CANCELING, time.time())
    assert await execute(store, settings_for(tmp_path), run) is S.CANCELED
    assert await started_steps(store, run.run_id) == []


async def test_an_ended_run_is_never_restarted(
    store: storage.Store, tmp_path: pathlib.Path
) -> None:
    run = new_run()
    await store.add_run(run)
    settings = settings_for(tmp_path)
    assert await execute(store, settings, run) is S.SUCCESS
    assert await execute(store, settings, run) is S.SUCCESS
    assert await started_steps(store, run.run_id) == ["a", "b", "c"]


async def test_a_cancel_that_wins_the_race_to_the_end_keeps_every_step_event(
    store: storage.Store, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cancel lands between the last step and the run's end: the end, which carries the
    # last step events, loses its transition; those events must still be written.
    run = new_run()
    await store.add_run(run)
    end_run = store.end_run

    async def cancel_first(
        run_id: str,
        expected: object,
        end: runs.RunEnd,
        now: float,
        *args: object,
        **kwargs: object,
    ) -> bool:
        if end.status is S.SUCCESS:
            assert (await store.request_cancel(run_id, now)).status is S.CANCELING
        return await end_run(run_id, expected, end, now, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "end_run", cancel_first)

    assert await execute(store, settings_for(tmp_path), run) is S.CANCELED
    kinds = [(e.event_type, e.step) for e in await store.get_events(run.run_id)]
    assert [step for kind, step in kinds if kind is E.STEP_SUCCESS] == ["a", "b", "c"]
    assert (E.RUN_SUCCESS, None) not in kinds
    assert kinds[-1] == (E.RUN_CANCELED, None)


PARTITIONED = pathlib.Path(__file__).with_name("partitioned_jobs.py")


@pytest.mark.parametrize("executor", [executors.InProcessExecutor, executors.MultiprocessExecutor])
@pytest.mark.parametrize(
    ("job_name", "key", "seen"),
    [
        (
            "daily",
            "2026-03-08",
            ("2026-03-08", "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"),
        ),
        ("regional", "eu", ("eu", None, None)),
        ("plain", None, (None, None, None)),
    ],
)
async def test_steps_read_the_runs_partition(
    store: storage.Store,
    tmp_path: pathlib.Path,
    executor: type[executors.InProcessExecutor],
    job_name: str,
    key: str | None,
    seen: tuple[str | None, ...],
) -> None:
    tags = {} if key is None else {runs.TAG_PARTITION: key}
    run = new_run(job_name=job_name, tags=tags)
    await store.add_run(run)
    settings = settings_for(tmp_path, PARTITIONED)
    env = worker.WorkerEnv(
        settings=settings, store=store, executor=executor(), base_dir=settings.home
    )
    assert await worker.run_worker(env, run.run_id) is S.SUCCESS
    assert stored_output(tmp_path, run.run_id, "seen") == seen


@pytest.mark.parametrize(
    ("job_name", "key", "message"),
    [
        ("daily", "2026-02-30", "job 'daily': partition '2026-02-30' is not a key of daily"),
        ("plain", "eu", "run tag vigil/partition='eu': job 'plain' has no partitions"),
    ],
)
async def test_a_run_with_a_bad_partition_fails_saying_why(
    store: storage.Store, tmp_path: pathlib.Path, job_name: str, key: str, message: str
) -> None:
    run = new_run(job_name=job_name, tags={runs.TAG_PARTITION: key})
    await store.add_run(run)
    assert await execute(store, settings_for(tmp_path, PARTITIONED), run) is S.FAILURE
    failure = await store.get_events(run.run_id, event_types=(E.RUN_FAILURE,))
    assert message in failure[0].message
    assert await started_steps(store, run.run_id) == []


async def test_an_end_whose_commit_was_not_acknowledged_writes_its_events_once(
    store: storage.Store, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The connection drops while the end commits (a server restarted at that moment): the
    # end and the last step events it carries are written, but the worker is told the store
    # is unreachable and retries. The retry finds the run no longer STARTED; the events it
    # carried were then written a second time (seen in the database faults test).
    run = new_run()
    await store.add_run(run)
    end_run = store.end_run
    dropped: list[str] = []

    async def commit_then_drop(
        run_id: str,
        expected: object,
        end: runs.RunEnd,
        now: float,
        *args: object,
        **kwargs: object,
    ) -> bool:
        ended = await end_run(run_id, expected, end, now, *args, **kwargs)  # type: ignore[arg-type]
        if not dropped:
            dropped.append(run_id)
            raise errors.StoreUnavailable("connection was closed in the middle of operation")
        return ended

    monkeypatch.setattr(store, "end_run", commit_then_drop)
    settings = settings_for(tmp_path)
    env = worker.WorkerEnv(
        settings=settings,
        store=patience.PatientStore(store, log=io.StringIO()),
        executor=executors.InProcessExecutor(),
        base_dir=settings.home,
    )

    assert await worker.run_worker(env, run.run_id) is S.SUCCESS
    kinds = [(e.event_type, e.step) for e in await store.get_events(run.run_id)]
    assert dropped == [run.run_id]
    assert [step for kind, step in kinds if kind is E.STEP_SUCCESS] == ["a", "b", "c"], kinds
    assert [kind for kind, _ in kinds].count(E.RUN_SUCCESS) == 1, kinds
