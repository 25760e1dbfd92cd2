"""Database faults under a real daemon: PostgreSQL restarted (fast, immediate) and stopped.

A real `vigil daemon run` with the default restart backoff, on a PostgreSQL server this
module owns (so it may restart and stop it), works through queued runs (two at a time)
and a per-second schedule. Mid-workload the server is restarted with `pg_ctl restart -m
fast`, with `-m immediate` (a crash and its recovery), or stopped for `OUTAGE` seconds.
Each time:

- the daemon process stays up;
- `/readyz` answers 503 while the database is away and 200 again within `READY_BOUND`
  seconds of the moment the server accepts connections again (the issue's requirement;
  the measured delay is printed);
- nothing is lost or duplicated: every queued run ends SUCCESS exactly once (one RUN_START,
  one end event, each step run once), and the schedule's ticks are unique per scheduled
  time, none left unfinished.

The short form stops the server for 10 s; VIGIL_TEST_CHAOS_LONG=1 stops it for 30 s (the
outage of the issue, after which readiness used to lag 33 s).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.client
import os
import pathlib
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio
import pytest

from tests import pg_server
from tests.acceptance import harness
from tests.crash import harness as crash
from tests.daemon.process import Daemon, Daemons
from tests.waiting import eventually
from vigil import events, runs, storage, ticks

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

LONG = os.environ.get("VIGIL_TEST_CHAOS_LONG") == "1"
OUTAGE = 30.0 if LONG else 10.0  # seconds the server stays stopped
READY_BOUND = 5.0  # seconds from the server's return to /readyz 200 (the bound)
# Seconds from the server's return until every loop's heartbeat is written again: a writer
# the store refused retries every second; one that was not refused beats within its 5 s.
HEARTBEAT_BOUND = 5.0 + READY_BOUND
SAMPLE_PAUSE = 0.1  # seconds between two /readyz samples
RUNS = 6  # queued runs of the workload
DEFS = pathlib.Path(__file__).with_name("db_faults_defs.py")
SCHEDULE = "schedule:every_second"
E = events.EventType


@pytest.fixture(scope="module")
def server() -> Iterator[pg_server.Server]:
    """This module's own PostgreSQL server: its tests stop and restart it. Durable (the
    test servers' default turns fsync and synchronous_commit off, and then an immediate
    restart loses the last transactions the server had acknowledged)."""
    started = pg_server.start(pg_server.find_bindir(), durable=True)
    try:
        yield started
    finally:
        pg_server.stop(started)


@pytest.fixture
def port() -> int:
    """The daemon's HTTP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        found: int = sock.getsockname()[1]
    return found


@pytest.fixture
async def instance(server: pg_server.Server, port: int, tmp_path: pathlib.Path) -> harness.Instance:
    """A fresh database on the server; the crash jobs queued two at a time, the per-second
    schedule, HTTP on a free port, and the daemon's default restart backoff."""
    database = f"vigil_faults_{uuid.uuid4().hex[:12]}"
    await pg_server.admin_execute(server.url, f'CREATE DATABASE "{database}"')
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    made = harness.Instance(home=home, cwd=cwd, env=harness.base_env(home))
    made.write_config(
        f"workspace:\n  - name: crash\n    file: {crash.JOBS}\n"
        f"  - name: faults\n    file: {DEFS}\n"
        "run_coordinator:\n  type: queued\n"
        "  options: {max_concurrent_runs: 2, poll_interval: 0.5}\n"
        "run_monitoring: {poll_interval: 1, start_timeout: 600}\n"
        "scheduling: {poll_interval: 1}\n"
        "daemon: {shutdown_grace: 10}\n"
        f"http: {{enabled: true, host: 127.0.0.1, port: {port}}}\n"
        + harness.store_yaml(server.url.set(database=database))
    )
    return made


