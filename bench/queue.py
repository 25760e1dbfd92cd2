"""The queued run coordinator: submission latency, drain rate and claim rate.

Targets (the queued coordinator's issue):

1. Submission -> STARTING with the daemon idle, on PostgreSQL: p50 at most 20 ms, p99 at
   most 100 ms. The real `vigil daemon run` runs with `run_coordinator: {type: queued}` (no
   limit, poll_interval 1 s, HTTP off); once `vigil daemon status --json` shows its `queue`
   loop healthy, the bench submits runs of the 1-step job `one` one at a time through
   `QueuedCoordinator.submit` and times each from just before `submit` (a) until `get_run`,
   polled every millisecond, first shows it out of QUEUED, and (b) to the timestamp of its
   RUN_STARTING (claim) event. That timestamp is the daemon's clock, on this host, read just
   before its claim transaction, so (b) leaves out the claim's own commit. Each run ends
   SUCCESS, then the bench waits `--gap` more so the daemon is idle at each submission, plus
   a random 0 to 1 s (one poll interval) so submissions fall at every phase of its poll.
   The same on SQLite, where nothing tells the daemon of another process's submission: it
   finds the run at its next poll, so the poll interval bounds the latency.
2. Drain rate: at least 40 runs/s. `--runs` runs of `one` are queued while the queue is
   paused, the daemon is started (max_concurrent_runs 20, the subprocess launcher with
   prefork) and, once its queue loop is healthy, the queue is resumed; runs/s is the runs
   over the time from resume until `count_runs_by_status`, polled every 100 ms, shows them
   all SUCCESS. Resuming writes a flag and sends a queue notice (PostgreSQL; on SQLite the
   daemon sees it at its next poll); the rate from the first claim to the last run's end
   is printed too. The most
   in-flight runs (STARTING, STARTED, CANCELING) are those the poll saw and, exactly, the
   most once the claims and ends are replayed from the event log in commit order. The
   machine's CPU time over the drain is split between the daemon, its worker template with
   the workers it reaped, this bench, the PostgreSQL server and the rest (on a shared
   machine, other people's processes). On PostgreSQL the drain runs with the
   multiprocess executor (the bench's default) and with in_process (`--executors`); on
   SQLite, where a run's end in its worker does not wake the daemon either, multiprocess.
3. Claim rate with a launcher that starts nothing, in-process on PostgreSQL: at least 1,000
   runs/s. `--claims` queued runs, no limit, 100 launches in flight; `dequeue` until the
   queue is empty. Median and spread over `--repeats`, each on a new database; also the
   rate over the time spent in the claim transactions alone (the rest of `dequeue` is the
   launches' bookkeeping: launcher_info written, in group commits).

`--parts` picks the figures to measure (default all three).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import pathlib
import random
import resource
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import anyio
import psutil
import sqlalchemy as sa

from bench import common
from bench import daemon as daemon_bench
from tests import pg_server
from vigil import assembly, coordinators, events, launchers, runs, submission
from vigil.config import loader
from vigil.coordinators import queued
from vigil.definitions import workspace as workspace_mod
from vigil.storage import engine
from vigil.storage import store as store_mod

S = runs.RunStatus
JOB = "one"
WARMUP = 3  # submissions not counted: the first forks the daemon's worker template
READY_DEADLINE = 60.0  # seconds for the daemon's queue loop to show healthy
STATUS_POLL = 0.5  # between two `daemon status --json` while waiting for it
STOP_DEADLINE = 30.0  # SIGTERM, then SIGKILL by pid
POLL_INTERVAL = 1.0  # the queue loop's, for the latency (1.)
STATUS_EVERY = 0.001  # `get_run` polls while a submitted run is QUEUED
LEAVE_QUEUE_DEADLINE = 30.0
DRAIN_POLL = 0.1
STALL_DEADLINE = 60.0  # a drain with no run ending for this long is reported stuck
DRAIN_LIMIT = 20
CLAIM_BATCH = 100
CLAIMER = "bench"
EVENT_PAGE = 1000
CLAIM_AND_END = (
    events.EventType.RUN_STARTING,
    events.EventType.RUN_SUCCESS,
    events.EventType.RUN_FAILURE,
    events.EventType.RUN_CANCELED,
)
LATENCY_TARGET = " (target p50 <= 20 ms, p99 <= 100 ms)"


# an instance and its daemon ----------------------------------------------------------
@contextlib.contextmanager
def fresh_database(server: sa.engine.URL) -> Iterator[sa.engine.URL]:
    """A new empty database on the bench's PostgreSQL server, dropped afterwards."""
    name = f"vigil_bench_{uuid.uuid4().hex[:12]}"
    anyio.run(pg_server.admin_execute, server, f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name)
    finally:
        anyio.run(pg_server.admin_execute, server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def instance(
    server: sa.engine.URL | None, options: Mapping[str, Any], executor: str = "multiprocess"
) -> Iterator[tuple[pathlib.Path, dict[str, str]]]:
    """A migrated instance (a new database on `server`, else SQLite) with the queued
    coordinator and these options, HTTP off; its home and the environment naming it."""
    with contextlib.ExitStack() as stack:
        pg_url = None if server is None else stack.enter_context(fresh_database(server))
        home = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vigil-bench-")))
        coordinator = f"run_coordinator:\n  type: queued\n  options: {json.dumps(dict(options))}\n"
        text = (
            common.config_yaml(pg_url, executor, immediate=False)
            + coordinator
            + "http:\n  enabled: false\n"
        )
        (home / "vigil.yaml").write_text(text)
        env = daemon_bench.instance_env(home)
        migrated = daemon_bench.vigil(env, "instance", "migrate")
        if migrated.returncode != 0:
            raise SystemExit(f"vigil instance migrate failed:\n{migrated.stderr.decode()}")
        yield home, env


@contextlib.contextmanager
def running_daemon(home: pathlib.Path, env: dict[str, str]) -> Iterator[daemon_bench.Daemon]:
    """`vigil daemon run` on the instance, its queue loop healthy; stopped after, by pid."""
    daemon = daemon_bench.start(env, home / "daemon.log")
    try:
        wait_for_queue_loop(daemon)
        yield daemon
    finally:
        code = stop(daemon)
    if code != 0:
        raise SystemExit(f"the daemon ended {code} on SIGTERM:\n{daemon.log_tail()}")


def wait_for_queue_loop(daemon: daemon_bench.Daemon) -> None:
    end = time.monotonic() + READY_DEADLINE
    rows: dict[str, dict[str, Any]] = {}
    while time.monotonic() < end:
        if daemon.process.poll() is not None:
            raise SystemExit(f"the daemon exited {daemon.process.returncode}:\n{daemon.log_tail()}")
        rows = daemon_bench.status_rows(daemon.env)
        queue, supervisor = rows.get("queue", {}), rows.get("supervisor", {})
        if (
            supervisor.get("state") == "healthy"
            and queue.get("state") == "healthy"
            and queue.get("iterations", 0) >= 1
        ):
            return
        time.sleep(STATUS_POLL)
    raise SystemExit(f"the queue loop was not healthy within {READY_DEADLINE:g} s: {rows}")


def stop(daemon: daemon_bench.Daemon) -> int | None:
    """SIGTERM, then SIGKILL if it has not exited within the deadline; its exit code
    (None when it had to be killed)."""
    process = daemon.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_DEADLINE)
        return None


