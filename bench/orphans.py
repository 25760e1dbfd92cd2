"""Orphaned claims: a daemon SIGKILLed right after its first claim, then restarted.

Target (the orphaned claims issue): RUNS queued runs, limit LIMIT, the daemon killed right
after its first claim, every repetition: no run failed by the start timeout, every run
SUCCESS, and the claims it left (STARTING, never launched) launched again within 5 s of
the restart (not after the 120 s start timeout).

Each repetition is a fresh instance (a new SQLite file, or a new database on one
throwaway PostgreSQL server, default durability): the queued coordinator
(`max_concurrent_runs: LIMIT`, `poll_interval: 0.2`), `run_monitoring: {start_timeout:
120}` (the default, so a claim left to the start timeout would show), heartbeats every
0.5 s, HTTP off, everything else at its default. RUNS runs of the one-step job `one` are
queued through `QueuedCoordinator.submit` in this process, then:

1. `vigil daemon run` with the crash point `SqlStore.claim_queued_runs:after:daemon`
   (`tests/crash/inject`): it SIGKILLs itself as soon as its first claim that claimed
   something has committed, before launching anything; the marker names the runs claimed.
2. Wait `--restart-after` seconds from the kill (default 3 heartbeat intervals, 1.5 s:
   how long a killed daemon takes to be judged down, and the age a claim must reach to
   count as orphaned), and until no daemon is live by vigil's own judgement
   (`presence.live_daemons` over the stored heartbeats). A daemon killed at its first claim
   has often written no heartbeat yet, so the heartbeats alone would allow an instant
   restart, whose first monitor pass finds the claims too young (`--restart-after 0`
   shows it: they are launched again at the monitor's next pass, `poll_interval` later).
3. `vigil daemon run` again, without the crash point: the restart is the wall time just
   before it is forked (were it refused anyway, exit 3, it is started again and that later
   start is the restart).
4. Wait until every run is terminal (`--deadline`, past the start timeout), then SIGTERM
   (SIGKILL by pid if it has not exited within 30 s).
5. Read the store: the runs SUCCESS, those ended FAILURE by the start timeout (the
   RUN_FAILURE event's `data.reason`), the orphaned claims (the runs the monitor noted
   "... never launched; launching again", `RunCoordinator.relaunch_orphans`), restart ->
   the first such note, and restart -> the last orphaned run's RUN_START (its worker took
   it). Event timestamps are the daemon's clock, on this host.

    python -m bench.orphans [--repetitions 20] [--runs 60] [--limit 10]
                            [--stores sqlite,postgres] [--restart-after 1.5] [--deadline 300]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence

import anyio
import sqlalchemy as sa

from bench import common
from bench import daemon as daemon_bench
from bench import queue as queue_bench
from vigil import events, runs, storage, submission
from vigil.config import loader
from vigil.daemon import health, presence

S = runs.RunStatus
E = events.EventType
JOB = "one"
HEARTBEAT_INTERVAL = 0.5
DOWN_AFTER = health.DOWN_AFTER  # heartbeat intervals: a daemon judged down, its claims orphaned
QUEUE_POLL = 0.2
START_TIMEOUT = 120.0
INJECT = common.REPO / "tests" / "crash" / "inject"
CRASH_AT = "SqlStore.claim_queued_runs:after:daemon"
ORPHAN_NOTE = "never launched; launching again"  # `relaunch_orphans`' ENGINE note
EXIT_ALREADY_RUNNING = 3  # `vigil daemon run` refused: another daemon is live
KILL_DEADLINE = 60.0  # for the first daemon to claim and be killed
STALE_DEADLINE = 30.0
STOP_DEADLINE = 30.0
POLL = 0.1
EVENT_PAGE = 1000
RELAUNCH_TARGET = " (target < 5 s)"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One repetition, as the store tells it; times are seconds after the restart."""

    statuses: dict[runs.RunStatus, int]
    start_timeouts: int
    claimed: frozenset[str]  # by the killed daemon (its marker)
    orphans: frozenset[str]  # launched again by the restarted daemon
    relaunch: float | None  # restart -> the first orphan note
    last_orphan_start: float | None  # restart -> the last orphan's RUN_START
    refusals: int  # restarts refused (exit 3) before one ran
    kill_to_restart: float

    @property
    def successes(self) -> int:
        return self.statuses.get(S.SUCCESS, 0)


