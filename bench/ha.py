"""High availability: many `vigil daemon run` on one PostgreSQL, under SIGKILL and SIGTERM.

Targets (issue 11), each part on a throwaway PostgreSQL server (default durability), each
daemon a real process, the instance and its code location in `bench/ha_cluster.py`:

`chaos`: three daemons; QUEUED runs (the queued coordinator, max_concurrent_runs 20, a
per-lane tag limit of 6 over 4 lanes and a `bench/heavy=yes` limit of 2 on every 10th run),
schedules on a per-second cron and sensors with run keys asking for runs during a window
(the queue resumes when it opens), and a SIGKILL of a random daemon every `--kill-every`
seconds, restarted `--restart-after` seconds later. After the window, the bench waits until
every run is terminal (`--deadline`), SIGTERMs the daemons and reads the store
(`bench/ha_store.py`): zero duplicate runs, zero tick rows twice for one scheduled time,
zero runs or ticks evaluated twice, zero limit overshoot (the claims and ends replayed in
commit order), every run terminal, every due tick recorded (every second of the window, for
every schedule). The same workload with one daemon and no kills, for comparison: runs/s
from the first claim to the last end, and tick delay (created_at - scheduled_time). Exits 1
when a safety figure is violated (`make chaos`).

`takeover`: three daemons, per-second schedules that skip. `--kills` times: the owner of a
random schedule (its lease in `leases`, its pid in `daemon_leases`) is SIGKILLed; the
takeover is the first tick of that schedule created and scheduled after the kill, by a
daemon that is not the killed one (the lease's owner changed). Target p99 <= 15 s with
lease_ttl 10. The same with SIGTERM (it releases its leases): target <= 1 s. Also printed:
signal -> the lease taken (its `acquired_at`, the new owner's clock, same host); the first
tick comes at the first due second after that, so it adds up to a second on a per-second
cron. The daemon is restarted and the leases balance again before the next one.

`steady`: `--steady-count` per-second schedules that skip, with one daemon, then three;
tick delay p50/p99 over `--seconds` after a warm-up (target: three no worse than one), and
each daemon process's CPU (its own, without its evaluation process). Lease cost, measured
three ways: (1) server side, every statement on `leases`/`daemon_leases` during a window
with `log_min_duration_statement = 0` (ALTER SYSTEM, reloaded; parse, bind and execute
times added; BEGIN/COMMIT not counted), as count and server time per second per daemon;
(2) client side, that rate per daemon times the CPU per call of the store's own lease verbs
(`renew_membership`, `list_members`, `list_leases`) timed in this process on an instance no
daemon runs on; (3) three daemons with no schedule, sensor or run: each daemon's whole CPU,
which bounds from above what its lease renewal (every ttl/4) and membership reads (every
0.5 s) cost it, beside the idle polls of its loops. Target: leases under 1 % of one core
per daemon.

    python -m bench.ha chaos|takeover|steady [--quick] [sizes...]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import pathlib
import random
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import anyio
import psutil
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from bench import common, ha_store
from bench import ha_cluster as hc
from tests import pg_server
from vigil import submission
from vigil.config import loader
from vigil.coordinators import queued
from vigil.storage import engine
from vigil.storage import store as store_mod

JOIN_DEADLINE = 180.0  # seconds for started daemons to show their membership
BALANCE_DEADLINE = 120.0
TAKEOVER_DEADLINE = 120.0
POLL = 0.2
SUBMIT_BATCH = 200


@dataclasses.dataclass(frozen=True)
class Sizes:
    daemons: int = 3
    queued: int = 2000
    schedules: int = 200
    sensors: int = 20
    every: int = 60
    interval: float = 5.0
    duration: float = 120.0
    kill_every: float = 20.0
    restart_after: float = 5.0
    deadline: float = 900.0
    kills: int = 20
    lease_ttl: float = 10.0
    takeover_schedules: int = 60
    steady_count: int = 1000
    warmup: float = 30.0
    seconds: float = 60.0


HELP = {
    "daemons": "daemons of the HA forms",
    "queued": "chaos: runs queued before the window",
    "schedules": "chaos: schedules on * * * * * *",
    "sensors": "chaos: sensors with run keys",
    "every": "chaos: a schedule asks for a run once in this many seconds",
    "interval": "chaos: the sensors' minimum interval, seconds",
    "duration": "chaos: the window's seconds (instigators active, kills)",
    "kill_every": "chaos: seconds between two SIGKILLs",
    "restart_after": "chaos: seconds from a SIGKILL to the restart",
    "deadline": "chaos: seconds after the window for every run to be terminal",
    "kills": "takeover: kills of each kind (SIGKILL, SIGTERM)",
    "lease_ttl": "daemon.lease_ttl of every instance",
    "takeover_schedules": "takeover: schedules on * * * * * *",
    "steady_count": "steady: schedules on * * * * * *",
    "warmup": "steady: seconds before the measured window",
    "seconds": "steady: the measured window (the statement log takes half as long again)",
}

QUICK = Sizes(
    queued=40,
    schedules=6,
    sensors=2,
    every=10,
    interval=2.0,
    duration=30.0,
    kill_every=9.0,
    restart_after=3.0,
    deadline=240.0,
    kills=2,
    takeover_schedules=6,
    steady_count=20,
    warmup=8.0,
    seconds=10.0,
)


# an instance with its daemons --------------------------------------------------------------
@contextlib.asynccontextmanager
async def fresh_database(server: sa.engine.URL) -> AsyncIterator[sa.engine.URL]:
    """A new empty database on the bench's server, dropped afterwards."""
    name = f"vigil_bench_ha_{uuid.uuid4().hex[:12]}"
    await pg_server.admin_execute(server, f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name)
    finally:
        await pg_server.admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def instance(
    server: sa.engine.URL, work: hc.Workload, ttl: float
) -> AsyncIterator[tuple[pathlib.Path, dict[str, str], sa.engine.URL]]:
    async with fresh_database(server) as url:
        with tempfile.TemporaryDirectory(prefix="vigil-bench-ha-") as tmp:
            home = pathlib.Path(tmp)
            yield home, hc.prepare(home, url, work, ttl), url