def queued_coordinator(coordinator: coordinators.RunCoordinator) -> queued.QueuedCoordinator:
    assert isinstance(coordinator, queued.QueuedCoordinator), type(coordinator)
    return coordinator


def new_run(workspace: workspace_mod.Workspace) -> runs.Run:
    return submission.new_run(workspace, JOB, {}, {}, time.time())


# 1. submission -> STARTING ---------------------------------------------------------------
async def submission_latency(
    home: pathlib.Path, env: dict[str, str], samples: int, gap: float
) -> tuple[list[float], list[float]]:
    """(until `get_run` shows it out of QUEUED, until its claim timestamp) for each run."""
    polled: list[float] = []
    stamped: list[float] = []
    async with common.Launcher(home, env).opened() as bench:
        coordinator = queued_coordinator(bench.coordinator)
        for i in range(WARMUP + samples):
            seen, claimed = await one_submission(bench, coordinator)
            if i >= WARMUP:
                polled.append(seen)
                stamped.append(claimed)
            await anyio.sleep(gap + random.uniform(0.0, POLL_INTERVAL))
    return polled, stamped


async def one_submission(
    bench: common.Launcher, coordinator: queued.QueuedCoordinator
) -> tuple[float, float]:
    store = bench.store
    run = new_run(bench.workspace)
    wall, start = time.time(), time.perf_counter()
    await coordinator.submit(run)
    while (await store.get_run(run.run_id)).status is S.QUEUED:
        if time.perf_counter() - start > LEAVE_QUEUE_DEADLINE:
            raise SystemExit(f"run {run.run_id} still QUEUED after {LEAVE_QUEUE_DEADLINE:g} s")
        await anyio.sleep(STATUS_EVERY)
    seen = time.perf_counter() - start
    final = await submission.wait_for_end(store, run.run_id)
    if final.status is not S.SUCCESS:
        raise SystemExit(f"run {run.run_id} ended {final.status}")
    claims = await store.get_events(run.run_id, event_types=(events.EventType.RUN_STARTING,))
    return seen, claims[0].timestamp - wall


