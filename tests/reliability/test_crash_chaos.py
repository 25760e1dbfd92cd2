"""Crash chaos: a real daemon SIGKILLed at random moments under load loses, repeats and
overshoots nothing.

On PostgreSQL: runs queued under a global limit and a tag limit, schedules on a per-second
cron (catch-up policies latest, all and none in turn), sensors with run keys
(`chaos_defs.py`); a real `vigil daemon run` is SIGKILLed at a seeded random moment (one
kill in five while it starts, the others 0 to 8 s (5 s short) after it logged its start,
its loops at work), restarted once its heartbeats are stale, again and again. Then the
last daemon catches up, the instigators are stopped, the runs drain and the daemon stops
on SIGTERM. Afterwards:

- every run ended SUCCESS once, its one step ran exactly once (the step's own log line),
  nothing ended by the start timeout; no run was started by a second worker without a
  resume granting it;
- replaying the claims and ends from the event log in commit order, the runs in flight
  never exceeded the global limit nor the tag limit;
- every schedule has one tick per second from its first to its last, MISSED exactly where
  its catch-up policy says, each tick evaluated by at most one daemon that lived on (see
  `checks.py`), none left STARTED;
- every sensor's run keys are gapless;
- no process of a killed daemon (evaluation processes, the worker template, workers) is
  left once the runs have ended.

Short form (`make test`): 40 runs, 4 schedules, 2 sensors, 3 kills. Long form (`make
chaos`): 300 runs, 20 schedules, 5 sensors, 20 kills. The seed (VIGIL_TEST_CHAOS_SEED)
picks the delays and is printed with a failure.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import pathlib
import random
import signal
import time
from collections.abc import Sequence

import anyio
import psutil
import pytest

from tests.acceptance.harness import REPO, Instance
from tests.crash import harness
from tests.daemon.process import Daemon, Daemons
from tests.reliability import chaos_defs, checks
from tests.reliability.conftest import chaos_long
from tests.waiting import eventually
from vigil import assembly, runs, storage, submission, ticks
from vigil.config import loader
from vigil.definitions import workspace as workspace_mod


@dataclasses.dataclass(frozen=True)
class Size:
    runs: int
    schedules: int
    sensors: int
    kills: int
    drain_deadline: float


LONG = chaos_long()
SIZE = Size(300, 20, 5, 20, 600.0) if LONG else Size(40, 4, 2, 3, 180.0)
GLOBAL_LIMIT = 10
TAG_LIMIT = 3
STARTING_SHARE = 0.2  # of the kills, while the daemon starts
STARTING = (0.2, 2.0)  # seconds from its process start to such a kill, drawn uniformly
ALIVE = (0.0, 8.0 if LONG else 5.0)  # seconds from "daemon started" to the other kills
GRACE = 2.0  # scheduling.catchup_grace: a `none` tick this late still runs
SENSOR_INTERVAL = 1.0
SUBMIT_BATCH = 100
DEFS = REPO / "tests" / "reliability" / "chaos_defs.py"
S = runs.RunStatus
T = ticks.TickStatus

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]


@pytest.mark.timeout(3600 if LONG else 420)
@pytest.mark.parametrize("instance", ["postgres"], indirect=True)
async def test_a_daemon_killed_at_random_loses_repeats_and_overshoots_nothing(
    instance: Instance, daemons: Daemons, tmp_path: pathlib.Path, seed: int
) -> None:
    started = time.monotonic()
    configure(instance)
    await submit(instance, SIZE.runs)
    env = chaos_env(tmp_path)
    delays = random.Random(seed)
    killed: list[Killed] = []
    for _ in range(SIZE.kills):
        daemon = daemons.start(env=env)
        killed.append(await kill_at_random(daemon, delays))
        await harness.wait_until_stale(instance)
    last = daemons.start(env=env)
    await drain(instance, last, time.time())

    found = await all_runs(instance)
    await workers_gone(found, tmp_path)
    last.send(signal.SIGTERM)
    assert await last.exit_code() == 0, last.log()
    problems = await outcome_problems(instance, found, tmp_path)
    problems += await tick_problems(instance, tmp_path, {k.pid for k in killed})
    problems += leftover_problems(killed)
    summary = await summarize(instance, found, killed, time.monotonic() - started)
    print(summary)
    assert not problems, "\n".join([summary, *problems[:60]])


# the instance ----------------------------------------------------------------------------
def configure(instance: Instance) -> None:
    text = (instance.home / "vigil.yaml").read_text()
    store_section = text[text.index("store:") :]
    limits = f"[{{key: pool, value: narrow, limit: {TAG_LIMIT}}}]"
    instance.write_config(
        f"workspace:\n  - name: chaos\n    file: {DEFS}\n"
        "run_coordinator:\n  type: queued\n"
        f"  options: {{max_concurrent_runs: {GLOBAL_LIMIT}, poll_interval: 0.5,"
        f" tag_concurrency_limits: {limits}}}\n"
        "executor:\n  type: in_process\n"
        # A start timeout far beyond the drain: no run may end by it.
        "run_monitoring: {poll_interval: 0.5, start_timeout: 900}\n"
        "run_retries: {enabled: false}\n"
        f"scheduling: {{poll_interval: 0.5, catchup_grace: {GRACE}}}\n"
        "daemon:\n  heartbeat_interval: 0.3\n  shutdown_grace: 20\n"
        "  restart_backoff: {base: 0.1, factor: 2, cap: 0.4, jitter: 0.1}\n"
        "http:\n  enabled: false\n" + store_section
    )


def chaos_env(tmp_path: pathlib.Path) -> dict[str, str]:
    return {
        **harness.daemon_env(tmp_path),
        "CHAOS_SCHEDULES": str(SIZE.schedules),
        "CHAOS_SENSORS": str(SIZE.sensors),
        "CHAOS_SENSOR_INTERVAL": str(SENSOR_INTERVAL),
        "CHAOS_EVALUATIONS": str(evaluation_log(tmp_path)),
    }


def evaluation_log(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "evaluations.log"


async def submit(instance: Instance, count: int) -> None:
    """Queue `count` runs of the job, every third tagged for the tag limit."""
    settings = loader.load_settings(instance.home)
    workspace = workspace_mod.load_workspace(settings.workspace, instance.cwd)
    context = assembly.launch_context(settings, instance.env, instance.cwd)
    launcher = assembly.build_launcher(settings, context)
    made = [
        submission.new_run(workspace, "chaos", {}, chaos_defs.tags_for(i), time.time())
        for i in range(count)
    ]
    async with harness.opened(instance) as store:
        coordinator = assembly.build_coordinator(settings, store, launcher, time.time)
        try:
            for start in range(0, count, SUBMIT_BATCH):
                await coordinator.submit_many(made[start : start + SUBMIT_BATCH])
        finally:
            await launcher.close()


# the kills -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Killed:
    """A daemon SIGKILLed `alive` seconds into a phase (starting: since its process began;
    running: since it logged its start), and its descendants (pid, start time) then."""

    pid: int
    phase: str
    alive: float
    descendants: tuple[tuple[int, float], ...]


async def kill_at_random(daemon: Daemon, rng: random.Random) -> Killed:
    """SIGKILL the daemon at a random moment: while it starts (STARTING_SHARE of the kills,
    within its first seconds), else once it said it started, after a random delay."""
    if rng.random() < STARTING_SHARE:
        delay, phase = rng.uniform(*STARTING), "starting"
    else:
        delay, phase = rng.uniform(*ALIVE), "running"
        await daemon.logged("daemon.started", 120.0)
    await stays_up(daemon, delay)
    descendants = _descendants(daemon.pid)
    daemon.send(signal.SIGKILL)
    assert await daemon.exit_code() == -signal.SIGKILL
    return Killed(daemon.pid, phase, delay, descendants)


async def stays_up(daemon: Daemon, seconds: float) -> None:
    """Wait `seconds`, failing at once if the daemon exits meanwhile."""

    async def exited() -> bool:
        return daemon.process.poll() is not None

    with anyio.move_on_after(seconds):
        await eventually(exited, seconds + 1.0)
    assert daemon.process.poll() is None, f"the daemon exited by itself:\n{daemon.log()}"


def _descendants(pid: int) -> tuple[tuple[int, float], ...]:
    found = []
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                found.append((child.pid, child.create_time()))
    return tuple(found)


def leftover_problems(killed: Sequence[Killed]) -> list[str]:
    """Processes of killed daemons still alive (the same pid and start time)."""
    problems = []
    for daemon in killed:
        for pid, created in daemon.descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                process = psutil.Process(pid)
                if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                    problems.append(f"left by killed daemon {daemon.pid}: {process.cmdline()}")
    return problems


# the drain -------------------------------------------------------------------------------
async def drain(instance: Instance, daemon: Daemon, since: float) -> None:
    """The last daemon ticks every instigator afresh, then they are stopped, the ticks
    finish and every run ends."""
    async with harness.opened(instance) as store:

        async def caught_up() -> bool:
            assert daemon.process.poll() is None, daemon.log()
            latest = await store.latest_ticks()
            fresh = [t for t in latest.values() if t.created_at > since and t.status.is_final]
            return len(fresh) == SIZE.schedules + SIZE.sensors

        await eventually(caught_up, 120.0)
        for state in await store.list_instigators():
            await store.set_instigator_status(
                state.name, state.kind, ticks.InstigatorStatus.STOPPED, time.time()
            )

        async def ticks_finished() -> bool:
            return not await store.list_ticks(statuses=[T.STARTED])

        await eventually(ticks_finished, 60.0)
    found = await all_runs(instance)
    await harness.wait_until_ended(instance, list(found), SIZE.drain_deadline)


async def all_runs(instance: Instance) -> dict[str, runs.Run]:
    async with harness.opened(instance) as store:
        return {r.run_id: r for r in await store.list_runs()}


async def workers_gone(found: dict[str, runs.Run], tmp_path: pathlib.Path) -> None:
    """Until no worker is left: the runs' recorded workers and the processes that wrote
    step lines (the last daemon's own evaluation processes and template stay)."""
    recorded = {r.launcher_info.get("pid") for r in found.values()}
    recorded |= {r.worker_pid for r in found.values()}
    recorded |= {int(line.split()[2]) for line in harness.step_lines(tmp_path)}
    pids = {int(pid) for pid in recorded if pid is not None}

    def alive() -> list[int]:
        return [pid for pid in pids if _alive(pid)]

    async def gone() -> bool:
        return not alive()

    try:
        await eventually(gone, 60.0)
    except TimeoutError:
        raise AssertionError(f"workers left after the runs ended: {alive()}") from None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# the checks ------------------------------------------------------------------------------
async def outcome_problems(
    instance: Instance, found: dict[str, runs.Run], tmp_path: pathlib.Path
) -> list[str]:
    """Each run SUCCESS once, its step run once, started by one worker; the limits held."""
    executions = harness.step_executions(tmp_path)
    problems = await harness.outcome_problems(instance, list(found), ("jot_first",), executions)
    async with harness.opened(instance) as store:
        for run_id in found:
            problems += checks.start_problems(run_id, await store.get_events(run_id))
        limits = await replay(store, found)
    if limits.most > GLOBAL_LIMIT:
        problems.append(f"{limits.most} runs in flight at event {limits.most_at}")
    if limits.most_tagged > TAG_LIMIT:
        problems.append(f"{limits.most_tagged} pool=narrow in flight at {limits.most_tagged_at}")
    return problems


async def replay(store: storage.Store, found: dict[str, runs.Run]) -> checks.Replay:
    tagged = checks.tagged_runs(found.values(), chaos_defs.NARROW)
    claims_and_ends = []
    after = 0
    while batch := await store.events_after(after, 1000, checks.CLAIM_AND_END):
        claims_and_ends += batch
        after = batch[-1].event_id
    return checks.replay_limits(claims_and_ends, tagged)


async def tick_problems(instance: Instance, tmp_path: pathlib.Path, killed: set[int]) -> list[str]:
    log = evaluation_log(tmp_path)
    lines = log.read_text().splitlines() if log.exists() else []
    evaluations: dict[str, list[checks.Evaluation]] = collections.defaultdict(list)
    for line in lines:
        evaluation = checks.Evaluation.parse(line)
        evaluations[evaluation.instigator].append(evaluation)
    problems: list[str] = []
    async with harness.opened(instance) as store:
        for i in range(SIZE.schedules):
            name = f"schedule:s{i}"
            policy = checks.schedule_policy(name, GRACE)
            found = await store.list_ticks(name)
            problems += checks.schedule_problems(name, found, policy, evaluations[name], killed)
        for i in range(SIZE.sensors):
            name = f"sensor:n{i}"
            made = await store.instigator_runs(name)
            problems += checks.sensor_problems(name, [r.run_key or "" for r in made])
    return problems


async def summarize(
    instance: Instance, found: dict[str, runs.Run], killed: Sequence[Killed], seconds: float
) -> str:
    async with harness.opened(instance) as store:
        statuses = collections.Counter(str(r.status) for r in found.values())
        made_by = collections.Counter((r.instigator or "q").split(":")[0] for r in found.values())
        all_ticks = await store.list_ticks()
        tick_counts = collections.Counter(str(t.status) for t in all_ticks)
        by_schedule: dict[str, list[ticks.Tick]] = collections.defaultdict(list)
        for tick in all_ticks:
            if tick.instigator.startswith("schedule:"):
                by_schedule[tick.instigator].append(tick)
        uncounted = sum(checks.unrecorded(listed) for listed in by_schedule.values())
        resumed = 0
        for run_id in found:
            resumed += checks.resumes(await store.get_events(run_id))
        limits = await replay(store, found)
    alive = ", ".join(f"{k.alive:.1f}{k.phase[0]}" for k in killed)
    return (
        f"crash chaos ({'long' if LONG else 'short'} form): {len(found)} runs {dict(statuses)} "
        f"made by {dict(made_by)}; {len(killed)} SIGKILLs after {alive} s (s: starting, "
        f"r: running); resumes {resumed}; "
        f"most in flight {limits.most}/{GLOBAL_LIMIT}, pool=narrow {limits.most_tagged}/"
        f"{TAG_LIMIT}; ticks {dict(tick_counts)} and {uncounted} missed unrecorded; {seconds:.0f} s"
    )