async def wait_joined(url: sa.engine.URL, group: hc.Cluster) -> dict[int, str]:
    """Until every running daemon of the group has a live membership; pid -> daemon id."""
    end = time.monotonic() + JOIN_DEADLINE
    async with ha_store.connected(url) as conn:
        while time.monotonic() < end:
            found = await ha_store.members(conn, time.time())
            if all(group.pid(s) in found for s in group.live_slots()):
                return found
            exited(group)
            await anyio.sleep(POLL)
    raise SystemExit(f"the daemons did not join within {JOIN_DEADLINE:g} s: {group.logs()}")


def exited(group: hc.Cluster) -> None:
    for slot, process in enumerate(group.processes):
        if process is not None and process.returncode is None and process.poll() is not None:
            log = group.log_of(slot).read_text(errors="replace")[-3000:]
            raise SystemExit(f"daemon slot {slot} exited {process.returncode} by itself:\n{log}")


async def submit_queued(home: pathlib.Path, env: dict[str, str], count: int) -> None:
    """`count` runs of `one` (lanes in turn, every 10th heavy), queued while paused."""
    async with common.Launcher(home, env).opened() as bench:
        coordinator = bench.coordinator
        assert isinstance(coordinator, queued.QueuedCoordinator), type(coordinator)
        made = [
            submission.new_run(bench.workspace, "one", {}, tags(i), time.time())
            for i in range(count)
        ]
        for start in range(0, count, SUBMIT_BATCH):
            await coordinator.submit_many(made[start : start + SUBMIT_BATCH])


def tags(i: int) -> dict[str, str]:
    found = {"bench/lane": hc.LANES[i % len(hc.LANES)]}
    if i % 10 == 0:
        found["bench/heavy"] = "yes"
    return found


# chaos ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    label: str
    window: tuple[float, float]
    kills: int
    safety: ha_store.Safety
    ended: int
    drain_seconds: float
    created: list[float]
    finished: list[float]
    missed: int


async def chaos(server: sa.engine.URL, sizes: Sizes, daemons: int, kill: bool) -> Outcome:
    work = hc.Workload(sizes.schedules, sizes.sensors, sizes.every, sizes.interval)
    label = f"{daemons} daemon{'s' if daemons > 1 else ''}" + (
        ", SIGKILLs" if kill else ", no kills"
    )
    async with instance(server, work, sizes.lease_ttl) as (home, env, url):
        hc.queue_flag(env, "pause")
        await submit_queued(home, env, sizes.queued)
        group = hc.Cluster(home, env, daemons)
        with hc.cluster(group):
            for slot in range(daemons):
                group.start(slot)
            await wait_joined(url, group)
            window = (time.time() + 1.0, time.time() + 1.0 + sizes.duration)
            hc.open_window(home, *window)
            hc.queue_flag(env, "resume")
            kills = await kill_loop(group, window[1], sizes, random.Random(11)) if kill else 0
            await wait_terminal(url, group, window[1] + sizes.interval + 5.0, sizes.deadline)
        return await read_outcome(url, label, window, kills, sizes.schedules)


