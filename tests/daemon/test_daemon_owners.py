"""Two real daemons on one PostgreSQL, seen from outside: who runs, who owns what.

`vigil daemon status` lists both daemons with the units each owns (shares that add up to
the work there is), `schedule list` and `sensor list` name the daemon holding each
instigator, each daemon's `/metrics` exports its owned units, and `liveness-check --any`
passes while one daemon lives and fails once both are gone. A survivor takes the killed
daemon's units over once its membership expires, and counts the takeovers.
"""

from __future__ import annotations

import pathlib
import signal
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import parser

from tests.acceptance import schemas
from tests.acceptance.harness import IMMEDIATE, Instance
from tests.daemon.process import Daemon, Daemons, free_port, http_get, vigil
from tests.waiting import eventually

SCHEDULES = 12
SENSORS = 3
SHARDS = 16
KINDS = ("schedule", "sensor", "monitor", "retries", "retention", "backfills")
CHECK_EVERY = 0.5  # seconds between two CLI reads: each starts a process

# Yearly crons and long sensor intervals: the daemons own these, and evaluate next to nothing.
LOCATION = """\
from vigil import Definitions, SkipReason, job, schedule, sensor, step

# the counts

@step
def noop() -> None:
    return None


noop_job = job("noop", [noop])


def _schedule(n: int):
    @schedule(cron="0 0 1 1 *", job=noop_job, name=f"yearly_{n}", default_status="running")
    def yearly() -> SkipReason:
        return SkipReason("once a year")

    return yearly


def _sensor(n: int):
    @sensor(job=noop_job, name=f"quiet_{n}", minimum_interval=3600, default_status="running")
    def quiet() -> SkipReason:
        return SkipReason("nothing new")

    return quiet


defs = Definitions(
    jobs=[noop_job],
    schedules=[_schedule(n) for n in range(SCHEDULES)],
    sensors=[_sensor(n) for n in range(SENSORS)],
)
"""


def configure(instance: Instance, tmp_path: pathlib.Path) -> None:
    """A code location of running schedules and sensors; fast heartbeats, short leases."""
    location = tmp_path / "owned.py"
    counts = f"SCHEDULES = {SCHEDULES}\nSENSORS = {SENSORS}\n"
    location.write_text(LOCATION.replace("# the counts\n", counts))
    text = (instance.home / "vigil.yaml").read_text()
    store_section = text[text.index("store:") :]
    instance.write_config(
        f"workspace:\n  - name: owned\n    file: {location}\n"
        f"{IMMEDIATE}"
        "scheduling:\n  poll_interval: 0.3\n"
        "daemon:\n  heartbeat_interval: 0.3\n  shutdown_grace: 5\n"
        f"  lease_ttl: 3\n  monitor_shards: {SHARDS}\n" + store_section
    )


@asynccontextmanager
async def started(instance: Instance, tmp_path: pathlib.Path) -> AsyncIterator[Daemons]:
    """The test's daemons, killed by pid at its end (their logs printed)."""
    daemons = Daemons(instance, tmp_path)
    try:
        yield daemons
    finally:
        for daemon in daemons.stop_all():
            print(f"--- daemon {daemon.pid} log ---\n{daemon.log()}")


def start(daemons: Daemons, port: int) -> Daemon:
    return daemons.start(env={"VIGIL_HTTP__ENABLED": "true", "VIGIL_HTTP__PORT": str(port)})


async def cli_json(instance: Instance, *args: str) -> Any:
    """A command's --json output, checked against its schema."""
    done = await vigil(instance, *args, "--json")
    assert done.returncode == 0, done.stderr.decode()
    return schemas.check(" ".join(args), done.stdout.decode())


async def owned_by_daemon(instance: Instance) -> dict[int, Mapping[str, int]]:
    """`daemon status --json`: each live daemon's owned units, by pid."""
    rows = await cli_json(instance, "daemon", "status")
    return {
        row["pid"]: row["owned"]
        for row in rows
        if row["loop"] == "supervisor" and row["owned"] is not None
    }


def totals(owned: Mapping[int, Mapping[str, int]]) -> dict[str, int]:
    return {kind: sum(counts.get(kind, 0) for counts in owned.values()) for kind in KINDS}


async def wait_for_shares(
    instance: Instance, pids: set[int], deadline: float = 90.0
) -> dict[int, Mapping[str, int]]:
    """Until exactly these daemons own every unit once: 12 schedules, 3 sensors, 16
    monitor shards, the retries cursor and the backfills, split between them."""
    owned: dict[int, Mapping[str, int]] = {}
    want = {"schedule": SCHEDULES, "sensor": SENSORS, "monitor": SHARDS, "retries": 1}

    async def shared() -> bool:
        nonlocal owned
        owned = await owned_by_daemon(instance)
        found = totals(owned)
        return set(owned) == pids and all(found[kind] == n for kind, n in want.items())

    try:
        await eventually(shared, deadline, CHECK_EVERY)
    except TimeoutError:
        raise AssertionError(f"the daemons {pids} never shared the work: {owned}") from None
    return owned