def percentiles(name: str, samples: Sequence[float], target: str = "") -> str:
    """p50, p90, p99 (nearest rank) and max, in ms."""
    ms = sorted(s * 1000 for s in samples)

    def rank(p: float) -> float:
        return ms[max(0, math.ceil(p / 100 * len(ms)) - 1)]

    return (
        f"{name}: p50 {rank(50):.1f} ms, p90 {rank(90):.1f}, p99 {rank(99):.1f}, "
        f"max {ms[-1]:.1f} over {len(ms)} runs{target}"
    )


def measure_latency(server: sa.engine.URL | None, label: str, samples: int, gap: float) -> None:
    options = {"max_concurrent_runs": -1, "poll_interval": POLL_INTERVAL}
    with instance(server, options) as (home, env), running_daemon(home, env):
        polled, stamped = anyio.run(submission_latency, home, env, samples, gap)
    target = LATENCY_TARGET if server is not None else " (SQLite: bounded by poll_interval 1 s)"
    print(
        percentiles(f"{label} submit -> status out of QUEUED (get_run every 1 ms)", polled, target)
    )
    print(percentiles(f"{label} submit -> RUN_STARTING timestamp", stamped, target))


# 2. drain rate -------------------------------------------------------------------------
@dataclasses.dataclass
class Watched:
    """What the 100 ms poll of `count_runs_by_status` saw of a drain."""

    elapsed: float
    most_in_flight: int
    counts: dict[runs.RunStatus, int]
    stalled: bool


async def queue_paused(home: pathlib.Path, env: dict[str, str], n: int) -> float:
    """Pause the queue and submit n runs; the seconds the submissions took."""
    async with common.Launcher(home, env).opened() as bench:
        coordinator = queued_coordinator(bench.coordinator)
        await coordinator.set_paused(True)
        start = time.perf_counter()
        for _ in range(n):
            await coordinator.submit(new_run(bench.workspace))
        return time.perf_counter() - start


async def drain(
    home: pathlib.Path, env: dict[str, str], n: int
) -> tuple[Watched, list[runs.Run], tuple[dict[str, float], int]]:
    """Resume the queue and watch until the n runs have ended; the runs, their claim
    times and the most in flight (`claim_times`)."""
    async with common.Launcher(home, env).opened() as bench:
        coordinator = queued_coordinator(bench.coordinator)
        start = time.perf_counter()
        await coordinator.set_paused(False)
        watched = await watch_drain(bench.store, n, start)
        return watched, await bench.store.list_runs(), await claim_times(bench.store)


async def watch_drain(store: store_mod.Store, n: int, start: float) -> Watched:
    most, last_ended, progress_at = 0, -1, time.perf_counter()
    while True:
        counts = await store.count_runs_by_status()
        now = time.perf_counter()
        most = max(most, sum(counts.get(s, 0) for s in runs.IN_FLIGHT_STATUSES))
        ended = sum(counts.get(s, 0) for s in runs.TERMINAL_STATUSES)
        if ended >= n:
            return Watched(now - start, most, counts, stalled=False)
        if ended != last_ended:
            last_ended, progress_at = ended, now
        elif now - progress_at > STALL_DEADLINE:
            return Watched(now - start, most, counts, stalled=True)
        await anyio.sleep(DRAIN_POLL)


async def claim_times(store: store_mod.Store) -> tuple[dict[str, float], int]:
    """Each run's claim (RUN_STARTING) timestamp, and the most runs in flight at once.

    The claim and each end append their event in the transaction that changes the status,
    and event ids follow commit order (PostgreSQL: the event-order lock, held to commit;
    SQLite: one writer at a time), so walking the events in id order replays the committed
    in-flight count exactly.
    """
    found: dict[str, float] = {}
    in_flight: set[str] = set()
    most = after = 0
    while batch := await store.events_after(after, EVENT_PAGE, CLAIM_AND_END):
        for event in batch:
            if event.event_type is events.EventType.RUN_STARTING:
                found.setdefault(event.run_id, event.timestamp)
                in_flight.add(event.run_id)
                most = max(most, len(in_flight))
            else:
                in_flight.discard(event.run_id)
        after = batch[-1].event_id
    return found, most