async def kill_loop(group: hc.Cluster, end: float, sizes: Sizes, rng: random.Random) -> int:
    """SIGKILL a random daemon every `kill_every` s, restart it `restart_after` s later."""
    restarts: list[tuple[float, int]] = []
    next_kill, kills = time.time() + sizes.kill_every, 0
    while (now := time.time()) < end:
        for due in [r for r in restarts if r[0] <= now]:
            restarts.remove(due)
            group.start(due[1])
        if now >= next_kill:
            slot = group.random_live(rng)
            group.kill(slot)
            kills += 1
            restarts.append((now + sizes.restart_after, slot))
            next_kill += sizes.kill_every
        exited(group)
        await anyio.sleep(POLL)
    for _, slot in restarts:
        group.start(slot)
    return kills


async def wait_terminal(
    url: sa.engine.URL, group: hc.Cluster, quiet: float, deadline: float
) -> None:
    """Until every run is terminal, and no instigator can ask for more (`quiet`)."""
    end = time.time() + deadline
    async with ha_store.connected(url) as conn:
        while time.time() < end:
            if time.time() > quiet and await ha_store.not_terminal(conn) == 0:
                return
            exited(group)
            await anyio.sleep(1.0)
    print(f"PROBLEM: runs still not terminal {deadline:g} s after the window")


async def read_outcome(
    url: sa.engine.URL, label: str, window: tuple[float, float], kills: int, schedules: int
) -> Outcome:
    async with ha_store.connected(url) as conn:
        safety = await ha_store.safety(conn, window, schedules)
        ended, seconds = await ha_store.drain_rate(conn)
        created, finished, missed = await ha_store.tick_delays(conn, window)
    return Outcome(label, window, kills, safety, ended, seconds, created, finished, missed)


def report_chaos(outcome: Outcome) -> None:
    s, label = outcome.safety, outcome.label
    print(f"{label}: {outcome.kills} SIGKILLs; runs {s.runs} by status {s.statuses}")
    print(
        f"{label}: duplicates: (instigator, run key) {s.duplicate_keys}, schedule seconds or "
        f"sensor items with 2+ runs {s.twice_per_slot}, runs in two ticks {s.run_in_two_ticks}, "
        f"ticks with more runs than asked {s.tick_over_request}; tick rows twice for one "
        f"scheduled time {s.tick_rows_twice}; ticks left STARTED {s.ticks_left_started}"
    )
    limits = ", ".join(f"{k} {most}/{limit}" for k, (most, limit) in sorted(s.overshoot.items()))
    print(f"{label}: most in flight (replayed in commit order): {limits}")
    gaps = sum(s.gaps.values())
    worst = sorted(s.gaps.items(), key=lambda kv: -kv[1])[:5]
    print(
        f"{label}: due ticks not recorded {gaps} of {s.expected_ticks}"
        + (f" (worst: {worst})" if worst else "")
        + f"; sensor items skipped (cursor moved, no run) {s.sensor_items_skipped}"
    )
    rate = outcome.ended / outcome.drain_seconds if outcome.drain_seconds else float("nan")
    print(
        f"{label}: {outcome.ended} queued runs ended, first claim -> last end "
        f"{outcome.drain_seconds:.1f} s = {rate:.1f} runs/s"
    )
    print(
        f"{label}: tick delay created - scheduled {hc.spread(outcome.created, 'ms', 1000)}; "
        f"ended - scheduled {hc.spread(outcome.finished, 'ms', 1000)}; MISSED {outcome.missed}"
    )
    violations = s.violations()
    print(f"{label}: SAFETY {'VIOLATED: ' + '; '.join(violations) if violations else 'ok'}")


