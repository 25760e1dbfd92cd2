"""What the high-availability bench runs: an instance on PostgreSQL, its generated code
location, and several `vigil daemon run` processes that the bench kills and restarts.

The code location has N schedules on a per-second cron and M sensors with run keys, all
running by default, and the one-step job `one`. They ask for runs only inside the window
written to the file `window` beside it ("start end", epoch seconds) and skip otherwise, so
the bench decides when the workload starts and stops after every daemon is up:

- schedule `s<i>` asks for one run (tags `bench/lane`, `bench/slot` = its second) when
  (second + i) is a multiple of `every`; its run key is the tick's (one per tick);
- sensor `n<i>`, every `interval` seconds, asks for the next item of its cursor (run key
  `item-<n>`, tag `bench/item`) and moves the cursor on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psutil
import sqlalchemy as sa

from bench import daemon as daemon_bench

LANES = "abcd"
LANE_LIMIT = 6  # in-flight runs per lane (tag limit per value): 4 lanes x 6 > the global 20
HEAVY_LIMIT = 2  # in-flight runs tagged bench/heavy=yes
MAX_CONCURRENT = 20
TAG_LIMITS: tuple[dict[str, Any], ...] = (
    {"key": "bench/lane", "limit": LANE_LIMIT, "per_value": True},
    {"key": "bench/heavy", "value": "yes", "limit": HEAVY_LIMIT},
)
STOP_DEADLINE = 30.0

CODE = """\
import pathlib
import time

from vigil import Definitions, RunRequest, SkipReason, job, schedule, sensor, step

WINDOW = pathlib.Path(__file__).with_name("window")
LANES = {lanes!r}


@step
def only() -> int:
    return 1


one = job("one", [only])


def active(instant):
    try:
        start, end = (float(x) for x in WINDOW.read_text().split())
    except (OSError, ValueError):
        return False
    return start <= instant <= end


def make_schedule(i):
    @schedule(cron="* * * * * *", job=one, name=f"s{{i}}", default_status="running")
    def tick(context):
        second = int(context.scheduled_time.timestamp())
        if not active(second) or (second + i) % {every} != 0:
            return SkipReason("not this second")
        return RunRequest(tags={{"bench/lane": LANES[i % 4], "bench/slot": str(second)}})

    return tick


def make_sensor(i):
    @sensor(job=one, name=f"n{{i}}", minimum_interval={interval}, default_status="running")
    def poll(context):
        if not active(time.time()):
            return SkipReason("outside the window")
        n = int(context.cursor or 0) + 1
        context.update_cursor(str(n))
        tags = {{"bench/lane": LANES[i % 4], "bench/item": str(n)}}
        return RunRequest(run_key=f"item-{{n}}", tags=tags)

    return poll


