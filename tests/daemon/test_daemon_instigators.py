"""The scheduler and sensor loops in a real `vigil daemon run`, with real evaluation processes.

A daemon SIGKILLed in the middle of a tick completes that tick after a restart, with the
runs it had already submitted and nothing twice; sensors that raise, hang past their
timeout or whose code location stops importing fail their own ticks while the others go
on; cursors and run keys hold across restarts.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import pathlib
import shutil
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psutil

from tests.acceptance.harness import IMMEDIATE, REPO, Instance
from tests.daemon.process import Daemons
from tests.waiting import eventually
from vigil import storage, ticks
from vigil.config import loader

T = ticks.TickStatus
K = ticks.InstigatorKind
HERE = REPO / "tests" / "daemon"
STALLING = "tests.plugins.stalling_launcher:StallingLauncher"


def configure(
    instance: Instance, tmp_path: pathlib.Path, stall_marker: pathlib.Path | None
) -> None:
    """Our code locations, the stalling launcher (stalling on run keys ending /b if asked)."""
    text = (instance.home / "vigil.yaml").read_text()
    store_section = text[text.index("store:") :] if "store:" in text else ""
    other = tmp_path / "other_instigators.py"
    if not other.exists():
        shutil.copy(HERE / "other_instigators.py", other)
    stall = f"    stall_on_key_suffix: /b\n    marker: {stall_marker}\n" if stall_marker else ""
    instance.write_config(
        "workspace:\n"
        f"  - name: instigators\n    file: {HERE / 'instigators.py'}\n"
        f"  - name: other\n    file: {other}\n"
        f"{IMMEDIATE}"
        f"run_launcher:\n  type: {STALLING}\n  options:\n{stall or '    {}'}\n"
        "scheduling:\n  poll_interval: 0.3\n"
        "daemon:\n  heartbeat_interval: 0.3\n  shutdown_grace: 5\n"
        "http:\n  enabled: false\n" + store_section
    )


@asynccontextmanager
async def opened(instance: Instance) -> AsyncIterator[storage.Store]:
    settings = loader.load_settings(instance.home)
    store = await storage.open_store(loader.store_target(settings))
    try:
        yield store
    finally:
        await store.close()


async def set_status(
    instance: Instance, name: str, status: ticks.InstigatorStatus, now: float = 0.0
) -> None:
    kind, _ = ticks.split_id(name)
    async with opened(instance) as store:
        await store.set_instigator_status(name, kind, status, now=now)


async def ticks_of(instance: Instance, name: str) -> list[ticks.Tick]:
    async with opened(instance) as store:
        return list(reversed(await store.list_ticks(name)))


async def wait_until_stale(instance: Instance) -> None:
    """Until the killed daemon's heartbeats are too old to count (else a restart refuses)."""

    async def stale() -> bool:
        async with opened(instance) as store:
            beats = await store.list_heartbeats()
        return all(time.time() - beat.last_heartbeat > 1.5 for beat in beats)

    await eventually(stale, 30.0)


async def wait_for_ticks(
    instance: Instance, name: str, enough: int, status: ticks.TickStatus | None = None
) -> list[ticks.Tick]:
    found: list[ticks.Tick] = []

    async def reached() -> bool:
        nonlocal found
        found = await ticks_of(instance, name)
        return len([t for t in found if status is None or t.status is status]) >= enough

    await eventually(reached, 90.0)
    return found