# readiness, sampled all along -------------------------------------------------------------
@dataclasses.dataclass
class Readiness:
    """/readyz sampled every SAMPLE_PAUSE: (monotonic time the answer came, status or 0),
    and the reason of each change of status."""

    port: int
    samples: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    changes: list[tuple[float, int, str]] = dataclasses.field(default_factory=list)

    async def sample(self) -> None:
        while True:
            status, body = await anyio.to_thread.run_sync(self._get)
            now = time.monotonic()
            if not self.changes or self.changes[-1][1:] != (status, body.strip()):
                self.changes.append((now, status, body.strip()))
            self.samples.append((now, status))
            await anyio.sleep(SAMPLE_PAUSE)

    def _get(self) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3)
        try:
            conn.request("GET", "/readyz")
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        except OSError as exc:
            return 0, str(exc)
        finally:
            conn.close()

    def transitions(self, since: float) -> str:
        return "\n".join(
            f"  +{at - since:6.2f} s  {status}  {reason}"
            for at, status, reason in self.changes
            if at >= since - 1.0
        )

    def seen(self, status: int, since: float) -> bool:
        return any(at >= since and code == status for at, code in self.samples)

    async def wait_for(self, status: int, since: float, deadline: float = 60.0) -> float:
        """When /readyz first answered `status` after `since` (waiting up to `deadline`)."""

        async def answered() -> bool:
            return self.seen(status, since)

        try:
            await eventually(answered, deadline)
        except TimeoutError:
            last = self.samples[-5:]
            raise AssertionError(f"/readyz never answered {status}; last samples {last}") from None
        return min(at for at, code in self.samples if at >= since and code == status)


@dataclasses.dataclass
class Fault:
    """What the test did to the server: when it was taken away and when it was back."""

    name: str
    gone: float
    back: float  # time.monotonic()
    back_wall: float = dataclasses.field(default_factory=time.time)  # the same, wall clock


