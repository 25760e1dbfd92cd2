"""What the crash tests share: the instance they configure, the crash point's environment,
the store read back, and a throwaway PostgreSQL server stopped and started by the test.

A crash point is armed by the environment of the daemon (and so of the workers it
launches): `inject/` first on PYTHONPATH, VIGIL_CRASH_AT and VIGIL_CRASH_MARKER (see
`inject/sitecustomize.py`). The marker is how a test knows the kill happened, where and
in which process; it also stops a second kill.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence

import anyio
import psutil

from tests import pg_server
from tests.acceptance.harness import REPO, Instance
from tests.crash import jobs
from tests.daemon import process
from tests.waiting import eventually
from vigil import assembly, events, runs, storage, submission
from vigil.config import loader
from vigil.definitions import workspace as workspace_mod

HERE = REPO / "tests" / "crash"
INJECT = HERE / "inject"
JOBS = HERE / "jobs.py"
JOT_STEPS = ("jot_first", "jot_second")
SLOW_STEPS = ("jot_then_wait",)
E = events.EventType
S = runs.RunStatus

QUEUE = "{max_concurrent_runs: 3, poll_interval: 0.2}"
# A start timeout far beyond every deadline: no run may pass by way of the timeout.
MONITORING = "run_monitoring: {poll_interval: 0.5, start_timeout: 600}\n"
STALE_AFTER = 1.5  # seconds without a heartbeat (5 heartbeat intervals, process.FAST)


def configure(
    instance: Instance, queue: str = QUEUE, launcher: str = "", lease_ttl: float = 10.0
) -> None:
    """The crash jobs, the queued coordinator, a patient start timeout, fast heartbeats."""
    text = (instance.home / "vigil.yaml").read_text()
    store_section = text[text.index("store:") :] if "store:" in text else ""
    instance.write_config(
        f"workspace:\n  - name: crash\n    file: {JOBS}\n"
        f"run_coordinator:\n  type: queued\n  options: {queue}\n"
        f"{MONITORING}{launcher}{store_section}"
    )
    process.configure(instance, process.TICKER, lease_ttl=lease_ttl)


def hanging_launcher(marker: pathlib.Path) -> str:
    return (
        "run_launcher:\n  type: tests.crash.hanging_launcher:HangingLauncher\n"
        f"  options: {{marker: {marker}}}\n"
    )


# the crash point -----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Killed:
    """What the marker says of the killed process."""

    pid: int
    role: str
    at: str
    run_ids: tuple[str, ...]

    @classmethod
    def read(cls, marker: pathlib.Path) -> Killed:
        data = json.loads(marker.read_text())
        return cls(data["pid"], data["role"], data["at"], tuple(data["run_ids"]))


def daemon_env(tmp_path: pathlib.Path, crash_at: str | None = None) -> dict[str, str]:
    """The daemon's environment: where steps write their lines, the gate slow steps wait
    at (see `Gate`), and the crash point."""
    env = {jobs.STEP_LOG_ENV: str(step_log(tmp_path)), jobs.GATE_ENV: str(gate_path(tmp_path))}
    if crash_at is not None:
        env["PYTHONPATH"] = f"{INJECT}:{REPO}"
        env["VIGIL_CRASH_AT"] = crash_at
        env["VIGIL_CRASH_MARKER"] = str(crash_marker(tmp_path))
    return env


def gate_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "gate"


class Gate:
    """Slow steps wait while the test holds this: an exclusive lock on the gate file, which
    they ask to share (`jobs.jot_then_wait`). Without a holder they pass at once."""

    def __init__(self, tmp_path: pathlib.Path) -> None:
        path = gate_path(tmp_path)
        path.touch()
        self._fd: int | None = os.open(path, os.O_RDONLY)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def open(self) -> None:
        """Let every waiting step (and every later one) finish."""
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


def step_log(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "steps.log"


def crash_marker(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "crashed"


async def wait_for_file(path: pathlib.Path, deadline: float = 60.0) -> None:
    async def exists() -> bool:
        return await anyio.Path(path).exists()

    try:
        await eventually(exists, deadline)
    except TimeoutError:
        raise AssertionError(f"{path} never appeared") from None


async def read_marker(marker: pathlib.Path, deadline: float = 60.0) -> Killed:
    """What the marker says, once a process has written it whole."""
    await wait_for_file(marker, deadline)

    async def written() -> bool:
        return (await anyio.Path(marker).read_text()).endswith("\n")

    await eventually(written, 10.0)
    return Killed.read(marker)


# the store -----------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def opened(instance: Instance) -> AsyncIterator[storage.Store]:
    settings = loader.load_settings(instance.home)
    store = await storage.open_store(loader.store_target(settings))
    try:
        yield store
    finally:
        await store.close()


async def submit(instance: Instance, job_name: str, count: int) -> list[str]:
    """Queue `count` runs of the job through the configured coordinator; their ids."""
    settings = loader.load_settings(instance.home)
    workspace = workspace_mod.load_workspace(settings.workspace, instance.cwd)
    context = assembly.launch_context(settings, instance.env, instance.cwd)
    launcher = assembly.build_launcher(settings, context)
    run_ids = []
    async with opened(instance) as store:
        coordinator = assembly.build_coordinator(settings, store, launcher, time.time)
        try:
            for _ in range(count):
                run = submission.new_run(workspace, job_name, {}, {}, time.time())
                queued = await coordinator.submit(run)
                assert queued.status is S.QUEUED, queued
                run_ids.append(queued.run_id)
        finally:
            await launcher.close()
    return run_ids


async def runs_by_id(instance: Instance, run_ids: Collection[str]) -> dict[str, runs.Run]:
    async with opened(instance) as store:
        return {r.run_id: r for r in await store.list_runs() if r.run_id in run_ids}


async def wait_until_stale(instance: Instance) -> None:
    """Until a killed daemon's heartbeats are too old to count (else a restart refuses)."""

    async def stale() -> bool:
        async with opened(instance) as store:
            beats = await store.list_heartbeats()
        return all(time.time() - beat.last_heartbeat > STALE_AFTER for beat in beats)

    await eventually(stale, 30.0)