async def test_a_daemon_killed_mid_tick_completes_it_without_duplicating_a_run(
    instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    marker = tmp_path / "stalled"
    configure(instance, tmp_path, stall_marker=marker)
    env = {"INSTIGATOR_DIR": str(tmp_path)}
    first = daemons.start(env=env)

    async def stalled() -> bool:
        return marker.exists()

    await eventually(stalled, 60.0)
    first.send(signal.SIGKILL)
    await first.exit_code()
    async with opened(instance) as store:
        listed = await store.list_ticks("schedule:pair")
        # A slow start may have recorded earlier ticks MISSED (catch-up: latest).
        [interrupted] = [t for t in listed if t.status is not T.MISSED]
        before = {r.run_key: r.run_id for r in await store.instigator_runs("schedule:pair")}
    assert interrupted.status is T.STARTED
    prefix = _key_prefix(interrupted)
    assert sorted(before) == [f"{prefix}/a", f"{prefix}/b"]

    configure(instance, tmp_path, stall_marker=None)
    await wait_until_stale(instance)
    second = daemons.start(env=env)
    await wait_for_ticks(instance, "schedule:pair", 2, T.SUCCESS)
    await set_status(instance, "schedule:pair", ticks.InstigatorStatus.STOPPED)
    await second.logged("daemon.started")
    second.send(signal.SIGTERM)
    assert await second.exit_code() == 0

    async with opened(instance) as store:
        finished = await store.list_ticks("schedule:pair")
        all_runs = await store.instigator_runs("schedule:pair")
    by_id = {t.tick_id: t for t in finished}
    completed = by_id[interrupted.tick_id]
    assert completed.status is T.SUCCESS
    assert sorted(completed.run_ids) == sorted(before.values())
    assert not [t for t in finished if t.status is T.STARTED]
    submitted = [run_id for t in finished for run_id in t.run_ids]
    assert len(submitted) == len(set(submitted)) == len(all_runs)
    assert sorted(submitted) == sorted(r.run_id for r in all_runs)
    assert len({t.scheduled_time for t in finished}) == len(finished)


def _key_prefix(tick: ticks.Tick) -> str:
    moment = datetime.datetime.fromtimestamp(tick.scheduled_time, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_sensors_that_raise_or_hang_fail_alone_and_cursors_hold_across_restarts(
    sqlite_instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    instance = sqlite_instance
    configure(instance, tmp_path, stall_marker=None)
    for name in ("sensor:counting", "sensor:raising", "sensor:hanging"):
        await set_status(instance, name, ticks.InstigatorStatus.RUNNING)
    await set_status(instance, "schedule:pair", ticks.InstigatorStatus.STOPPED)
    env = {"INSTIGATOR_DIR": str(tmp_path)}
    first = daemons.start(env=env)

    [raised] = (await wait_for_ticks(instance, "sensor:raising", 1, T.FAILED))[:1]
    assert raised.error is not None
    assert "Traceback" in raised.error
    assert "RuntimeError: sensor exploded" in raised.error
    hung = [t for t in await wait_for_ticks(instance, "sensor:hanging", 1, T.FAILED) if t.error]
    assert hung[0].error == "timed out after 1 s"
    hang_ended = hung[0].updated_at

    async def counted_after_the_hang() -> bool:
        found = await ticks_of(instance, "sensor:counting")
        return any(t.created_at > hang_ended and t.status.is_final for t in found)

    await eventually(counted_after_the_hang, 60.0)
    await wait_for_ticks(instance, "sensor:counting", 4)
    first.send(signal.SIGTERM)
    assert await first.exit_code() == 0

    async with opened(instance) as store:
        [state] = await store.list_instigators(["sensor:counting"])
        done = [t for t in await ticks_of(instance, "sensor:counting") if t.status is not T.FAILED]
    assert state.cursor == str(len(done))

    second = daemons.start(env=env)
    await wait_for_ticks(instance, "sensor:counting", len(done) + 3)
    second.send(signal.SIGTERM)
    assert await second.exit_code() == 0

    counting = [t for t in await ticks_of(instance, "sensor:counting") if t.status is not T.FAILED]
    assert [t.cursor for t in counting] == [str(i + 1) for i in range(len(counting))]
    async with opened(instance) as store:
        made = await store.instigator_runs("sensor:counting")
    keys = sorted(r.run_key or "" for r in made)
    assert keys == sorted(f"k{i}" for i in range(0, len(counting), 2))
    assert [t.status for t in counting[:4]] == [T.SUCCESS, T.SKIPPED, T.SUCCESS, T.SKIPPED]


async def test_a_location_that_stops_importing_fails_only_its_own_ticks(
    sqlite_instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    instance = sqlite_instance
    configure(instance, tmp_path, stall_marker=None)
    for name in ("sensor:counting", "sensor:elsewhere"):
        await set_status(instance, name, ticks.InstigatorStatus.RUNNING)
    await set_status(instance, "schedule:pair", ticks.InstigatorStatus.STOPPED)
    daemon = daemons.start(env={"INSTIGATOR_DIR": str(tmp_path)})
    await wait_for_ticks(instance, "sensor:elsewhere", 1, T.SKIPPED)

    (tmp_path / "other_instigators.py").write_text("import vigil_missing_module_xyz\n")
    daemon.send(signal.SIGHUP)
    failed = await wait_for_ticks(instance, "sensor:elsewhere", 1, T.FAILED)
    broken = next(t for t in failed if t.status is T.FAILED)
    assert broken.error is not None
    assert "code location 'other' failed to load" in broken.error
    assert "vigil_missing_module_xyz" in broken.error
    counting = await ticks_of(instance, "sensor:counting")
    await wait_for_ticks(instance, "sensor:counting", len(counting) + 2)
    assert all(t.status is not T.FAILED for t in await ticks_of(instance, "sensor:counting"))

    check = instance.vigil("definitions", "check")
    assert check.returncode == 2
    assert "vigil_missing_module_xyz" in check.stderr
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0


HANGING_IMPORT = "import threading\n\nthreading.Event().wait()\n"


def _evaluation_children(daemon_pid: int, location: str) -> list[psutil.Process]:
    """The daemon's evaluation processes of one code location (its name is in their spec)."""
    children = psutil.Process(daemon_pid).children(recursive=True)
    found = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            command = " ".join(child.cmdline())
            if "vigil.evaluation.child" in command and f'"name": "{location}"' in command:
                found.append(child)
    return found


async def test_a_location_that_hangs_on_import_holds_back_no_schedule(
    sqlite_instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    """Reloaded onto a file whose import never ends, the location waits alone: the other
    location's per-second schedule keeps ticking on time, nothing is MISSED, and a reload
    back to the good file kills the hung process and brings the location back."""
    instance = sqlite_instance
    configure(instance, tmp_path, stall_marker=None)
    await set_status(instance, "schedule:every_second", ticks.InstigatorStatus.RUNNING, time.time())
    await set_status(instance, "sensor:elsewhere", ticks.InstigatorStatus.RUNNING)
    await set_status(instance, "schedule:pair", ticks.InstigatorStatus.STOPPED)
    daemon = daemons.start(env={"INSTIGATOR_DIR": str(tmp_path)})
    await wait_for_ticks(instance, "sensor:elsewhere", 1, T.SKIPPED)
    good_text = (tmp_path / "other_instigators.py").read_text()

    (tmp_path / "other_instigators.py").write_text(HANGING_IMPORT)
    daemon.send(signal.SIGHUP)

    async def hung() -> bool:
        return bool(_evaluation_children(daemon.pid, "other"))

    await eventually(hung, 60.0)
    hung_pids = [p.pid for p in _evaluation_children(daemon.pid, "other")]
    before = len(await ticks_of(instance, "schedule:every_second"))
    skipped_before = len(
        [t for t in await ticks_of(instance, "schedule:every_second") if t.status is T.SKIPPED]
    )
    after = await wait_for_ticks(instance, "schedule:every_second", skipped_before + 10, T.SKIPPED)
    assert _evaluation_children(daemon.pid, "other"), "the hung load ended early"

    # Evaluated all along: a late iteration may record a second's tick MISSED (catch-up
    # policy none, on a loaded machine), but the schedule never waits for the hung
    # location (before, every iteration waited up to the load timeout of 120 s).
    evaluated = [t.scheduled_time for t in after[before:] if t.status is T.SKIPPED]
    gaps = [b - a for a, b in itertools.pairwise(evaluated)]
    assert max(gaps) < 20.0, gaps
    assert all(t.status in (T.SKIPPED, T.MISSED) for t in after[before:])

    (tmp_path / "other_instigators.py").write_text(good_text)
    daemon.send(signal.SIGHUP)
    elsewhere = len(await ticks_of(instance, "sensor:elsewhere"))
    await wait_for_ticks(instance, "sensor:elsewhere", elsewhere + 1, T.SKIPPED)
    assert not any(psutil.pid_exists(pid) and _alive(pid) for pid in hung_pids)
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0


def _alive(pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return False


STUCK_LOCATION = """
import threading

from vigil import Definitions, SkipReason, job, schedule, sensor, step


@step
def other_noop() -> None:
    return None


other_job = job("other_noop", [other_noop])


@schedule(cron="* * * * * *", job=other_job, timeout=600)
def stuck_schedule() -> SkipReason:
    threading.Event().wait()
    return SkipReason("never")


@sensor(job=other_job, minimum_interval=0.3, timeout=600)
def elsewhere() -> SkipReason:
    threading.Event().wait()
    return SkipReason("never")


defs = Definitions(jobs=[other_job], schedules=[stuck_schedule], sensors=[elsewhere])
"""


async def test_an_evaluation_that_hangs_holds_back_only_its_own_location(
    sqlite_instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    """A schedule and a sensor of one location hang inside their function (their timeout is
    10 minutes): the schedules and sensors of the other location go on ticking meanwhile."""
    instance = sqlite_instance
    configure(instance, tmp_path, stall_marker=None)
    (tmp_path / "other_instigators.py").write_text(STUCK_LOCATION)
    now = time.time()
    for name in ("schedule:every_second", "schedule:stuck_schedule"):
        await set_status(instance, name, ticks.InstigatorStatus.RUNNING, now)
    for name in ("sensor:counting", "sensor:elsewhere"):
        await set_status(instance, name, ticks.InstigatorStatus.RUNNING, now)
    await set_status(instance, "schedule:pair", ticks.InstigatorStatus.STOPPED)
    daemon = daemons.start(env={"INSTIGATOR_DIR": str(tmp_path)})

    await wait_for_ticks(instance, "schedule:stuck_schedule", 1)
    await wait_for_ticks(instance, "sensor:elsewhere", 1)
    seconds = await wait_for_ticks(instance, "schedule:every_second", 10, T.SKIPPED)
    counting = await wait_for_ticks(instance, "sensor:counting", 10)

    evaluated = [t.scheduled_time for t in seconds if t.status is T.SKIPPED]
    assert max(b - a for a, b in itertools.pairwise(evaluated)) < 20.0
    assert all(t.status is not T.FAILED for t in counting)
    # One tick in flight and none planned after it while its lane is busy (the ticks due
    # between `now` and the daemon's first iteration were MISSED by policy).
    stuck = await ticks_of(instance, "schedule:stuck_schedule")
    [in_flight] = [t for t in stuck if t.status is T.STARTED]
    assert all(t.status is T.MISSED for t in stuck if t is not in_flight)
    assert stuck[-1] == in_flight
    assert [t.status for t in await ticks_of(instance, "sensor:elsewhere")] == [T.STARTED]
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0
