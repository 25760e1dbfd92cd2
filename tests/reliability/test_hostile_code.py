"""Hostile user code under a real daemon: on import and at evaluation, nothing it does
reaches the daemon or another code location.

One `vigil daemon run` loads, beside a healthy location with a per-second schedule:
locations that hang on import, call `os._exit(0)`, `sys.exit(3)`, segfault (ctypes),
print 100 MB, or fork processes that never end; and one location whose schedule functions
do the same when evaluated. Meanwhile the healthy schedule is evaluated all along; each
hostile location fails alone with a one-line reason (timeout, exit code, signal); the
daemon's log stays bounded; and when the daemon stops, every process user code forked is
gone.
"""

from __future__ import annotations

import itertools
import pathlib
import signal
import time

import psutil
import pytest

from tests.acceptance.harness import IMMEDIATE, Instance
from tests.daemon.process import Daemons
from tests.waiting import eventually
from vigil import storage, ticks
from vigil.config import loader

pytestmark = pytest.mark.timeout(600)
T = ticks.TickStatus
MB = 1024 * 1024

HEADER = """
import ctypes, os, pathlib, sys, threading
from vigil import Definitions, SkipReason, job, schedule, step

PIDS = pathlib.Path(os.environ["HOSTILE_DIR"]) / "forked.pids"


@step
def noop() -> None:
    return None


def fork_forever(count):
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            threading.Event().wait()
            os._exit(0)
        with PIDS.open("a") as out:
            out.write(f"{pid}\\n")
"""

HEALTHY = (
    HEADER
    + """
healthy_job = job("healthy_job", [noop])


@schedule(cron="* * * * * *", job=healthy_job)
def heartbeat():
    return SkipReason("fine")


defs = Definitions(jobs=[healthy_job], schedules=[heartbeat])
"""
)

ON_IMPORT = {
    "import_hang": "threading.Event().wait()",
    "import_exit0": "os._exit(0)",
    "import_sysexit": "sys.exit(3)",
    "import_segfault": "ctypes.string_at(0)",
    "import_flood": "sys.stdout.write('x' * 100_000_000); sys.stdout.flush()",
    "import_fork": "fork_forever(5)",
}

AT_EVALUATION = (
    HEADER
    + """
evil_job = job("evil_job", [noop])


@schedule(cron="*/6 * * * * *", job=evil_job)
def evil_exit0():
    os._exit(0)


@schedule(cron="*/6 * * * * *", job=evil_job)
def evil_segfault():
    ctypes.string_at(0)


@schedule(cron="*/6 * * * * *", job=evil_job)
def evil_sysexit():
    sys.exit(3)


@schedule(cron="*/10 * * * * *", job=evil_job)
def evil_flood():
    sys.stdout.write("y" * 100_000_000)
    sys.stdout.flush()
    return SkipReason("flooded")


@schedule(cron="*/6 * * * * *", job=evil_job, timeout=2)
def evil_hang():
    threading.Event().wait()


@schedule(cron="*/10 * * * * *", job=evil_job)
def evil_fork():
    fork_forever(3)
    return SkipReason("forked")


defs = Definitions(
    jobs=[evil_job],
    schedules=[evil_exit0, evil_segfault, evil_sysexit, evil_flood, evil_hang, evil_fork],
)
"""
)
EVIL = [
    "evil_exit0",
    "evil_segfault",
    "evil_sysexit",
    "evil_flood",
    "evil_hang",
    "evil_fork",
]


def configure(instance: Instance, tmp_path: pathlib.Path) -> None:
    files = {"healthy": HEALTHY, "at_evaluation": AT_EVALUATION}
    for name, line in ON_IMPORT.items():
        files[name] = HEADER + f"\n{line}\n\ndefs = Definitions(jobs=[job('{name}_job', [noop])])\n"
    workspace = ""
    for name, text in files.items():
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        workspace += f"  - name: {name}\n    file: {path}\n"
    instance.write_config(
        f"workspace:\n{workspace}{IMMEDIATE}"
        "scheduling:\n  poll_interval: 0.5\n  load_timeout: 30\n  load_retry: 3600\n"
        "daemon:\n  heartbeat_interval: 0.5\n  shutdown_grace: 10\n"
        "http:\n  enabled: false\n"
    )


