"""Soak: a big history answers promptly, and a daemon under steady traffic stays flat.

1. History: runs ended over the last 30 days (100,000 in the long form, 5,000 in the
   short), with their events, 200 queued runs held by a paused queue, and 1,000 schedules
   (a code location that makes them in a loop, running, daily at 03:00) with 10 past ticks
   each; a real daemon runs over it. `vigil run list`, `vigil queue` and `vigil daemon
   status` are timed as a user runs them (a process each, the median of 3), on SQLite and
   PostgreSQL (SQLite only in the short form, to keep `make test` short). Bound: 1 s of
   wall time in the long form; in the short form, which runs in `make test` beside other
   work, 5 s of the command's own CPU time (a loaded machine stretches the wall time, not
   that). Both figures are printed.
2. Steady traffic, on PostgreSQL: the daemon runs 10 minutes (long form; 60 s short) while
   runs are submitted at a steady 2 a second and 3 per-second schedules ask for a run every
   10 s. Every 10 s (5 s short) the daemon's RSS and its loops' lag are sampled: the delay
   from a schedule tick's time to its evaluation and the mean iteration time of each loop,
   from /metrics over the last interval. From the first sample after the warm-up to the
   end, RSS grows under 10 % (50 % short) and the lag stays flat.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import resource
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Sequence

import anyio
import psutil
import pytest
from prometheus_client import parser

from tests.acceptance.harness import REPO, Instance
from tests.crash import harness
from tests.daemon.process import Daemon, Daemons, free_port
from tests.reliability.conftest import chaos_long
from tests.waiting import eventually
from vigil import assembly, events, runs, submission, ticks
from vigil.config import loader
from vigil.definitions import workspace as workspace_mod

LONG = chaos_long()
DEFS = REPO / "tests" / "reliability" / "soak_defs.py"
S = runs.RunStatus
E = events.EventType
DAY = 86400.0

HISTORY = 100_000 if LONG else 5_000
QUEUED = 200
SCHEDULES = 1000
TICKS_EACH = 10
BATCH = 1000
REPEATS = 3
CLI_BOUND = 1.0 if LONG else 5.0
COMMANDS = (("run", "list"), ("queue",), ("daemon", "status"))

TRAFFIC_SECONDS = 600.0 if LONG else 60.0
WARM_UP = 60.0 if LONG else 15.0
SAMPLE_EVERY = 10.0 if LONG else 5.0
RUNS_PER_SECOND = 2.0
BUSY_SCHEDULES = 3
RSS_GROWTH = 0.10 if LONG else 0.50
LAG_SLACK = 0.5 if LONG else 2.0  # seconds a late lag may exceed twice the early one

pytestmark = pytest.mark.chaos


def configure(instance: Instance, queued: str, http_port: int | None = None) -> None:
    text = (instance.home / "vigil.yaml").read_text()
    store_section = text[text.index("store:") :] if "store:" in text else ""
    http = f"{{enabled: true, port: {http_port}}}" if http_port else "{enabled: false}"
    instance.write_config(
        f"workspace:\n  - name: soak\n    file: {DEFS}\n"
        f"run_coordinator:\n  type: queued\n  options: {queued}\n"
        "executor:\n  type: in_process\n"
        "daemon: {heartbeat_interval: 1, shutdown_grace: 20}\n"
        f"http: {http}\n" + store_section
    )


# 1. a big history ------------------------------------------------------------------------
@pytest.mark.timeout(1800 if LONG else 300)
@pytest.mark.parametrize(
    "instance",
    [
        "sqlite",
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not LONG, reason="PostgreSQL in the long form (make chaos)"),
            ],
        ),
    ],
    indirect=True,
)
async def test_a_big_history_answers_the_cli_promptly(instance: Instance, daemons: Daemons) -> None:
    configure(instance, "{max_concurrent_runs: 10}")
    instance.env["SOAK_IDLE_SCHEDULES"] = str(SCHEDULES)
    filled = time.monotonic()
    await fill_history(instance)
    filled = time.monotonic() - filled
    instance.ok("queue", "pause")
    daemon = daemons.start()
    await loops_working(instance, daemon, ("queue", "scheduler"))

    timings = {" ".join(c): await timed(instance, c) for c in COMMANDS}
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0, daemon.log()
    store = "postgres" if "store:" in (instance.home / "vigil.yaml").read_text() else "sqlite"
    shown = ", ".join(f"`vigil {c}` {s.wall:.2f} s ({s.cpu:.2f} s CPU)" for c, s in timings.items())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"soak history ({store}, {HISTORY} runs, {SCHEDULES} schedules, filled in "
        f"{filled:.0f} s; load average {load}): median of {REPEATS}: {shown} "
        f"(bound {CLI_BOUND:g} s {'wall' if LONG else 'CPU'})"
    )
    slow = {c: s for c, s in timings.items() if s.bounded > CLI_BOUND}
    assert not slow, f"slower than {CLI_BOUND:g} s: {slow}"


async def loops_working(instance: Instance, daemon: Daemon, loops: Sequence[str]) -> None:
    """Until the daemon's heartbeats show each loop past its first iteration (read from
    the store here: a `vigil daemon status` a poll would cost seconds on a busy machine)."""
    async with harness.opened(instance) as store:

        async def working() -> bool:
            assert daemon.process.poll() is None, daemon.log()
            beats = {b.loop: b for b in await store.list_heartbeats() if b.pid == daemon.pid}
            return all(loop in beats and beats[loop].info.get("iterations", 0) for loop in loops)

        await eventually(working, 120.0)


async def fill_history(instance: Instance) -> None:
    """Ended runs with their events, queued runs, schedules' states and past ticks."""
    now = time.time()
    async with harness.opened(instance) as store:
        for start in range(0, HISTORY, BATCH):
            made = [ended_run(i, now) for i in range(start, min(start + BATCH, HISTORY))]
            await store.add_runs([r for r, _ in made], [e for _, evs in made for e in evs])
        queued = [queued_run(i, now) for i in range(QUEUED)]
        await store.add_runs(queued, [enqueued(r) for r in queued])
        names = [(f"schedule:idle{i}", ticks.InstigatorKind.SCHEDULE) for i in range(SCHEDULES)]
        await store.ensure_instigators(names, now - 30 * DAY)
        for day in range(TICKS_EACH):
            at = now - (day + 1) * DAY
            await store.add_ticks([(name, at) for name, _ in names], ticks.TickStatus.SKIPPED, at)