# the instance --------------------------------------------------------------------------
def config_yaml(pg_url: sa.engine.URL | None, limit: int) -> str:
    options = {"max_concurrent_runs": limit, "poll_interval": QUEUE_POLL}
    return common.config_yaml(pg_url, immediate=False) + (
        f"run_coordinator:\n  type: queued\n  options: {json.dumps(options)}\n"
        f"run_monitoring:\n  start_timeout: {START_TIMEOUT:g}\n"
        f"daemon:\n  heartbeat_interval: {HEARTBEAT_INTERVAL:g}\n"
        "http:\n  enabled: false\n"
    )


@contextlib.contextmanager
def instance(
    server: sa.engine.URL | None, limit: int
) -> Iterator[tuple[pathlib.Path, dict[str, str]]]:
    """A fresh instance (a new database on `server`, else SQLite): its home and environment."""
    with contextlib.ExitStack() as stack:
        pg_url = None if server is None else stack.enter_context(queue_bench.fresh_database(server))
        home = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vigil-bench-")))
        (home / "vigil.yaml").write_text(config_yaml(pg_url, limit))
        yield home, daemon_bench.instance_env(home)


def crash_env(env: dict[str, str], marker: pathlib.Path) -> dict[str, str]:
    return {
        **env,
        "PYTHONPATH": os.pathsep.join([str(INJECT), env["PYTHONPATH"]]),
        "VIGIL_CRASH_AT": CRASH_AT,
        "VIGIL_CRASH_MARKER": str(marker),
    }


@contextlib.asynccontextmanager
async def opened(home: pathlib.Path) -> AsyncIterator[storage.Store]:
    store = await storage.open_store(loader.store_target(loader.load_settings(home)))
    try:
        yield store
    finally:
        await store.close()


async def submit(home: pathlib.Path, env: dict[str, str], n: int) -> None:
    async with common.Launcher(home, env).opened() as bench:
        coordinator = queue_bench.queued_coordinator(bench.coordinator)
        for _ in range(n):
            run = submission.new_run(bench.workspace, JOB, {}, {}, time.time())
            queued = await coordinator.submit(run)
            if queued.status is not S.QUEUED:
                raise SystemExit(f"run {queued.run_id} was submitted {queued.status}, not QUEUED")


# the daemons ---------------------------------------------------------------------------
class Daemons:
    """The daemons of one repetition; any still running at the end is killed by pid."""

    def __init__(self, home: pathlib.Path) -> None:
        self._home = home
        self.started: list[daemon_bench.Daemon] = []

    def start(self, env: dict[str, str]) -> daemon_bench.Daemon:
        log = self._home / f"daemon-{len(self.started)}.log"
        daemon = daemon_bench.start(env, log)
        self.started.append(daemon)
        return daemon

    def kill_all(self) -> None:
        for daemon in self.started:
            if daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait(timeout=STOP_DEADLINE)


async def wait_killed(
    daemon: daemon_bench.Daemon, marker: pathlib.Path
) -> tuple[frozenset[str], float]:
    """Until the crash point has killed the daemon; the runs its claim took, and when (the
    marker is written just before the SIGKILL)."""
    with anyio.move_on_after(KILL_DEADLINE):
        while daemon.process.poll() is None:  # noqa: ASYNC110 - another process
            await anyio.sleep(POLL)
    code = daemon.process.poll()
    if code != -signal.SIGKILL or not await anyio.Path(marker).exists():
        raise SystemExit(
            f"the daemon with the crash point was not killed at its claim within "
            f"{KILL_DEADLINE:g} s (exit {code}):\n{daemon.log_tail()}"
        )
    path = anyio.Path(marker)
    claimed = frozenset(json.loads(await path.read_text())["run_ids"])
    return claimed, (await path.stat()).st_mtime