def run_chaos(server: sa.engine.URL, sizes: Sizes) -> bool:
    """Both forms; whether every safety figure held."""
    print(
        f"chaos: {sizes.queued} queued runs, {sizes.schedules} schedules on * * * * * * "
        f"(a run each {sizes.every} s), {sizes.sensors} sensors every {sizes.interval:g} s, "
        f"{sizes.duration:g} s window, SIGKILL every {sizes.kill_every:g} s, restart after "
        f"{sizes.restart_after:g} s, lease_ttl {sizes.lease_ttl:g}; {hc.machine()}"
    )
    ok = True
    for daemons, kill in ((sizes.daemons, True), (1, False)):
        outcome = anyio.run(chaos, server, sizes, daemons, kill)
        report_chaos(outcome)
        ok = ok and not outcome.safety.violations()
    return ok


# takeover -----------------------------------------------------------------------------------
Takeover = tuple[float, float]  # seconds from the signal to: the lease taken, the first tick


async def takeovers(server: sa.engine.URL, sizes: Sizes, sigkill: bool) -> list[Takeover]:
    work = hc.Workload(sizes.takeover_schedules, 0)
    async with instance(server, work, sizes.lease_ttl) as (home, env, url):
        return await takeovers_on(url, hc.Cluster(home, env, sizes.daemons), sizes, sigkill)


async def takeovers_on(
    url: sa.engine.URL, group: hc.Cluster, sizes: Sizes, sigkill: bool
) -> list[Takeover]:
    with hc.cluster(group):
        for slot in range(sizes.daemons):
            group.start(slot)
        rng, found = random.Random(7), []
        async with ha_store.connected(url) as conn:
            for _ in range(sizes.kills):
                found.append(await one_takeover(conn, url, group, rng, sigkill))
            await wait_joined(url, group)  # the last one restarted, before it is stopped
        return found


async def one_takeover(
    conn: sa_asyncio.AsyncConnection,
    url: sa.engine.URL,
    group: hc.Cluster,
    rng: random.Random,
    sigkill: bool,
) -> Takeover:
    pids = await balanced(conn, url, group)
    leases = await ha_store.owners(conn, "schedule:")
    unit = rng.choice(sorted(leases))
    victim = leases[unit]
    slot = group.slot_of(next(pid for pid, d in pids.items() if d == victim))
    assert slot is not None, (unit, victim, pids)
    at = group.kill(slot) if sigkill else group.terminate(slot)[0]
    end = time.monotonic() + TAKEOVER_DEADLINE
    while time.monotonic() < end:
        created = await ha_store.first_tick_after(conn, unit, at)
        owner, acquired = await ha_store.lease(conn, unit)
        if created is not None and owner not in (None, victim):
            group.start(slot)
            return acquired - at, created - at
        await anyio.sleep(0.05)
    raise SystemExit(f"no takeover of {unit} within {TAKEOVER_DEADLINE:g} s of the kill")


async def balanced(
    conn: sa_asyncio.AsyncConnection, url: sa.engine.URL, group: hc.Cluster
) -> dict[int, str]:
    """Until every daemon has joined and every schedule is leased to a live one, each
    daemon holding some; pid -> daemon id."""
    pids = await wait_joined(url, group)
    end = time.monotonic() + BALANCE_DEADLINE
    while time.monotonic() < end:
        live = {pids[p] for s in group.live_slots() if (p := group.pid(s)) in pids}
        held = await ha_store.owners(conn, "schedule:")
        if held and set(held.values()) == live:
            return pids
        await anyio.sleep(POLL)
        pids = await ha_store.members(conn, time.time())
    raise SystemExit(f"the schedules' leases did not balance within {BALANCE_DEADLINE:g} s")


def run_takeover(server: sa.engine.URL, sizes: Sizes) -> None:
    print(
        f"takeover: {sizes.daemons} daemons, {sizes.takeover_schedules} schedules on "
        f"* * * * * *, lease_ttl {sizes.lease_ttl:g}, {sizes.kills} kills each; {hc.machine()}"
    )
    for sigkill, signal_name, target in (
        (True, "SIGKILL", "p99 <= 15 s"),
        (False, "SIGTERM", "<= 1 s"),
    ):
        found = anyio.run(takeovers, server, sizes, sigkill)
        print(
            f"{signal_name} of the owner -> first tick by another daemon: "
            f"{hc.spread([tick for _, tick in found])} (target {target})"
        )
        print(
            f"{signal_name} of the owner -> its lease taken (acquired_at): "
            f"{hc.spread([taken for taken, _ in found])}"
        )