def ended_run(i: int, now: float) -> tuple[runs.Run, list[events.NewEvent]]:
    """Run i of the history: ended SUCCESS (one in ten FAILURE) within the last 30 days."""
    end = now - 30 * DAY * (HISTORY - i) / HISTORY
    status = S.FAILURE if i % 10 == 0 else S.SUCCESS
    run_id = str(uuid.uuid4())
    run = runs.Run(
        run_id=run_id,
        job_name="soak",
        status=status,
        tags={"team": f"t{i % 7}"},
        code_location="soak",
        root_run_id=run_id,
        created_at=end - 2.0,
        updated_at=end,
        start_time=end - 1.0,
        end_time=end,
    )
    end_type = E.RUN_FAILURE if status is S.FAILURE else E.RUN_SUCCESS
    return run, [
        events.NewEvent(run_id, E.RUN_STARTING, end - 1.5, message="claimed"),
        events.NewEvent(run_id, E.RUN_START, end - 1.0, message="started"),
        events.NewEvent(run_id, E.STEP_SUCCESS, end - 0.5, step="nothing"),
        events.NewEvent(run_id, end_type, end, message="ended"),
    ]


def queued_run(i: int, now: float) -> runs.Run:
    run_id = str(uuid.uuid4())
    return runs.Run(
        run_id=run_id,
        job_name="soak",
        status=S.QUEUED,
        tags={"team": f"t{i % 7}"},
        code_location="soak",
        root_run_id=run_id,
        created_at=now + i * 0.001,
        updated_at=now,
    )


