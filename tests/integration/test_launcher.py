"""The subprocess launcher and the immediate coordinator with real worker processes."""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import psutil
import pytest

from tests import waiting
from tests.acceptance.harness import base_env, store_yaml
from tests.integration import test_worker
from vigil import assembly, coordinators, errors, events, launchers, runs, storage, submission
from vigil.config import loader

S = runs.RunStatus
H = launchers.WorkerHealth
REPO = pathlib.Path(__file__).resolve().parents[2]


class Wired:
    """A store, the configured launcher and the immediate coordinator on one instance."""

    def __init__(self, store: storage.Store, launcher: launchers.RunLauncher) -> None:
        self.store = store
        self.launcher = launcher
        self.coordinator = coordinators.ImmediateCoordinator(
            coordinators.RunCoordinator.Options(), store, launcher, time.time
        )

    async def wait_for(self, run_id: str, status: runs.RunStatus) -> runs.Run:
        async def reached() -> bool:
            return (await self.store.get_run(run_id)).status is status

        await waiting.eventually(reached)
        return await self.store.get_run(run_id)


@pytest.fixture(
    params=[
        pytest.param(("sqlite", True), id="sqlite-prefork"),
        pytest.param(("sqlite", False), id="sqlite-popen"),
        pytest.param(("postgres", True), id="postgres-prefork", marks=pytest.mark.postgres),
    ]
)
def home(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> pathlib.Path:
    kind, prefork = request.param
    url = None if kind == "sqlite" else request.getfixturevalue("postgres_database")
    (tmp_path / "vigil.yaml").write_text(
        f"workspace:\n  - name: it\n    file: {test_worker.JOBS}\n"
        f"run_launcher:\n  type: subprocess\n  options:\n    prefork: {str(prefork).lower()}\n"
        + store_yaml(url)
    )
    return tmp_path


@pytest.fixture
async def wired(home: pathlib.Path) -> AsyncIterator[Wired]:
    tmp_path = home
    settings = loader.load_settings(tmp_path)
    ctx = assembly.launch_context(settings, base_env(tmp_path), REPO)
    launcher = assembly.build_launcher(settings, ctx)
    store = await storage.open_store(loader.store_target(settings))
    yield Wired(store, launcher)
    await launcher.close()
    await store.close()


async def test_launch_runs_the_worker_to_success(wired: Wired) -> None:
    run = await wired.coordinator.submit(test_worker.new_run(status=S.NOT_STARTED))
    info = run.launcher_info
    assert info["launcher"] == "subprocess"
    assert info["pid"] > 0
    assert info["process_start_time"] is not None
    done = await wired.wait_for(run.run_id, S.SUCCESS)
    assert done.worker_pid == info["pid"]
    kinds = [e.event_type for e in await wired.store.get_events(run.run_id)]
    assert kinds[0] is events.EventType.RUN_STARTING
    assert kinds[-1] is events.EventType.RUN_SUCCESS


async def test_health_follows_the_worker_and_terminate_cancels(wired: Wired) -> None:
    run = await wired.coordinator.submit(test_worker.new_run(status=S.NOT_STARTED, job_name="hang"))
    started = await wired.wait_for(run.run_id, S.STARTED)
    assert (await wired.launcher.check_worker_health(started)).health is H.RUNNING

    canceled = await wired.coordinator.cancel(run.run_id)
    assert canceled.status in (S.CANCELING, S.CANCELED)
    await wired.wait_for(run.run_id, S.CANCELED)

    async def dead() -> bool:
        return (await wired.launcher.check_worker_health(started)).health is H.DEAD

    await waiting.eventually(dead, deadline=10)
    assert not await wired.launcher.terminate(started)


async def test_a_reused_pid_is_not_taken_for_the_worker(wired: Wired) -> None:
    me = psutil.Process(os.getpid())
    alive = test_worker.new_run(launcher_info=_info(os.getpid(), me.create_time()))
    reused = test_worker.new_run(launcher_info=_info(os.getpid(), me.create_time() - 100))
    assert (await wired.launcher.check_worker_health(alive)).health is H.RUNNING
    assert (await wired.launcher.check_worker_health(reused)).health is H.DEAD
    assert not await wired.launcher.terminate(reused)


async def test_another_hosts_worker_is_unknown_not_dead(wired: Wired) -> None:
    info = {**_info(os.getpid(), None), "host": "elsewhere.invalid"}
    check = await wired.launcher.check_worker_health(test_worker.new_run(launcher_info=info))
    assert check.health is H.UNKNOWN


async def test_cancel_before_launch_ends_canceled_at_once(wired: Wired) -> None:
    run = test_worker.new_run(status=S.NOT_STARTED)
    await wired.store.add_run(run)
    assert (await wired.coordinator.cancel(run.run_id)).status is S.CANCELED


class FailingLauncher(launchers.RunLauncher):
    async def launch(self, run: runs.Run) -> Mapping[str, Any]:
        raise errors.LaunchError("no capacity left on the launcher")

    async def terminate(self, run: runs.Run) -> bool:
        return False

    async def check_worker_health(self, run: runs.Run) -> launchers.HealthCheck:
        return launchers.HealthCheck(H.UNKNOWN)


async def test_a_failed_launch_fails_the_run_with_the_reason(wired: Wired) -> None:
    failing = FailingLauncher(FailingLauncher.Options(), wired.launcher.context)
    coordinator = coordinators.ImmediateCoordinator(
        coordinators.RunCoordinator.Options(), wired.store, failing, time.time
    )
    run = test_worker.new_run(status=S.NOT_STARTED)
    with pytest.raises(errors.LaunchError):
        await coordinator.submit(run)
    stored = await wired.store.get_run(run.run_id)
    assert stored.status is S.FAILURE
    failure = await wired.store.get_events(run.run_id, event_types=(events.EventType.RUN_FAILURE,))
    assert [e.message for e in failure] == ["no capacity left on the launcher"]


async def test_wait_for_end_returns_the_final_run(wired: Wired) -> None:
    run = await wired.coordinator.submit(test_worker.new_run(status=S.NOT_STARTED))
    with anyio.fail_after(30):
        final = await submission.wait_for_end(wired.store, run.run_id)
    assert final.status is S.SUCCESS


def _info(pid: int, started: float | None) -> dict[str, Any]:
    return {
        "launcher": "subprocess",
        "host": os.uname().nodename,
        "pid": pid,
        "process_start_time": started,
    }


async def test_a_canceling_run_whose_worker_is_gone_ends_canceled(wired: Wired) -> None:
    gone = _info(os.getpid(), psutil.Process(os.getpid()).create_time() - 100)
    run = test_worker.new_run(status=S.STARTED, launcher_info=gone)
    await wired.store.add_run(run)
    assert (await wired.coordinator.cancel(run.run_id)).status is S.CANCELED
    ended = await wired.store.get_events(run.run_id, event_types=(events.EventType.RUN_CANCELED,))
    assert [e.message for e in ended] == ["no live worker"]


async def test_settle_cancel_ends_a_run_whose_worker_died_while_canceling(wired: Wired) -> None:
    run = await wired.coordinator.submit(test_worker.new_run(status=S.NOT_STARTED, job_name="hang"))
    started = await wired.wait_for(run.run_id, S.STARTED)
    assert await wired.store.transition_run(run.run_id, S.STARTED, S.CANCELING, time.time())
    assert (await wired.coordinator.settle_cancel(run.run_id)).status is S.CANCELING  # alive
    psutil.Process(started.launcher_info["pid"]).kill()

    async def settled() -> bool:
        return (await wired.coordinator.settle_cancel(run.run_id)).status is S.CANCELED

    await waiting.eventually(settled, deadline=10)
    ended = await wired.store.get_events(run.run_id, event_types=(events.EventType.RUN_CANCELED,))
    assert len(ended) == 1
    assert ended[0].message.startswith("worker gone before it ended the run")


async def _output_locator(wired: Wired, run_id: str) -> str:
    outputs = await wired.store.get_events(run_id, event_types=(events.EventType.STEP_OUTPUT,))
    return str(outputs[0].data["locator"])


async def test_workers_follow_vigil_yaml_as_it_changes(wired: Wired, home: pathlib.Path) -> None:
    config = home / "vigil.yaml"
    original = config.read_text()
    first = await wired.coordinator.submit(test_worker.new_run(status=S.NOT_STARTED))
    await wired.wait_for(first.run_id, S.SUCCESS)
    assert (await _output_locator(wired, first.run_id)).startswith(str(home / "storage"))

    config.write_text(original + f"storage_dir: {home / 'elsewhere'}\n")
    moved = await wired.coordinator.submit(test_worker.new_run(status=S.NOT_STARTED))
    await wired.wait_for(moved.run_id, S.SUCCESS)
    assert (await _output_locator(wired, moved.run_id)).startswith(str(home / "elsewhere"))

    config.write_text(original + "store:\n  busy_timeout: -1\n")
    refused = await wired.coordinator.submit(test_worker.new_run(status=S.NOT_STARTED))

    async def worker_gone() -> bool:
        stored = await wired.store.get_run(refused.run_id)
        return (await wired.launcher.check_worker_health(stored)).health is H.DEAD

    await waiting.eventually(worker_gone, deadline=30)
    log = await anyio.Path(refused.launcher_info["log"]).read_text()
    assert "store.busy_timeout" in log
    assert (await wired.store.get_run(refused.run_id)).status is S.STARTING

    config.write_text(original)
    again = await wired.coordinator.submit(test_worker.new_run(status=S.NOT_STARTED))
    await wired.wait_for(again.run_id, S.SUCCESS)
    assert (await _output_locator(wired, again.run_id)).startswith(str(home / "storage"))


async def _started_hang(wired: Wired) -> runs.Run:
    run = await wired.coordinator.submit(test_worker.new_run(status=S.NOT_STARTED, job_name="hang"))
    return await wired.wait_for(run.run_id, S.STARTED)


async def test_a_killed_worker_is_told_at_once_with_its_signal(wired: Wired) -> None:
    started = await _started_hang(wired)
    told = anyio.Event()

    async def listen() -> None:
        await wired.launcher.wait_for_exits()
        told.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        await anyio.wait_all_tasks_blocked()
        psutil.Process(started.launcher_info["pid"]).kill()
        with anyio.fail_after(10):
            await told.wait()
    check = await wired.launcher.check_worker_health(started)
    assert check.health is H.DEAD
    assert check.detail == f"worker pid {started.launcher_info['pid']} was killed by signal SIGKILL"


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_the_step_process_of_a_killed_worker_dies_with_it(wired: Wired) -> None:
    started = await _started_hang(wired)
    worker = psutil.Process(started.launcher_info["pid"])

    async def step_running() -> bool:
        return bool(worker.children())

    await waiting.eventually(step_running, deadline=10)
    step_pid = worker.children()[0].pid
    worker.kill()

    async def orphan_gone() -> bool:
        return _gone(step_pid)

    await waiting.eventually(orphan_gone, deadline=10)


async def test_kill_stops_a_worker_at_once(wired: Wired) -> None:
    started = await _started_hang(wired)
    assert await wired.launcher.kill(started)

    async def dead() -> bool:
        return (await wired.launcher.check_worker_health(started)).health is H.DEAD

    await waiting.eventually(dead, deadline=10)
    assert not await wired.launcher.kill(started)