async def wait_until_ended(
    instance: Instance, run_ids: Collection[str], deadline: float = 120.0
) -> None:
    """Until every run is terminal; fails naming the runs still in flight and their status."""
    latest: dict[str, runs.Run] = {}
    async with opened(instance) as store:

        async def ended() -> bool:
            nonlocal latest
            latest = {r.run_id: r for r in await store.list_runs() if r.run_id in run_ids}
            return len(latest) == len(run_ids) and all(
                r.status.is_terminal for r in latest.values()
            )

        try:
            await eventually(ended, deadline)
        except TimeoutError:
            waiting = {i: str(r.status) for i, r in latest.items() if not r.status.is_terminal}
            raise AssertionError(f"not ended after {deadline:g} s: {waiting}") from None


async def wait_until_quiet(
    instance: Instance, run_ids: Collection[str], daemon: process.Daemon, tmp_path: pathlib.Path
) -> None:
    """Until no worker or step process is left: the runs' recorded workers, the daemon's
    descendants but its worker template, the processes that wrote step lines."""
    found = await runs_by_id(instance, run_ids)
    recorded = {r.launcher_info.get("pid") for r in found.values()}
    recorded |= {r.worker_pid for r in found.values()}
    recorded |= {int(line.split()[2]) for line in step_lines(tmp_path)}
    pids = {int(pid) for pid in recorded if pid is not None}

    async def quiet() -> bool:
        return not [pid for pid in pids | _descendants(daemon.pid) if _alive(pid)]

    try:
        await eventually(quiet, 60.0)
    except TimeoutError:
        left = [pid for pid in pids | _descendants(daemon.pid) if _alive(pid)]
        raise AssertionError(f"processes left after the runs ended: {left}") from None