# steady state -------------------------------------------------------------------------------
STATEMENT = re.compile(
    r"duration: ([0-9.]+) ms\s+(statement|parse|bind|execute)[^:]*:\s*(.*)", re.S
)
ENTRY = re.compile(r"^\d{4}-\d\d-\d\d ", re.M)


@dataclasses.dataclass
class Steady:
    label: str
    created: list[float]
    finished: list[float]
    cpu: list[float]  # % of one core, each daemon process
    statements: dict[str, tuple[int, float]] = dataclasses.field(default_factory=dict)
    window: float = 0.0


def cpu_seconds(pids: Sequence[int]) -> list[float]:
    found = []
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        found.append(t.user + t.system)
    return found


async def steady(
    server: pg_server.Server, sizes: Sizes, daemons: int, count: int, log_window: float
) -> Steady:
    work = hc.Workload(count, 0)
    async with instance(server.url, work, sizes.lease_ttl) as (home, env, url):
        group = hc.Cluster(home, env, daemons)
        with hc.cluster(group):
            return await steady_on(server, url, group, sizes, count, log_window)


async def steady_on(
    server: pg_server.Server,
    url: sa.engine.URL,
    group: hc.Cluster,
    sizes: Sizes,
    count: int,
    log_window: float,
) -> Steady:
    daemons = len(group.processes)
    for slot in range(daemons):
        group.start(slot)
    await wait_joined(url, group)
    await anyio.sleep(sizes.warmup)
    pids = [p for s in group.live_slots() if (p := group.pid(s)) is not None]
    before, start = cpu_seconds(pids), time.time()
    await anyio.sleep(sizes.seconds)
    after, end = cpu_seconds(pids), time.time()
    cpu = [100 * (a - b) / (end - start) for a, b in zip(after, before, strict=True)]
    async with ha_store.connected(url) as conn:
        created, finished, _ = await ha_store.tick_delays(conn, (start, end))
    result = Steady(f"{daemons} daemon(s), {count} schedules", created, finished, cpu)
    if log_window:
        result.statements = await lease_statements(server, log_window)
        result.window = log_window * daemons
    return result


@contextlib.asynccontextmanager
async def statement_log(server: pg_server.Server) -> AsyncIterator[pathlib.Path]:
    """Every statement logged with its duration while inside (ALTER SYSTEM, reloaded)."""
    await pg_server.admin_execute(server.url, "ALTER SYSTEM SET log_min_duration_statement = 0")
    await pg_server.admin_execute(server.url, "SELECT pg_reload_conf()")
    try:
        yield server.directory / "server.log"
    finally:
        await pg_server.admin_execute(server.url, "ALTER SYSTEM RESET log_min_duration_statement")
        await pg_server.admin_execute(server.url, "SELECT pg_reload_conf()")


async def lease_statements(
    server: pg_server.Server, seconds: float
) -> dict[str, tuple[int, float]]:
    """Statements on the lease tables over `seconds`: kind -> (executions, server ms)."""
    log = server.directory / "server.log"
    offset = log.stat().st_size
    async with statement_log(server):
        await anyio.sleep(seconds)
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return classify(text)


def classify(text: str) -> dict[str, tuple[int, float]]:
    found: dict[str, tuple[int, float]] = {}
    starts = [m.start() for m in ENTRY.finditer(text)] + [len(text)]
    for begin, end in itertools.pairwise(starts):
        match = STATEMENT.search(text[begin:end])
        kind = match and lease_kind(match.group(3))
        if match is None or kind is None:
            continue
        count, ms = found.get(kind, (0, 0.0))
        executed = match.group(2) in ("execute", "statement")
        found[kind] = (count + executed, ms + float(match.group(1)))
    return found


def lease_kind(sql: str) -> str | None:
    head = " ".join(sql.split())[:200]
    for kind, pattern in (
        ("renew membership (INSERT daemon_leases)", r"^INSERT INTO daemon_leases"),
        ("read members (SELECT daemon_leases)", r"^SELECT .* FROM daemon_leases"),
        ("take or release leases (UPDATE leases)", r"^UPDATE leases"),
        ("new lease rows (INSERT leases)", r"^INSERT INTO leases"),
        ("read or fence leases (SELECT leases)", r"^SELECT .* FROM leases"),
    ):
        if re.search(pattern, head):
            return kind
    return None