defs = Definitions(
    jobs=[one],
    schedules=[make_schedule(i) for i in range({schedules})],
    sensors=[make_sensor(i) for i in range({sensors})],
)
"""


@dataclasses.dataclass(frozen=True)
class Workload:
    schedules: int
    sensors: int
    every: int = 60  # a schedule asks for a run once in this many seconds
    interval: float = 5.0  # a sensor's minimum interval

    def code(self) -> str:
        return CODE.format(
            lanes=LANES,
            every=self.every,
            interval=self.interval,
            schedules=self.schedules,
            sensors=self.sensors,
        )


def config_yaml(location: pathlib.Path, url: sa.engine.URL, lease_ttl: float) -> str:
    options = {"max_concurrent_runs": MAX_CONCURRENT, "tag_concurrency_limits": list(TAG_LIMITS)}
    return (
        f"workspace:\n  - name: ha\n    file: {location}\n"
        "executor:\n  type: in_process\n"
        f"run_coordinator:\n  type: queued\n  options: {json.dumps(options)}\n"
        "store:\n  kind: postgres\n  postgres:\n"
        f"    host: {url.host}\n    port: {url.port}\n"
        f"    user: {url.username}\n    database: {url.database}\n"
        "http:\n  enabled: false\n"
        f"daemon:\n  lease_ttl: {lease_ttl}\n"
    )


def prepare(
    home: pathlib.Path, url: sa.engine.URL, work: Workload, lease_ttl: float
) -> dict[str, str]:
    """Write the code location and vigil.yaml, migrate; the environment naming the instance."""
    location = home / "ha_location.py"
    location.write_text(work.code())
    (home / "vigil.yaml").write_text(config_yaml(location, url, lease_ttl))
    env = daemon_bench.instance_env(home)
    migrated = daemon_bench.vigil(env, "instance", "migrate")
    if migrated.returncode != 0:
        raise SystemExit(f"vigil instance migrate failed:\n{migrated.stderr.decode()}")
    return env


def open_window(home: pathlib.Path, start: float, end: float) -> None:
    (home / "window").write_text(f"{start} {end}\n")


def queue_flag(env: dict[str, str], verb: str) -> None:
    done = daemon_bench.vigil(env, "queue", verb)
    if done.returncode != 0:
        raise SystemExit(f"vigil queue {verb} failed:\n{done.stderr.decode()}")


class Cluster:
    """`count` daemon slots on one instance; each slot runs at most one daemon at a time.

    Every process a daemon started (evaluation processes, run workers) is noted before the
    daemon is killed and when the cluster closes, and killed by pid at the end if it is
    still alive (psutil checks the process is still the one noted).
    """

    def __init__(self, home: pathlib.Path, env: dict[str, str], count: int) -> None:
        self.home = home
        self.env = env
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * count
        self.started: list[float] = [0.0] * count
        self._noted: list[psutil.Process] = []
        self._starts = 0

    def start(self, slot: int) -> subprocess.Popen[bytes]:
        self._starts += 1
        log = self.home / f"daemon-{slot}-{self._starts}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "vigil", "daemon", "run"],
                cwd=self.home,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes[slot] = process
        self.started[slot] = time.time()
        return process

    def pid(self, slot: int) -> int | None:
        process = self.processes[slot]
        return None if process is None or process.poll() is not None else process.pid

    def live_slots(self) -> list[int]:
        return [i for i in range(len(self.processes)) if self.pid(i) is not None]

    def slot_of(self, pid: int) -> int | None:
        return next((i for i in range(len(self.processes)) if self.pid(i) == pid), None)

    def kill(self, slot: int) -> float:
        """SIGKILL the slot's daemon; the wall time just before the signal."""
        process = self._live(slot)
        self._note(process)
        at = time.time()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_DEADLINE)
        return at

    def terminate(self, slot: int) -> tuple[float, int | None]:
        """SIGTERM the slot's daemon and wait for its exit; (time of the signal, exit code)."""
        process = self._live(slot)
        self._note(process)
        at = time.time()
        process.send_signal(signal.SIGTERM)
        try:
            return at, process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_DEADLINE)
            return at, None

    def random_live(self, rng: random.Random) -> int:
        return rng.choice(self.live_slots())

    def close(self) -> list[int | None]:
        """SIGTERM every live daemon, then kill what they left; their exit codes."""
        codes = [self.terminate(slot)[1] for slot in self.live_slots()]
        for proc in self._noted:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        return codes

    def logs(self) -> list[pathlib.Path]:
        return sorted(self.home.glob("daemon-*.log"))

    def log_of(self, slot: int) -> pathlib.Path:
        """The log of the slot's latest daemon."""
        return max(self.home.glob(f"daemon-{slot}-*.log"), key=lambda p: p.stat().st_mtime)

    def _live(self, slot: int) -> subprocess.Popen[bytes]:
        process = self.processes[slot]
        if process is None or process.poll() is not None:
            raise SystemExit(f"daemon slot {slot} is not running")
        return process

    def _note(self, process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            self._noted += psutil.Process(process.pid).children(recursive=True)


@contextlib.contextmanager
def cluster(group: Cluster) -> Iterator[Cluster]:
    """Stop the group's daemons on the way out, whatever happened."""
    try:
        yield group
    finally:
        codes = group.close()
        bad = [c for c in codes if c != 0]
        if bad:
            print(f"note: daemons ended {bad} on the final SIGTERM (see {group.home})")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def spread(values: Sequence[float], unit: str = "s", scale: float = 1.0) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {percentile(values, 0.5) * scale:.2f} {unit}, "
        f"p99 {percentile(values, 0.99) * scale:.2f}, max {max(values) * scale:.2f} "
        f"over {len(values)}"
    )


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load}"