# the server ---------------------------------------------------------------------------------
async def pg_ctl(server: pg_server.Server, *args: str) -> None:
    log = server.directory / "server.log"
    command = [str(server.bindir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(log), *args]
    if server.as_postgres:
        command = ["runuser", "-u", "postgres", "--", *command]
    done = await anyio.run_process(command, check=False, cwd="/")
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, f"{' '.join(command)}: {output}"


async def restart(server: pg_server.Server, mode: str) -> Fault:
    gone = time.monotonic()
    await pg_ctl(server, "restart", "-m", mode, "-w", "-t", "60")
    return Fault(f"restart -m {mode}", gone, time.monotonic())


async def stop_for(server: pg_server.Server, readiness: Readiness, seconds: float) -> Fault:
    gone = time.monotonic()
    await pg_ctl(server, "stop", "-m", "fast", "-w", "-t", "60")
    await readiness.wait_for(503, gone)
    await anyio.sleep(max(0.0, gone + seconds - time.monotonic()))  # the outage itself
    options = f"-p {server.url.port} -k {server.directory} {pg_server.SERVER_OPTIONS}"
    await pg_ctl(server, "start", "-w", "-t", "60", "-o", options)
    return Fault(f"stopped {seconds:g} s", gone, time.monotonic())


# the test -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Running:
    daemon: Daemon
    readiness: Readiness


@contextlib.asynccontextmanager
async def running(
    instance: harness.Instance, port: int, tmp_path: pathlib.Path
) -> AsyncIterator[Running]:
    """The daemon, ready, with /readyz sampled in the background (a context manager in
    the test's own task: a task group must be left by the task that entered it)."""
    daemons = Daemons(instance, tmp_path)
    readiness = Readiness(port)
    try:
        daemon = daemons.start(env=crash.daemon_env(tmp_path))
        async with anyio.create_task_group() as group:
            group.start_soon(readiness.sample)
            await readiness.wait_for(200, 0.0)
            yield Running(daemon, readiness)
            group.cancel_scope.cancel()
    finally:
        for daemon in daemons.stop_all():
            print(f"--- daemon {daemon.pid} log ---\n{daemon.log()}")


FaultAction = Callable[[pg_server.Server, Readiness], Awaitable[Fault]]


async def fast_restart(server: pg_server.Server, _readiness: Readiness) -> Fault:
    return await restart(server, "fast")


async def immediate_restart(server: pg_server.Server, _readiness: Readiness) -> Fault:
    return await restart(server, "immediate")


async def outage(server: pg_server.Server, readiness: Readiness) -> Fault:
    return await stop_for(server, readiness, OUTAGE)


@pytest.mark.parametrize("fault", [fast_restart, immediate_restart, outage])
async def test_the_daemon_rides_out_a_database_fault_and_is_ready_again_promptly(
    server: pg_server.Server,
    instance: harness.Instance,
    port: int,
    tmp_path: pathlib.Path,
    fault: FaultAction,
) -> None:
    async with running(instance, port, tmp_path) as daemon:
        await wait_for_ticks(instance, 3)
        run_ids = await crash.submit(instance, "jot", RUNS)
        await wait_for_a_started_run(instance, run_ids)  # workers (and their template) up
        await daemon.readiness.wait_for(200, time.monotonic())  # ready just before the fault
        done = await fault(server, daemon.readiness)

        ready_at = await daemon.readiness.wait_for(200, done.back)
        delay = ready_at - done.back
        print(f"\n{done.name}: /readyz 200 again {delay:.2f} s after the server was back")
        print(daemon.readiness.transitions(done.gone))
        assert daemon.readiness.seen(503, done.gone), "/readyz never answered 503 in the fault"
        assert delay <= READY_BOUND, f"{done.name}: ready {delay:.2f} s after the server was back"
        assert daemon.daemon.process.poll() is None, "the daemon exited"
        beats = await heartbeats_resumed(instance, done.back_wall)
        print(f"{done.name}: every heartbeat written again {beats:.2f} s after the server was back")
        assert beats <= HEARTBEAT_BOUND, (
            f"{done.name}: heartbeats written again after {beats:.2f} s"
        )

        await crash.wait_until_ended(instance, run_ids)
        executions = crash.step_executions(tmp_path)
        assert await crash.outcome_problems(instance, run_ids, crash.JOT_STEPS, executions) == []
        assert await start_counts(instance, run_ids) == {run_id: 1 for run_id in run_ids}
        await wait_for_ticks(instance, 2)  # the schedule goes on
        daemon.daemon.send(signal.SIGTERM)
        assert await daemon.daemon.exit_code() == 0
    assert await tick_problems(instance) == []


# the workload, read back --------------------------------------------------------------------
async def wait_for_ticks(instance: harness.Instance, more: int) -> None:
    """Until the schedule has `more` finished ticks beyond those it has now."""
    async with crash.opened(instance) as store:
        before = len(await finished_ticks(store))

        async def ticked() -> bool:
            return len(await finished_ticks(store)) >= before + more

        await eventually(ticked, 60.0)


async def finished_ticks(store: storage.Store) -> list[ticks.Tick]:
    return [t for t in await store.list_ticks(SCHEDULE) if t.status.is_final]


async def wait_for_a_started_run(instance: harness.Instance, run_ids: list[str]) -> None:
    waiting = (runs.RunStatus.QUEUED, runs.RunStatus.STARTING)

    async def started() -> bool:
        found = await crash.runs_by_id(instance, run_ids)
        return any(r.status not in waiting for r in found.values())

    await eventually(started, 60.0)


async def heartbeats_resumed(instance: harness.Instance, back: float) -> float:
    """Seconds from `back` (wall clock) until every heartbeat row was written again.

    A row is stamped when its write begins: one begun in the second before the server was
    back (a retry while it was starting) and written once it was counts as written again.
    """
    async with crash.opened(instance) as store:

        async def resumed() -> bool:
            beats = await store.list_heartbeats()
            return bool(beats) and all(beat.last_heartbeat >= back - 1.0 for beat in beats)

        await eventually(resumed, 60.0)
    return time.time() - back


async def start_counts(instance: harness.Instance, run_ids: list[str]) -> dict[str, int]:
    async with crash.opened(instance) as store:
        counts = {}
        for run_id in run_ids:
            found = await store.get_events(run_id, event_types=(E.RUN_START,))
            counts[run_id] = len(found)
    return counts


async def tick_problems(instance: harness.Instance) -> list[str]:
    """Ticks that repeat a scheduled time, or that the stopped daemon left unfinished."""
    async with crash.opened(instance) as store:
        found = await store.list_ticks(SCHEDULE)
    times = collections.Counter(t.scheduled_time for t in found)
    problems = [f"tick at {at} recorded {n} times" for at, n in times.items() if n > 1]
    problems += [
        f"tick at {t.scheduled_time} left {t.status}" for t in found if not t.status.is_final
    ]
    if len(found) < 3:
        problems.append(f"only {len(found)} ticks")
    return problems