async def wait_restartable(store: storage.Store, killed_at: float, restart_after: float) -> None:
    """Until `restart_after` seconds after the kill, and no daemon is live on the store (else
    a restart is refused). A daemon killed before its first heartbeat is never live, hence
    the wait from the kill as well."""
    await anyio.sleep(max(0.0, killed_at + restart_after - time.time()))
    with anyio.move_on_after(STALE_DEADLINE):
        while True:
            beats = await store.list_heartbeats()
            if not presence.live_daemons(beats, time.time(), HEARTBEAT_INTERVAL):
                return
            await anyio.sleep(POLL)
    raise SystemExit(f"the killed daemon still counts as live after {STALE_DEADLINE:g} s")


@dataclasses.dataclass
class Restart:
    daemon: daemon_bench.Daemon
    at: float  # wall time just before the fork
    refusals: int = 0


async def wait_all_ended(
    store: storage.Store,
    n: int,
    daemons: Daemons,
    restart: Restart,
    env: dict[str, str],
    deadline: float,
) -> dict[runs.RunStatus, int]:
    """Until the n runs are terminal; a restart refused (exit 3) is started again."""
    counts: dict[runs.RunStatus, int] = {}
    with anyio.move_on_after(deadline):
        while True:
            counts = await store.count_runs_by_status()
            if sum(counts.get(s, 0) for s in runs.TERMINAL_STATUSES) >= n:
                return counts
            code = restart.daemon.process.poll()
            if code == EXIT_ALREADY_RUNNING:
                restart.refusals += 1
                restart.at = time.time()
                restart.daemon = daemons.start(env)
            elif code is not None:
                raise SystemExit(
                    f"the restarted daemon exited {code}:\n{restart.daemon.log_tail()}"
                )
            await anyio.sleep(POLL)
    shown = {str(k): v for k, v in sorted(counts.items())}
    raise SystemExit(f"runs not all ended {deadline:g} s after the restart: {shown}")


# one repetition ------------------------------------------------------------------------
async def repetition(
    home: pathlib.Path, env: dict[str, str], n: int, restart_after: float, deadline: float
) -> Outcome:
    await submit(home, env, n)
    marker = home / "crashed"
    daemons = Daemons(home)
    try:
        async with opened(home) as store:
            claimed, killed_at = await wait_killed(daemons.start(crash_env(env, marker)), marker)
            await wait_restartable(store, killed_at, restart_after)
            at = time.time()  # just before the fork
            restart = Restart(daemons.start(env), at)
            statuses = await wait_all_ended(store, n, daemons, restart, env, deadline)
            code = queue_bench.stop(restart.daemon)
            if code != 0:
                print(f"PROBLEM: the restarted daemon ended {code} on SIGTERM", flush=True)
            return await outcome(store, statuses, claimed, killed_at, restart)
    finally:
        daemons.kill_all()


async def all_events(store: storage.Store, types: Sequence[events.EventType]) -> list[events.Event]:
    found: list[events.Event] = []
    after = 0
    while batch := await store.events_after(after, EVENT_PAGE, types):
        found += batch
        after = batch[-1].event_id
    return found


async def outcome(
    store: storage.Store,
    statuses: dict[runs.RunStatus, int],
    claimed: frozenset[str],
    killed_at: float,
    restart: Restart,
) -> Outcome:
    found = await all_events(store, (E.ENGINE, E.RUN_FAILURE, E.RUN_START))
    notes: dict[str, float] = {}
    starts: dict[str, float] = {}
    timeouts = 0
    for event in found:
        if event.event_type is E.ENGINE and ORPHAN_NOTE in event.message:
            notes.setdefault(event.run_id, event.timestamp)
        elif event.event_type is E.RUN_START:
            starts.setdefault(event.run_id, event.timestamp)
        elif (
            event.event_type is E.RUN_FAILURE
            and event.data.get("reason") == runs.EndReason.START_TIMEOUT.value
        ):
            timeouts += 1
    orphan_starts = [starts[r] for r in notes if r in starts]
    return Outcome(
        statuses=statuses,
        start_timeouts=timeouts,
        claimed=claimed,
        orphans=frozenset(notes),
        relaunch=min(notes.values()) - restart.at if notes else None,
        last_orphan_start=(
            max(orphan_starts) - restart.at if notes and len(orphan_starts) == len(notes) else None
        ),
        refusals=restart.refusals,
        kill_to_restart=restart.at - killed_at,
    )