async def ticks_of(instance: Instance, name: str) -> list[ticks.Tick]:
    settings = loader.load_settings(instance.home)
    store = await storage.open_store(loader.store_target(settings))
    try:
        return list(reversed(await store.list_ticks(name)))
    finally:
        await store.close()


async def start_running(instance: Instance, names: list[str]) -> None:
    settings = loader.load_settings(instance.home)
    store = await storage.open_store(loader.store_target(settings))
    try:
        for name in names:
            await store.set_instigator_status(
                name, ticks.InstigatorKind.SCHEDULE, ticks.InstigatorStatus.RUNNING, time.time()
            )
    finally:
        await store.close()


def forked_pids(tmp_path: pathlib.Path) -> list[int]:
    path = tmp_path / "forked.pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def test_hostile_code_on_import_and_at_evaluation_fails_alone(
    sqlite_instance: Instance,
    daemons: Daemons,
    tmp_path: pathlib.Path,
) -> None:
    instance = sqlite_instance
    configure(instance, tmp_path)
    await start_running(instance, ["schedule:heartbeat", *(f"schedule:{n}" for n in EVIL)])
    daemon = daemons.start(env={"HOSTILE_DIR": str(tmp_path)})

    async def every_evil_tick_ended() -> bool:
        for name in EVIL:
            found = await ticks_of(instance, f"schedule:{name}")
            if not any(t.status in (T.FAILED, T.SKIPPED) for t in found):
                return False
        return "code location 'import_hang' failed to load: timed out after 30 s" in daemon.log()

    await eventually(every_evil_tick_ended, 240.0)
    before = len(await ticks_of(instance, "schedule:heartbeat"))

    async def ten_more() -> bool:
        found = await ticks_of(instance, "schedule:heartbeat")
        return len([t for t in found[before:] if t.status is T.SKIPPED]) >= 10

    await eventually(ten_more, 120.0)
    heartbeat = await ticks_of(instance, "schedule:heartbeat")
    log = daemon.log()
    assert daemon.process.poll() is None

    # The healthy location was evaluated all along while the others misbehaved (measured
    # once every location has loaded or failed: eight interpreters starting at once on a
    # loaded machine take a while, and that is CPU, not waiting).
    evaluated = [t.scheduled_time for t in heartbeat[before:] if t.status is T.SKIPPED]
    assert len(evaluated) >= 10
    # No stall (a blocked scheduler waited out a whole load timeout); the bound leaves room
    # for CPU starvation: the hostile location's process dies and reloads every few seconds.
    assert max(b - a for a, b in itertools.pairwise(evaluated)) < 60.0
    assert all(t.status in (T.SKIPPED, T.MISSED, T.STARTED) for t in heartbeat)

    # Each location that broke on import failed alone, with one line saying how.
    expected = {
        "import_hang": "timed out after 30 s",
        "import_exit0": "exited (exit code 0)",
        "import_sysexit": "SystemExit: 3",
        "import_segfault": "killed by signal 11",
    }
    for name, reason in expected.items():
        lines = [line for line in log.splitlines() if f"code location '{name}' failed" in line]
        assert any(reason in line for line in lines), (name, lines)
    assert "code location 'import_flood' failed" not in log
    assert "code location 'import_fork' failed" not in log

    # Each hostile function failed its own ticks with a one-line reason.
    reasons = {
        "evil_exit0": "exit code 0",
        "evil_segfault": "killed by signal 11",
        "evil_sysexit": "exit code 3",
        "evil_hang": "timed out after 2 s",
    }
    for name, reason in reasons.items():
        failed = [t for t in await ticks_of(instance, f"schedule:{name}") if t.status is T.FAILED]
        assert failed, name
        assert all(t.error is not None and reason in t.error for t in failed), (name, failed)
    for name in ("evil_flood", "evil_fork"):
        found = await ticks_of(instance, f"schedule:{name}")
        assert any(t.status is T.SKIPPED for t in found), (name, found)

    # 100 MB printed on import, and again at each flood tick: the log holds a bounded share.
    assert len(log) < 8 * MB
    assert "more bytes of output cut" in log

    pids = forked_pids(tmp_path)
    assert len(pids) >= 5 + 3
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code(60.0) == 0

    async def forks_gone() -> bool:
        return not any(alive(pid) for pid in forked_pids(tmp_path))

    await eventually(forks_gone, 30.0)