def scraped(port: int) -> dict[tuple[str, str], float]:
    """A daemon's vigil_owned_units and vigil_lease_takeovers_total, by (name, kind)."""
    status, body = http_get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, sample.labels["kind"]): sample.value
        for family in parser.text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name in ("vigil_owned_units", "vigil_lease_takeovers_total")
    }


async def owners(instance: Instance, what: str) -> dict[str, str | None]:
    return {row["name"]: row["owner"] for row in await cli_json(instance, what, "list")}


async def liveness(instance: Instance, *args: str) -> tuple[int, str]:
    done = await vigil(instance, "daemon", "liveness-check", *args)
    return done.returncode, done.stdout.decode().strip()


async def wait_for_liveness(instance: Instance, want: int, *args: str) -> str:
    line = ""

    async def answered() -> bool:
        nonlocal line
        code, line = await liveness(instance, *args)
        return code == want

    try:
        await eventually(answered, 60.0, CHECK_EVERY)
    except TimeoutError:
        raise AssertionError(f"liveness-check {args} never exited {want}: {line}") from None
    return line


async def test_two_daemons_show_who_owns_what_and_one_alive_is_enough(
    pg_instance: Instance, tmp_path: pathlib.Path
) -> None:
    configure(pg_instance, tmp_path)
    ports = (free_port(), free_port())
    async with started(pg_instance, tmp_path) as daemons:
        first, second = start(daemons, ports[0]), start(daemons, ports[1])
        owned = await wait_for_shares(pg_instance, {first.pid, second.pid})
        assert all(sum(counts.values()) > 0 for counts in owned.values()), owned

        # The table names both daemons, with what each owns.
        done = await vigil(pg_instance, "daemon", "status")
        daemons_table = done.stdout.decode().split("\n\n")[1].splitlines()
        header = ["DAEMON", "STATE", "STARTED", "HEARTBEAT", "LOOPS", "OWNS"]
        assert daemons_table[0].split() == header
        assert sorted(int(line.split()[0].rsplit(":", 1)[1]) for line in daemons_table[1:]) == (
            sorted([first.pid, second.pid])
        )

        # Each running instigator is owned by one of the two daemons, both among them.
        schedule_owners = await owners(pg_instance, "schedule")
        sensor_owners = await owners(pg_instance, "sensor")
        assert len(schedule_owners) == SCHEDULES
        named = {owner.rsplit(":", 1)[1] for owner in schedule_owners.values() if owner}
        assert named == {str(first.pid), str(second.pid)}
        assert None not in sensor_owners.values()
        pids = {first.pid, second.pid}
        assert {int(o.rsplit(":", 1)[1]) for o in sensor_owners.values() if o} <= pids

        # Each daemon's /metrics exports its own share; the shares add up.
        async def metrics_add_up() -> bool:
            both = [scraped(port) for port in ports]
            return sum(m[("vigil_owned_units", "schedule")] for m in both) == SCHEDULES

        await eventually(metrics_add_up, 30.0, CHECK_EVERY)

        # One daemon killed: "any" stays live, that daemon's own check fails, and the
        # survivor takes its units over once its membership expires, counting them.
        taken = owned[first.pid]
        first.send(signal.SIGKILL)
        await first.exit_code()
        line = await wait_for_liveness(pg_instance, 1, "--pid", str(first.pid))
        assert f"the daemon on {socket.gethostname()}:{first.pid} is down" in line
        code, line = await liveness(pg_instance, "--any")
        assert (code, line.startswith("ok: ")) == (0, True), line
        survivor = await wait_for_shares(pg_instance, {second.pid})
        assert survivor[second.pid]["schedule"] == SCHEDULES
        after = scraped(ports[1])
        # At least the killed daemon's schedules (more if a slow renewal lost some earlier).
        assert after[("vigil_lease_takeovers_total", "schedule")] >= taken["schedule"]
        assert after[("vigil_owned_units", "monitor")] == SHARDS
        code, _ = await liveness(pg_instance, "--any")
        assert code == 0
        held = set((await owners(pg_instance, "schedule")).values())
        assert {o.rsplit(":", 1)[1] if o else None for o in held} == {str(second.pid)}

        # Both gone: no daemon of the instance is live.
        second.send(signal.SIGKILL)
        await second.exit_code()
        line = await wait_for_liveness(pg_instance, 1, "--any")
        assert line.startswith("no daemon of this instance is live: "), line
        assert f":{second.pid} is down: no heartbeat for " in line