@dataclasses.dataclass
class Cpu:
    """CPU seconds over a drain: the whole machine, the daemon process, its tree (the
    worker template and every worker and step process it reaped), this process, and the
    PostgreSQL server (the postmaster with the backends it reaped; 0 on SQLite)."""

    machine: float
    daemon: float
    tree: float
    bench: float
    postgres: float


def busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_now(root: psutil.Process, server_pid: int | None) -> Cpu:
    times = root.cpu_times()
    tree = daemon_bench.tree_cpu(root)
    server = 0.0 if server_pid is None else daemon_bench.tree_cpu(psutil.Process(server_pid))
    return Cpu(busy_seconds(), times.user + times.system, tree, own_seconds(), server)


def measure_drain(
    server: sa.engine.URL | None,
    label: str,
    n: int,
    executor: str,
    server_pid: int | None = None,
) -> None:
    options = {"max_concurrent_runs": DRAIN_LIMIT}
    label = f"{label} drain, {executor} executor"
    with instance(server, options, executor) as (home, env):
        submitted = anyio.run(queue_paused, home, env, n)
        rate = n / submitted
        print(f"{label}: queued {n} runs (paused) in {submitted:.1f} s: {rate:.0f} submissions/s")
        with running_daemon(home, env) as daemon:
            root = psutil.Process(daemon.process.pid)
            before = cpu_now(root, server_pid)
            watched, final, claims = anyio.run(drain, home, env, n)
            after = cpu_now(root, server_pid)
    report_drain(label, n, watched, final, claims)
    used = Cpu(
        after.machine - before.machine,
        after.daemon - before.daemon,
        after.tree - before.tree,
        after.bench - before.bench,
        after.postgres - before.postgres,
    )
    report_cpu(label, n, watched.elapsed, used)


def report_cpu(label: str, n: int, elapsed: float, used: Cpu) -> None:
    per_run = {
        "daemon": used.daemon,
        "its workers": used.tree - used.daemon,
        "this bench": used.bench,
        "PostgreSQL": used.postgres,
        "the rest (any other process, the kernel's own work)": (
            used.machine - used.tree - used.bench - used.postgres
        ),
    }
    parts = ", ".join(f"{name} {1000 * sec / n:.0f}" for name, sec in per_run.items())
    print(
        f"{label}: CPU {used.machine:.1f} s over {elapsed:.1f} s on {os.cpu_count()} cores "
        f"= {1000 * used.machine / n:.0f} ms a run ({parts})"
    )


def report_drain(
    label: str,
    n: int,
    watched: Watched,
    final: Sequence[runs.Run],
    claims: tuple[Mapping[str, float], int],
) -> None:
    claimed, most = claims
    counts = {str(k): v for k, v in sorted(watched.counts.items())}
    if watched.stalled or watched.counts.get(S.SUCCESS, 0) != n:
        print(f"{label}: PROBLEM: after {watched.elapsed:.1f} s the runs are {counts}")
    intervals = [
        (claimed[r.run_id], r.end_time)
        for r in final
        if r.run_id in claimed and r.end_time is not None
    ]
    first, last = min(s for s, _ in intervals), max(e for _, e in intervals)
    print(
        f"{label}: {n} runs, resume -> all ended {watched.elapsed:.2f} s = "
        f"{n / watched.elapsed:.1f} runs/s (target >= 40 runs/s); first claim -> last end "
        f"{last - first:.2f} s = {len(intervals) / (last - first):.1f} runs/s; end states {counts}"
    )
    print(
        f"{label}: most in flight {watched.most_in_flight} by the 100 ms poll, "
        f"{most} replaying the claims and ends in commit order (limit {DRAIN_LIMIT})"
    )


# 3. claim rate, no-op launcher ------------------------------------------------------------
class NoopLauncher(launchers.RunLauncher):
    """Starts nothing: `launch` returns at once, so only the coordinator and store count."""

    async def launch(self, run: runs.Run) -> Mapping[str, Any]:
        return {}

    async def terminate(self, run: runs.Run) -> bool:
        return False

    async def check_worker_health(self, run: runs.Run) -> launchers.HealthCheck:
        return launchers.HealthCheck(launchers.WorkerHealth.UNKNOWN, "the bench starts nothing")