def enqueued(run: runs.Run) -> events.NewEvent:
    return events.NewEvent(run.run_id, E.RUN_ENQUEUED, run.created_at, message="queued")


@dataclasses.dataclass(frozen=True)
class Timing:
    """The median wall time of a command and the median CPU time (user + system) its
    process used: the first is what a user waits, the second what vigil costs whatever
    else loads the machine."""

    wall: float
    cpu: float

    @property
    def bounded(self) -> float:
        """What the bound applies to: the wait in the long form; the CPU in the short one,
        which runs in `make test` beside other work."""
        return self.wall if LONG else self.cpu


async def timed(instance: Instance, command: Sequence[str]) -> Timing:
    """`vigil COMMAND` run REPEATS times as a process, which must succeed each time."""
    walls, cpus = [], []
    for _ in range(REPEATS):
        before = _children_cpu()
        start = time.perf_counter()
        done = await anyio.run_process(
            [sys.executable, "-m", "vigil", *command],
            cwd=instance.cwd,
            env=instance.env,
            check=False,
        )
        walls.append(time.perf_counter() - start)
        cpus.append(_children_cpu() - before)
        assert done.returncode == 0, f"vigil {' '.join(command)}: {done.stderr.decode()}"
    return Timing(statistics.median(walls), statistics.median(cpus))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# 2. steady traffic -----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Sample:
    at: float  # seconds since the daemon was ready
    rss: int
    tick_delay: float | None  # mean over the interval since the last sample
    iteration: dict[str, float]  # loop -> mean iteration seconds over the interval
    queued: int


@dataclasses.dataclass(frozen=True)
class Scrape:
    delay_sum: float
    delay_count: float
    iteration_sum: dict[str, float]
    iteration_count: dict[str, float]