def report_steady(result: Steady) -> None:
    print(
        f"{result.label}: tick delay created - scheduled {hc.spread(result.created, 'ms', 1000)}; "
        f"ended - scheduled {hc.spread(result.finished, 'ms', 1000)}"
    )
    cpu = ", ".join(f"{c:.1f} %" for c in result.cpu)
    print(f"{result.label}: CPU of each daemon process (one core = 100 %): {cpu}")
    total_ms = 0.0
    for kind, (count, ms) in sorted(result.statements.items()):
        total_ms += ms
        print(
            f"{result.label}:   {kind}: {count / result.window:.1f}/s per daemon, "
            f"{ms / result.window:.3f} ms server time/s per daemon"
        )
    if result.statements:
        share = total_ms / result.window / 10  # ms per s -> % of one core
        print(
            f"{result.label}: lease statements, server side: {share:.3f} % of one core per daemon"
        )


PROBE_CALLS = 300
PROBE_VERBS = {  # the lease statement kinds of the log, and the store verb that issues them
    "renew membership (INSERT daemon_leases)": "renew",
    "read members (SELECT daemon_leases)": "members",
    "read or fence leases (SELECT leases)": "leases",
}


async def verb_cpu(server: sa.engine.URL) -> dict[str, float]:
    """Client CPU seconds per call of the lease verbs, in this process, with the store's own
    code, on an instance no daemon runs on (the probe's membership would change the shares)."""
    async with instance(server, hc.Workload(0, 0), 10.0) as (home, _env, _url):
        store = await engine.open_store(loader.store_target(loader.load_settings(home)))
        try:
            return await probe_verbs(store)
        finally:
            await store.close()


async def probe_verbs(store: store_mod.Store) -> dict[str, float]:
    now = time.time()
    member = store_mod.Member("bench-probe", "localhost", os.getpid(), now, now + 10.0)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "renew": lambda: store.renew_membership(member),
        "members": store.list_members,
        "leases": lambda: store.list_leases("schedule:"),
    }
    found = {}
    for name, call in calls.items():
        await call()  # warm: the statement cache, the pool
        start = time.process_time()
        for _ in range(PROBE_CALLS):
            await call()
        found[name] = (time.process_time() - start) / PROBE_CALLS
    return found


def client_share(result: Steady, per_call: dict[str, float]) -> float:
    """% of one core a daemon spends issuing its lease statements: rate x CPU per call."""
    total = 0.0
    for kind, (count, _ms) in result.statements.items():
        verb = PROBE_VERBS.get(kind)
        if verb is not None:
            total += count / result.window * per_call[verb]
    return 100 * total


def run_steady(server: pg_server.Server, sizes: Sizes) -> None:
    print(f"steady: per-second schedules that skip, lease_ttl {sizes.lease_ttl:g}; {hc.machine()}")
    log_window = sizes.seconds / 2
    busy = None
    for daemons in (1, sizes.daemons):
        window = log_window if daemons > 1 else 0.0
        result = anyio.run(steady, server, sizes, daemons, sizes.steady_count, window)
        report_steady(result)
        busy = result
    idle = anyio.run(steady, server, sizes, sizes.daemons, 0, log_window)
    report_steady(idle)
    per_call = anyio.run(verb_cpu, server.url)
    calls = ", ".join(f"{verb} {1000 * cpu:.2f} ms" for verb, cpu in per_call.items())
    print(f"lease verbs, client CPU per call in this process: {calls}")
    assert busy is not None
    for result in (busy, idle):
        print(
            f"{result.label}: lease statements, client side (their rate x CPU per call): "
            f"{client_share(result, per_call):.3f} % of one core per daemon (target < 1 %)"
        )
    print(
        f"idle: the whole daemon's CPU (leases, membership reads and its loops' idle polls) "
        f"bounds its lease cost from above: max {max(idle.cpu):.2f} %"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("parts", nargs="+", choices=("chaos", "takeover", "steady"))
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: each part a smoke run of a few minutes"
    )
    for field in dataclasses.fields(Sizes):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=type(field.default),
            default=None,
            help=f"{HELP[field.name]} (default {field.default})",
        )
    args = parser.parse_args()
    base = QUICK if args.quick else Sizes()
    chosen = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(Sizes)
        if getattr(args, f.name) is not None
    }
    sizes = dataclasses.replace(base, **chosen)
    ok = True
    with common.postgres_server() as server:
        if "chaos" in args.parts:
            ok = run_chaos(server.url, sizes)
        if "takeover" in args.parts:
            run_takeover(server.url, sizes)
        if "steady" in args.parts:
            run_steady(server, sizes)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