# reporting -----------------------------------------------------------------------------
def describe(i: int, o: Outcome) -> str:
    shown = ", ".join(f"{k} {v}" for k, v in sorted(o.statuses.items()))
    relaunch = "none" if o.relaunch is None else f"{o.relaunch:.2f} s"
    last = "missing" if o.last_orphan_start is None else f"{o.last_orphan_start:.2f} s"
    text = (
        f"  repetition {i}: {shown}; {o.start_timeouts} by start timeout; restarted "
        f"{o.kill_to_restart:.2f} s after the kill; "
        f"{len(o.claimed)} claimed by the killed daemon, {len(o.orphans)} launched again; "
        f"restart -> launched again {relaunch}, -> last orphan started {last}"
    )
    if o.orphans != o.claimed:
        text += (
            f" PROBLEM: {len(o.claimed - o.orphans)} claimed not launched again, "
            f"{len(o.orphans - o.claimed)} launched again not claimed"
        )
    if o.refusals:
        text += f" ({o.refusals} restarts refused first)"
    return text


def report(label: str, n: int, limit: int, outcomes: Sequence[Outcome]) -> None:
    successes = [o.successes for o in outcomes]
    orphans = [len(o.orphans) for o in outcomes]
    print(
        f"{label} {len(outcomes)} repetitions, {n} runs, limit {limit}, killed after its first "
        f"claim: SUCCESS per repetition min {min(successes)}, max {max(successes)} "
        f"(target {n}); failed by start timeout {sum(o.start_timeouts for o in outcomes)} "
        f"in all (target 0); orphaned claims per repetition min {min(orphans)}, "
        f"max {max(orphans)}"
    )
    relaunch = [o.relaunch for o in outcomes if o.relaunch is not None]
    last = [o.last_orphan_start for o in outcomes if o.last_orphan_start is not None]
    for name, samples, target in (
        ("restart -> orphaned claims launched again", relaunch, RELAUNCH_TARGET),
        ("restart -> last orphaned run's RUN_START", last, ""),
    ):
        missing = len(outcomes) - len(samples)
        note = f" ({missing} repetitions without one)" if missing else ""
        if samples:
            print(common.figures(f"{label} {name}", samples, unit="s", scale=1.0) + target + note)
        else:
            print(f"{label} {name}: none{note}")


def measure(server: sa.engine.URL | None, label: str, args: argparse.Namespace) -> None:
    outcomes = []
    for i in range(1, args.repetitions + 1):
        with instance(server, args.limit) as (home, env):
            found = anyio.run(repetition, home, env, args.runs, args.restart_after, args.deadline)
        print(describe(i, found), flush=True)
        outcomes.append(found)
    report(label, args.runs, args.limit, outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--limit", type=int, default=10, help="max_concurrent_runs")
    parser.add_argument("--stores", default="sqlite,postgres", help="comma-separated")
    parser.add_argument(
        "--restart-after",
        type=float,
        default=DOWN_AFTER * HEARTBEAT_INTERVAL,
        help="seconds from the kill to the restart (at least until no daemon is live); "
        "default 3 heartbeat intervals, the time a killed daemon takes to be judged down",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=300.0,
        help="seconds after the restart for every run to end",
    )
    args = parser.parse_args()
    stores = args.stores.split(",")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average {load} before the bench", flush=True)
    if "sqlite" in stores:
        measure(None, "sqlite  ", args)
    if "postgres" in stores:
        with common.postgres_server() as server:
            measure(server.url, "postgres", args)


if __name__ == "__main__":
    main()