@pytest.mark.timeout(1800 if LONG else 300)
@pytest.mark.parametrize(
    "instance", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_daemon_under_steady_traffic_stays_flat(
    instance: Instance, daemons: Daemons
) -> None:
    port = free_port()
    configure(instance, "{max_concurrent_runs: 10, poll_interval: 1}", http_port=port)
    instance.env["SOAK_BUSY_SCHEDULES"] = str(BUSY_SCHEDULES)
    daemon = daemons.start()
    await loops_working(instance, daemon, ("queue", "scheduler"))
    submitted: list[str] = []
    async with anyio.create_task_group() as group:
        group.start_soon(submit_steadily, instance, submitted, TRAFFIC_SECONDS)
        samples = await sample(instance, daemon, port, TRAFFIC_SECONDS)
    await harness.wait_until_ended(instance, submitted, 120.0)
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0, daemon.log()

    print(describe(samples, len(submitted)))
    problems = flatness_problems(samples)
    assert not problems, "\n".join([describe(samples, len(submitted)), *problems])
    found = await harness.runs_by_id(instance, submitted)
    assert {r.status for r in found.values()} == {S.SUCCESS}


async def submit_steadily(instance: Instance, submitted: list[str], seconds: float) -> None:
    """Queue runs of the job at RUNS_PER_SECOND for `seconds`, on an absolute timetable."""
    settings = loader.load_settings(instance.home)
    workspace = workspace_mod.load_workspace(settings.workspace, instance.cwd)
    context = assembly.launch_context(settings, instance.env, instance.cwd)
    launcher = assembly.build_launcher(settings, context)
    start = anyio.current_time()
    async with harness.opened(instance) as store:
        coordinator = assembly.build_coordinator(settings, store, launcher, time.time)
        try:
            for n in range(int(seconds * RUNS_PER_SECOND)):
                await anyio.sleep_until(start + n / RUNS_PER_SECOND)
                run = submission.new_run(workspace, "soak", {}, {}, time.time())
                submitted.append((await coordinator.submit(run)).run_id)
        finally:
            await launcher.close()


async def sample(instance: Instance, daemon: Daemon, port: int, seconds: float) -> list[Sample]:
    """A sample every SAMPLE_EVERY seconds for `seconds` (the daemon must stay up)."""
    process = psutil.Process(daemon.pid)
    began = time.monotonic()
    last = await scrape(port)
    samples = []
    async with harness.opened(instance) as store:
        while time.monotonic() - began < seconds:
            await stays_up(daemon, SAMPLE_EVERY)
            now = await scrape(port)
            queued = (await store.count_runs_by_status()).get(S.QUEUED, 0)
            samples.append(between(last, now, time.monotonic() - began, process, queued))
            last = now
    return samples


async def stays_up(daemon: Daemon, seconds: float) -> None:
    """Wait `seconds`, failing at once if the daemon exits meanwhile."""

    async def exited() -> bool:
        return daemon.process.poll() is not None

    with anyio.move_on_after(seconds):
        await eventually(exited, seconds + 1.0)
    assert daemon.process.poll() is None, f"the daemon exited:\n{daemon.log()}"


def between(last: Scrape, now: Scrape, at: float, process: psutil.Process, queued: int) -> Sample:
    ticks_seen = now.delay_count - last.delay_count
    delay = (now.delay_sum - last.delay_sum) / ticks_seen if ticks_seen else None
    iteration = {}
    for loop, count in now.iteration_count.items():
        done = count - last.iteration_count.get(loop, 0.0)
        if done:
            spent = now.iteration_sum[loop] - last.iteration_sum.get(loop, 0.0)
            iteration[loop] = spent / done
    return Sample(at, process.memory_info().rss, delay, iteration, queued)


async def scrape(port: int) -> Scrape:
    text = await anyio.to_thread.run_sync(get_metrics, port)
    found = Scrape(0.0, 0.0, {}, {})
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "vigil_tick_delay_seconds_sum" and s.labels.get("kind") == "schedule":
                found = dataclasses.replace(found, delay_sum=s.value)
            elif s.name == "vigil_tick_delay_seconds_count" and s.labels.get("kind") == "schedule":
                found = dataclasses.replace(found, delay_count=s.value)
            elif s.name == "vigil_loop_iteration_duration_seconds_sum":
                found.iteration_sum[s.labels["loop"]] = s.value
            elif s.name == "vigil_loop_iteration_duration_seconds_count":
                found.iteration_count[s.labels["loop"]] = s.value
    return found


def get_metrics(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200, response.status
        return response.read().decode()
    finally:
        conn.close()


def flatness_problems(samples: Sequence[Sample]) -> list[str]:
    """RSS and lag from the first sample after the warm-up to the end."""
    warm = [s for s in samples if s.at >= WARM_UP]
    if len(warm) < 3:
        return [f"only {len(warm)} samples after the warm-up"]
    first, last = warm[0], warm[-1]
    problems = []
    growth = (last.rss - first.rss) / first.rss
    if growth >= RSS_GROWTH:
        problems.append(f"RSS grew {growth:.1%} (bound {RSS_GROWTH:.0%})")
    early, late = _mean_lag(warm[:3]), _mean_lag(warm[-3:])
    if early is None or late is None:
        problems.append("no schedule tick seen in a window")
    elif late > 2 * early + LAG_SLACK:
        problems.append(f"tick delay grew from {early * 1000:.0f} ms to {late * 1000:.0f} ms")
    return problems


def _mean_lag(window: Sequence[Sample]) -> float | None:
    delays = [s.tick_delay for s in window if s.tick_delay is not None]
    return statistics.mean(delays) if delays else None


def describe(samples: Sequence[Sample], submitted: int) -> str:
    rows = [
        f"  {s.at:6.0f} s  RSS {s.rss / 2**20:6.1f} MiB  tick delay "
        f"{'-' if s.tick_delay is None else f'{s.tick_delay * 1000:.0f} ms'}  "
        f"queued {s.queued}  iterations "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(s.iteration.items()))
        for s in samples
    ]
    return (
        f"soak traffic ({'long' if LONG else 'short'} form): {submitted} runs submitted over "
        f"{TRAFFIC_SECONDS:g} s, {BUSY_SCHEDULES} per-second schedules; warm-up {WARM_UP:g} s\n"
        + "\n".join(rows)
    )