class ClaimTimer:
    """Stands in for the store's `claim_queued_runs`, adding up the time spent in it."""

    def __init__(self, store: store_mod.Store) -> None:
        self.seconds = 0.0
        self._claim = store.claim_queued_runs
        store.claim_queued_runs = self  # type: ignore[method-assign]

    async def __call__(self, admit: store_mod.Admit, now: float, claimer: str) -> list[runs.Run]:
        start = time.perf_counter()
        try:
            return await self._claim(admit, now, claimer)
        finally:
            self.seconds += time.perf_counter() - start


async def claim_rate(home: pathlib.Path, n: int) -> tuple[float, float]:
    """(runs/s through `dequeue`, runs/s of the claim transactions' own time)."""
    settings = loader.load_settings(home)
    store = await engine.open_store(loader.store_target(settings))
    try:
        context = assembly.launch_context(settings, {}, common.REPO)
        launcher = NoopLauncher(NoopLauncher.Options(), context)
        coordinator = queued_coordinator(
            assembly.build_coordinator(settings, store, launcher, time.time, claimer=CLAIMER)
        )
        workspace = workspace_mod.load_workspace(settings.workspace, common.REPO)
        for _ in range(n):
            await coordinator.submit(new_run(workspace))
        timer = ClaimTimer(store)
        start = time.perf_counter()
        launched = 0
        while batch := await coordinator.dequeue():
            launched += len(batch)
        elapsed = time.perf_counter() - start
        counts = await store.count_runs_by_status()
    finally:
        await store.close()
    if launched != n or counts != {S.STARTING: n}:
        raise SystemExit(f"claimed {launched} of {n} runs; the runs are {counts}")
    return n / elapsed, n / timer.seconds


def measure_claims(server: sa.engine.URL, n: int, repeats: int) -> None:
    options = {"max_concurrent_runs": -1, "max_inflight_launches": CLAIM_BATCH}
    rates: list[float] = []
    claims_only: list[float] = []
    for _ in range(repeats):
        with instance(server, options) as (home, _env):
            rate, claim_only = anyio.run(claim_rate, home, n)
        rates.append(rate)
        claims_only.append(claim_only)
    name = f"postgres claim rate, no-op launcher, {n} runs"
    print(common.figures(name, rates, "runs/s", 1.0) + " (target >= 1000 runs/s)")
    name = f"postgres   of which claim transactions alone, {n} runs"
    print(common.figures(name, claims_only, "runs/s", 1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=100, help="submissions timed (1.)")
    parser.add_argument("--gap", type=float, default=0.1, help="idle seconds after each run (1.)")
    parser.add_argument("--runs", type=int, default=1000, help="runs drained (2.)")
    parser.add_argument(
        "--executors",
        default="multiprocess,in_process",
        help="executors of the PostgreSQL drains, comma-separated (2.)",
    )
    parser.add_argument(
        "--sqlite-executors",
        default="multiprocess",
        help="executors of the SQLite drains, comma-separated (2.)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--claims", type=int, default=2000, help="runs claimed (3.)")
    parser.add_argument("--repeats", type=int, default=3, help="claim rate repeats (3.)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument(
        "--parts",
        default="latency,drain,claims",
        help="which figures to measure, comma-separated: latency (1.), drain (2.), claims (3.)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average {load} before the bench")
    with contextlib.ExitStack() as stack:
        if args.no_postgres:
            parts_pg: set[str] = set()
        else:
            pg = stack.enter_context(common.postgres_server())
            parts_pg = parts
        if "latency" in parts_pg:
            measure_latency(pg.url, "postgres", args.samples, args.gap)
        if "drain" in parts_pg:
            for executor in args.executors.split(","):
                measure_drain(pg.url, "postgres", args.runs, executor, pg.pid)
        if "claims" in parts_pg:
            measure_claims(pg.url, args.claims, args.repeats)
    if not args.no_sqlite:
        if "latency" in parts:
            measure_latency(None, "sqlite  ", args.samples, args.gap)
        if "drain" in parts:
            for executor in args.sqlite_executors.split(","):
                measure_drain(None, "sqlite  ", args.runs, executor)


if __name__ == "__main__":
    main()