def _descendants(pid: int) -> set[int]:
    """The process's descendants but its worker template (whose forked workers, which keep
    the template's command line, are counted)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return set()
    found = set()
    for child in children:
        with contextlib.suppress(psutil.Error):
            if child.ppid() != pid or "template" not in child.cmdline():
                found.add(child.pid)
    return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# the outcome ---------------------------------------------------------------------------
def step_lines(tmp_path: pathlib.Path) -> list[str]:
    path = step_log(tmp_path)
    return path.read_text().splitlines() if path.exists() else []


def step_executions(tmp_path: pathlib.Path) -> collections.Counter[tuple[str, str]]:
    """How many times each (run, step) really ran, from the steps' own lines."""
    return collections.Counter((line.split()[0], line.split()[1]) for line in step_lines(tmp_path))


async def outcome_problems(
    instance: Instance,
    run_ids: Sequence[str],
    steps: Sequence[str],
    executions: Mapping[tuple[str, str], int],
) -> list[str]:
    """Everything wrong with the ended runs: each must have ended SUCCESS exactly once, not
    by the start timeout, each step run once and recorded successful once."""
    problems: list[str] = []
    async with opened(instance) as store:
        for run_id in run_ids:
            run = await store.get_run(run_id)
            found = await store.get_events(run_id)
            problems += _run_problems(run, found, steps, executions)
    return problems


def _run_problems(
    run: runs.Run,
    found: Sequence[events.Event],
    steps: Sequence[str],
    executions: Mapping[tuple[str, str], int],
) -> list[str]:
    name = run.run_id
    by_type = collections.Counter(e.event_type for e in found)
    problems = []
    if run.status is not S.SUCCESS:
        ends = [e.message for e in found if e.event_type in (E.RUN_FAILURE, E.RUN_CANCELED)]
        problems.append(f"{name}: {run.status} {ends}")
    if by_type[E.RUN_SUCCESS] != 1 or by_type[E.RUN_FAILURE] or by_type[E.RUN_CANCELED]:
        counts = {t: by_type[t] for t in (E.RUN_SUCCESS, E.RUN_FAILURE, E.RUN_CANCELED)}
        problems.append(f"{name}: end events {counts}")
    if any(e.data.get("reason") == runs.EndReason.START_TIMEOUT.value for e in found):
        problems.append(f"{name}: ended by the start timeout")
    successes = collections.Counter(e.step for e in found if e.event_type is E.STEP_SUCCESS)
    for step in steps:
        ran = executions.get((name, step), 0)
        if ran != 1 or successes[step] != 1:
            problems.append(f"{name}: {step} ran {ran}x, {successes[step]} successes recorded")
    return problems


# a PostgreSQL server stopped and started by the test -----------------------------------
async def stop_server(server: pg_server.Server) -> None:
    """Stop it at once (`-m fast`: every connection is cut); its data dir stays."""
    await _pg_ctl(server, "-m", "fast", "-w", "stop")


async def start_server(server: pg_server.Server) -> None:
    """Start it again on the same data dir and port; ready when this returns."""
    options = (
        f"-p {server.url.port} -k {server.directory} "
        f"{pg_server.SERVER_OPTIONS} {pg_server.NOT_DURABLE}"
    )
    log = server.directory / "server.log"
    await _pg_ctl(server, "-l", str(log), "-w", "-t", "60", "-o", options, "start")


async def _pg_ctl(server: pg_server.Server, *args: str) -> None:
    command = [str(server.bindir / "pg_ctl"), "-D", str(server.data_dir), *args]
    if server.as_postgres:
        command = ["runuser", "-u", "postgres", "--", *command]
    done = await anyio.run_process(command, check=False, cwd="/")
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, f"{' '.join(command)}: {output}"
