"""Runs on Celery workers: latency, drain rate, a worker killed mid-run, a broker outage.

Everything is real: a throwaway PostgreSQL (each part on a new database), a `redis-server`
on a free loopback port (tests/redis_server.py) as broker and result backend, two
`vigil celery worker` processes (each its own process group, stopped by pid at the end),
and, for parts 2 to 4, `vigil daemon run` with the queued coordinator. Run it as
`python -m bench.celery` (as a script its own name would shadow the celery package).

1. latency: submission -> STARTED on an idle pool, the Celery launcher beside the
   subprocess launcher (prefork), both with the immediate coordinator in this process (as
   `vigil run launch`). Per run: to the run worker's RUN_START timestamp (same host, same
   clock) and to the first `get_run`, polled every millisecond, that shows the run STARTED
   or later. p50, p95, max over `--samples` runs of the 1-step job (target p50 <= 100 ms).
   The Celery figure is split at the moment a worker logged the task received (its log's
   millisecond timestamps): the launcher and broker's share, and the run worker's start.
2. drain: `--runs` runs of the 1-step job queued while the queue is paused, then resumed
   under a daemon with max_concurrent_runs 20; runs/s from resume until all ended, the Celery
   launcher (two workers of `--concurrency` each) beside the subprocess launcher on the same
   machine, and their ratio (goal >= 0.8).
3. kill: a run of `resumable` (a first step that finishes, a second that hangs on its first
   execution only) on one of the two workers; once its second step runs, that worker's whole
   process group is SIGKILLed (a machine that vanished: no warm shutdown, no task end). The
   seconds until the monitor resumes the run (resume_attempt 1), until it is STARTED again
   on the other worker, and until it ends (target noticed <= 15 s); how many times each step
   ran (the first must have run once). The monitor polls every second; a started task whose
   Celery worker does not answer a ping is only UNKNOWN to the launcher: what finds the dead
   run worker is its heartbeat in the store, silent for `--heartbeat-misses` beats of
   `--heartbeat-interval` s (`run_monitoring.worker_heartbeat_*`; 6 of 5 s by default).
4. outage: redis-server stopped, `--outage-runs` runs submitted over `--outage` seconds,
   redis started again on the same port; from the store: every run SUCCESS (none lost), one
   RUN_START each (none launched twice), and the seconds from the broker's return to the
   first launch and to the last end.

`--quick` shrinks every size (a smoke run); `--parts` picks the parts.
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
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import anyio
import psutil
import sqlalchemy as sa

from bench import common
from bench import daemon as daemon_bench
from bench import queue as queue_bench
from tests import redis_server
from vigil import events, runs, submission

S = runs.RunStatus
E = events.EventType
JOB = "one"
WARMUP = 2  # submissions not counted (imports, the subprocess launcher's template)
WORKER_READY = 90.0  # seconds for a Celery worker to log that it is ready
WORKER_STOP = 30.0
POLL = 0.001  # get_run while waiting for STARTED (1.)
WATCH = 0.05  # get_run while watching a killed run (3.)
DEADLINE = 300.0  # any single wait of the bench
DRAIN_LIMIT = 20
STARTED_OR_LATER = frozenset({S.STARTED, S.SUCCESS, S.FAILURE, S.CANCELING, S.CANCELED})


# the parts' settings ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Sizes:
    samples: int
    runs: int
    concurrency: int
    kills: int
    heartbeat_interval: float
    heartbeat_misses: int
    outage: float
    outage_runs: int
    executor: str = "multiprocess"


def launcher_yaml(broker: str | None) -> str:
    """The celery launcher on `broker`, else the default (subprocess) launcher."""
    if broker is None:
        return ""
    return f"run_launcher:\n  type: celery\n  options:\n    broker_url: {broker}\n"


def queued_yaml(**options: Any) -> str:
    return f"run_coordinator:\n  type: queued\n  options: {json.dumps(options)}\n"


def monitor_yaml(interval: float, misses: int) -> str:
    """Run workers beat every `interval` s; `misses` silent intervals make one dead (the
    launcher's UNKNOWN keeps its default grace, 600 s: the heartbeat is what decides)."""
    return (
        "run_monitoring:\n  poll_interval: 1\n"
        f"  worker_heartbeat_interval: {interval}\n  worker_heartbeat_misses: {misses}\n"
    )


@contextlib.contextmanager
def instance(
    server: sa.engine.URL, extra: str, executor: str = "multiprocess", immediate: bool = False
) -> Iterator[tuple[pathlib.Path, dict[str, str]]]:
    """A migrated instance on a new database with `extra` settings, HTTP off; its home and
    the environment naming it (with `BENCH_COUNT_DIR` for the `resumable` job)."""
    with contextlib.ExitStack() as stack:
        pg_url = stack.enter_context(queue_bench.fresh_database(server))
        home = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vigil-bench-")))
        base = common.config_yaml(pg_url, executor, immediate=immediate)
        (home / "vigil.yaml").write_text(base + extra + "http:\n  enabled: false\n")
        (home / "counts").mkdir()
        env = {**daemon_bench.instance_env(home), "BENCH_COUNT_DIR": str(home / "counts")}
        migrated = daemon_bench.vigil(env, "instance", "migrate")
        if migrated.returncode != 0:
            raise SystemExit(f"vigil instance migrate failed:\n{migrated.stderr.decode()}")
        yield home, env


# redis and Celery workers -----------------------------------------------------------------
@contextlib.contextmanager
def redis() -> Iterator[redis_server.Server]:
    server = redis_server.start()
    try:
        yield server
    finally:
        redis_server.stop(server)


@dataclasses.dataclass
class Worker:
    """One `vigil celery worker`, the leader of its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: pathlib.Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def owns(self, pid: int) -> bool:
        """Whether `pid` (a run worker) descends from this Celery worker."""
        with contextlib.suppress(psutil.NoSuchProcess):
            return self.process.pid in {p.pid for p in psutil.Process(pid).parents()}
        return False


def start_worker(env: dict[str, str], home: pathlib.Path, name: str, concurrency: int) -> Worker:
    log_path = home / f"celery-{name}.log"
    command = [sys.executable, "-m", "vigil", "celery", "worker", "--name", f"{name}@bench"]
    command += ["--concurrency", str(concurrency)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=common.REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = Worker(name, process, log_path)
    wait_ready(worker)
    return worker


def wait_ready(worker: Worker) -> None:
    end = time.monotonic() + WORKER_READY
    while f"{worker.name}@bench ready." not in worker.log():
        if worker.process.poll() is not None or time.monotonic() > end:
            stop_worker(worker)
            raise SystemExit(f"celery worker {worker.name} is not ready:\n{worker.log()[-3000:]}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(0.1)


def stop_worker(worker: Worker) -> None:
    """SIGTERM to its group (a warm shutdown), SIGKILL to what is left at the deadline."""
    if worker.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(WORKER_STOP)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(WORKER_STOP)


@contextlib.contextmanager
def workers(
    env: dict[str, str], home: pathlib.Path, concurrency: int, names: Sequence[str] = ("a", "b")
) -> Iterator[list[Worker]]:
    """Celery workers on the instance, ready; stopped by pid at the end (a list the caller
    may grow with `start_worker`)."""
    started: list[Worker] = []
    try:
        for name in names:
            started.append(start_worker(env, home, name, concurrency))
        yield started
    finally:
        for worker in started:
            stop_worker(worker)


# figures ----------------------------------------------------------------------------------
def rank(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def percentiles(name: str, samples: Sequence[float], target: str = "") -> str:
    ms = [s * 1000 for s in samples]
    return (
        f"{name}: p50 {rank(ms, 50):.1f} ms, p95 {rank(ms, 95):.1f}, max {max(ms):.1f} "
        f"over {len(ms)} runs{target}"
    )


# 1. submission -> STARTED ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Timed:
    """One run of the latency part: when it was submitted (wall clock), the seconds to its
    RUN_START timestamp and to the get_run that showed it STARTED, its launch facts."""

    submitted: float
    stamped: float
    polled: float
    task_id: str | None


async def latencies(home: pathlib.Path, env: dict[str, str], n: int) -> list[Timed]:
    async with common.Launcher(home, env).opened() as bench:
        timed = [await one_latency(bench) for _ in range(WARMUP + n)]
    return timed[WARMUP:]


async def one_latency(bench: common.Launcher) -> Timed:
    run = submission.new_run(bench.workspace, JOB, {}, {}, time.time())
    wall, start = time.time(), time.perf_counter()
    await bench.coordinator.submit(run)
    while (await bench.store.get_run(run.run_id)).status not in STARTED_OR_LATER:
        if time.perf_counter() - start > DEADLINE:
            raise SystemExit(f"run {run.run_id} not STARTED after {DEADLINE:g} s")
        await anyio.sleep(POLL)
    seen = time.perf_counter() - start
    final = await submission.wait_for_end(bench.store, run.run_id)
    if final.status is not S.SUCCESS:
        raise SystemExit(f"run {run.run_id} ended {final.status}")
    [begun] = await bench.store.get_events(run.run_id, event_types=(E.RUN_START,))
    task_id = final.launcher_info.get("task_id")
    return Timed(wall, begun.timestamp - wall, seen, None if task_id is None else str(task_id))


RECEIVED = re.compile(
    r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}): INFO/MainProcess\] "
    r"Task vigil\.run\[([^\]]+)\] received"
)


def received_at(pool: Sequence[Worker]) -> dict[str, float]:
    """When a Celery worker logged each task received (its local time, to the ms)."""
    found: dict[str, float] = {}
    for worker in pool:
        for stamp, ms, task_id in RECEIVED.findall(worker.log()):
            local = time.strptime(stamp, "%Y-%m-%d %H:%M:%S")
            found[task_id] = time.mktime(local) + int(ms) / 1000
    return found


def split_celery(timed: Sequence[Timed], pool: Sequence[Worker]) -> None:
    """Submission -> task received by a Celery worker (launcher, broker), and received ->
    RUN_START (pool process, a new run worker interpreter, its start in the store)."""
    received = received_at(pool)
    pairs = [(t, received[t.task_id]) for t in timed if t.task_id in received]
    if len(pairs) != len(timed):
        print(f"celery     {len(timed) - len(pairs)} tasks not found in the workers' logs")
    if pairs:
        to_worker = [at - t.submitted for t, at in pairs]
        to_start = [t.submitted + t.stamped - at for t, at in pairs]
        print(percentiles("celery       of which submit -> task received (log, ms)", to_worker))
        print(percentiles("celery       of which task received -> RUN_START", to_start))


def measure_latency(server: sa.engine.URL, broker: redis_server.Server, sizes: Sizes) -> None:
    for label, url in (("celery    ", broker.url), ("subprocess", None)):
        with contextlib.ExitStack() as stack:
            made = instance(server, launcher_yaml(url), sizes.executor, immediate=True)
            home, env = stack.enter_context(made)
            pool = [] if url is None else stack.enter_context(workers(env, home, sizes.concurrency))
            timed = anyio.run(latencies, home, env, sizes.samples)
            report_latency(label, timed)
            if pool:
                split_celery(timed, pool)


def report_latency(label: str, timed: Sequence[Timed]) -> None:
    stamped, polled = [t.stamped for t in timed], [t.polled for t in timed]
    target = " (target p50 <= 100 ms)"
    print(percentiles(f"{label} submit -> RUN_START timestamp", stamped, target))
    print(percentiles(f"{label} submit -> get_run shows STARTED (1 ms polls)", polled))


# 2. drain ---------------------------------------------------------------------------------
def one_drain(server: sa.engine.URL, url: str | None, sizes: Sizes) -> float:
    """Runs/s of a drain of `sizes.runs` runs; exits on a drain that does not end SUCCESS."""
    extra = launcher_yaml(url) + queued_yaml(max_concurrent_runs=DRAIN_LIMIT)
    with contextlib.ExitStack() as stack:
        home, env = stack.enter_context(instance(server, extra, sizes.executor))
        if url is not None:
            stack.enter_context(workers(env, home, sizes.concurrency))
        anyio.run(queue_bench.queue_paused, home, env, sizes.runs)
        stack.enter_context(queue_bench.running_daemon(home, env))
        watched, _, (_, most) = anyio.run(queue_bench.drain, home, env, sizes.runs)
    counts = {str(k): v for k, v in sorted(watched.counts.items())}
    if watched.stalled or watched.counts.get(S.SUCCESS, 0) != sizes.runs:
        raise SystemExit(f"drain: after {watched.elapsed:.1f} s the runs are {counts}")
    rate = sizes.runs / watched.elapsed
    print(
        f"{'celery' if url else 'subprocess':10} drain of {sizes.runs} runs: "
        f"{watched.elapsed:.2f} s = {rate:.1f} runs/s, most in flight {most} "
        f"(limit {DRAIN_LIMIT}); end states {counts}"
    )
    return rate


def measure_drain(server: sa.engine.URL, broker: redis_server.Server, sizes: Sizes) -> None:
    celery_rate = one_drain(server, broker.url, sizes)
    subprocess_rate = one_drain(server, None, sizes)
    print(
        f"drain ratio celery / subprocess: {celery_rate / subprocess_rate:.2f} "
        f"(goal >= 0.8; celery: 2 workers x concurrency {sizes.concurrency}; "
        f"{sizes.executor} executor)"
    )


# 3. a Celery worker killed mid-run --------------------------------------------------------
@dataclasses.dataclass
class Kill:
    noticed: float  # seconds from the kill until the monitor resumed the run
    restarted: float  # ... until it was STARTED again by another run worker
    ended: float  # ... until it ended
    status: runs.RunStatus
    firsts: int  # executions of the first step
    seconds: int  # executions of the second
    taken_by: str  # the Celery worker whose log shows the resume task


async def submit(home: pathlib.Path, env: dict[str, str], job: str) -> str:
    async with common.Launcher(home, env).opened() as bench:
        run = submission.new_run(bench.workspace, job, {}, {}, time.time())
        await bench.coordinator.submit(run)
        return run.run_id


def count(home: pathlib.Path, run_id: str, step: str) -> int:
    path = home / "counts" / f"{run_id}.{step}"
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_until(what: str, done: Callable[[], bool]) -> None:
    end = time.monotonic() + DEADLINE
    while not done():
        if time.monotonic() > end:
            raise SystemExit(f"not within {DEADLINE:g} s: {what}")
        time.sleep(WATCH)


async def watch_resume(home: pathlib.Path, env: dict[str, str], run_id: str) -> Kill:
    """Poll the run from the kill until it ends; the moments it was resumed (polled) and
    restarted (the new run worker's "resumed" event, stamped by the worker: a quick run can
    be resumed and end between two polls)."""
    killed, killed_at, noticed = time.perf_counter(), time.time(), math.nan
    async with common.Launcher(home, env).opened() as bench:
        while True:
            run = await bench.store.get_run(run_id)
            now = time.perf_counter() - killed
            if run.resume_attempt >= 1 and math.isnan(noticed):
                noticed = now
            if run.status.is_terminal or now > DEADLINE:
                break
            await anyio.sleep(WATCH)
        engine = await bench.store.get_events(run_id, event_types=(E.ENGINE,))
    resumed = [e.timestamp for e in engine if e.message.endswith(" resumed")]
    restarted = min(resumed, default=math.nan) - killed_at
    return Kill(noticed, restarted, now, run.status, 0, 0, "")


def one_kill(home: pathlib.Path, env: dict[str, str], pool: list[Worker], sizes: Sizes) -> Kill:
    run_id = anyio.run(submit, home, env, "resumable")
    wait_until(f"the second step of {run_id} runs", lambda: count(home, run_id, "second") == 1)
    run = anyio.run(show, home, env, run_id)
    assert run.worker_pid is not None
    [victim] = [w for w in pool if w.owns(run.worker_pid)]
    os.killpg(victim.process.pid, signal.SIGKILL)
    victim.process.wait(WORKER_STOP)
    pool.remove(victim)
    found = anyio.run(watch_resume, home, env, run_id)
    found.firsts, found.seconds = count(home, run_id, "first"), count(home, run_id, "second")
    takers = [w.name for w in pool if f"vigil.run[{run_id}:" in w.log()]
    found.taken_by = ",".join(takers) or "none"
    pool.append(start_worker(env, home, f"{victim.name}2", sizes.concurrency))
    return found


async def show(home: pathlib.Path, env: dict[str, str], run_id: str) -> runs.Run:
    async with common.Launcher(home, env).opened() as bench:
        return await bench.store.get_run(run_id)


def measure_kill(server: sa.engine.URL, broker: redis_server.Server, sizes: Sizes) -> None:
    beats = monitor_yaml(sizes.heartbeat_interval, sizes.heartbeat_misses)
    extra = launcher_yaml(broker.url) + queued_yaml() + beats
    found: list[Kill] = []
    with contextlib.ExitStack() as stack:
        home, env = stack.enter_context(instance(server, extra))
        pool = stack.enter_context(workers(env, home, 1))
        stack.enter_context(queue_bench.running_daemon(home, env))
        for _ in range(sizes.kills):
            found.append(one_kill(home, env, pool, sizes))
    for kill in found:
        print(
            f"celery worker SIGKILLed mid-run: resumed after {kill.noticed:.1f} s "
            f"(target <= 15 s; worker heartbeat every {sizes.heartbeat_interval:g} s, dead after "
            f"{sizes.heartbeat_misses} silent, monitor poll 1 s), "
            f"STARTED again after {kill.restarted:.1f} s on worker {kill.taken_by}, "
            f"ended {kill.status} after {kill.ended:.1f} s; "
            f"first step ran {kill.firsts}x (must be 1), second {kill.seconds}x"
        )
    if len(found) > 1:
        print(common.figures("kill -> resumed", [k.noticed for k in found], "s", 1.0))


# 4. broker outage -------------------------------------------------------------------------
async def outcome(
    home: pathlib.Path, env: dict[str, str]
) -> tuple[list[runs.Run], dict[str, list[float]], int]:
    """Every run, each run's RUN_START timestamps, and how many launches the queue gave
    back because the broker could not be reached."""
    async with common.Launcher(home, env).opened() as bench:
        final = await bench.store.list_runs()
        starts: dict[str, list[float]] = {}
        given_back = 0
        for run in final:
            found = await bench.store.get_events(run.run_id, event_types=(E.RUN_START, E.ENGINE))
            starts[run.run_id] = [e.timestamp for e in found if e.event_type is E.RUN_START]
            given_back += sum("back in the queue" in e.message for e in found)
        return final, starts, given_back


async def wait_all_ended(home: pathlib.Path, env: dict[str, str], n: int) -> None:
    async with common.Launcher(home, env).opened() as bench:
        end = time.monotonic() + DEADLINE
        while True:
            counts = await bench.store.count_runs_by_status()
            if sum(counts.get(s, 0) for s in runs.TERMINAL_STATUSES) >= n:
                return
            if time.monotonic() > end:
                raise SystemExit(f"outage: not all {n} runs ended: {counts}")
            await anyio.sleep(0.1)


def submit_during(home: pathlib.Path, env: dict[str, str], sizes: Sizes) -> None:
    """Submit the runs spread over the outage, then wait out the rest of it."""
    end = time.monotonic() + sizes.outage
    for _ in range(sizes.outage_runs):
        anyio.run(submit, home, env, JOB)
        time.sleep(random.uniform(0, sizes.outage / sizes.outage_runs))
    time.sleep(max(0.0, end - time.monotonic()))


def measure_outage(server: sa.engine.URL, sizes: Sizes) -> None:
    broker = redis_server.start()
    extra = launcher_yaml(broker.url)
    extra += queued_yaml(max_concurrent_runs=DRAIN_LIMIT, unavailable_retry=1)
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: redis_server.stop(broker))
        home, env = stack.enter_context(instance(server, extra))
        stack.enter_context(workers(env, home, sizes.concurrency))
        stack.enter_context(queue_bench.running_daemon(home, env))
        redis_server.stop(broker)
        submit_during(home, env, sizes)
        broker = redis_server.start(port=broker.port)
        back = time.time()
        anyio.run(wait_all_ended, home, env, sizes.outage_runs)
        final, starts, given_back = anyio.run(outcome, home, env)
    report_outage(sizes, final, starts, back)
    print(f"broker down: {given_back} launches given back to the queue while it was away")


def report_outage(
    sizes: Sizes, final: Sequence[runs.Run], starts: dict[str, list[float]], back: float
) -> None:
    lost = [r.run_id for r in final if r.status is not S.SUCCESS]
    twice = [run_id for run_id, stamps in starts.items() if len(stamps) > 1]
    first = min((min(s) for s in starts.values() if s), default=math.nan)
    last = max((r.end_time or math.nan for r in final), default=math.nan)
    print(
        f"broker down {sizes.outage:g} s, {sizes.outage_runs} runs submitted meanwhile: "
        f"{len(final)} runs in the store, {len(lost)} not SUCCESS (must be 0), "
        f"{len(twice)} started more than once (must be 0); broker back -> first RUN_START "
        f"{first - back:.1f} s, -> last run ended {last - back:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--samples", type=int, default=100, help="runs timed (1.)")
    parser.add_argument("--runs", type=int, default=1000, help="runs drained (2.)")
    parser.add_argument("--concurrency", type=int, default=10, help="per Celery worker (1., 2.)")
    parser.add_argument("--kills", type=int, default=5, help="workers killed (3.)")
    parser.add_argument(
        "--heartbeat-interval", type=float, default=2.0, help="run workers' beat, seconds (3.)"
    )
    parser.add_argument(
        "--heartbeat-misses", type=int, default=5, help="silent beats: worker dead (3.)"
    )
    parser.add_argument("--outage", type=float, default=30.0, help="broker down, seconds (4.)")
    parser.add_argument("--outage-runs", type=int, default=20, help="runs submitted (4.)")
    parser.add_argument("--executor", default="multiprocess", help="of the runs (1., 2.)")
    parser.add_argument("--parts", default="latency,drain,kill,outage")
    args = parser.parse_args()
    sizes = Sizes(
        args.samples, args.runs, args.concurrency, args.kills,
        args.heartbeat_interval, args.heartbeat_misses,
        args.outage, args.outage_runs, args.executor,
    )  # fmt: skip
    if args.quick:
        sizes = dataclasses.replace(sizes, samples=5, runs=40, kills=1, outage=5, outage_runs=5)
    parts = set(args.parts.split(","))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average {load} before the bench; {sizes}")
    with common.postgres() as server, redis() as broker:
        if "latency" in parts:
            measure_latency(server, broker, sizes)
        if "drain" in parts:
            measure_drain(server, broker, sizes)
        if "kill" in parts:
            measure_kill(server, broker, sizes)
        if "outage" in parts:
            measure_outage(server, sizes)


if __name__ == "__main__":
    main()
