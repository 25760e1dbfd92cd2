"""Backfills on a real `vigil daemon run`: submission rate, exactly once under kills, and
what a running backfill costs the scheduler.

Targets (issue 15):

1. `rate`: 10,000 partitions (14 months of hourly partitions) submitted to the queue within
   10 s, on SQLite and PostgreSQL. The backfill row is stored as `vigil backfill launch`
   stores it (the queue paused, so the runs stay QUEUED and nothing else competes); the
   time is from its insert until the store shows it SUBMITTED (polled every 20 ms), over
   `--repeats` backfills on one daemon (default config: chunks of 500 runs).
2. `kills`: the daemon SIGKILLed `--kills` times (default 5) at random moments during the
   submission of a 10,000-partition backfill, restarted each time once its heartbeats are
   stale; afterwards, from the store: each partition has exactly one run, none missing.
3. `ticks`: 1,000 schedules on `* * * * *` (returning a SkipReason); tick delay (the tick's
   end minus its scheduled time, as `bench.schedules` measures it) of minutes without a
   backfill and of minutes where a 10,000-partition backfill starts 1 s before the minute
   (alternating); p99 of each kind, and their ratio (target: within 20 %).

    python -m bench.backfill                       # all three, SQLite and PostgreSQL
    python -m bench.backfill --parts rate --stores sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import os
import pathlib
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import psutil

from bench import common, schedules
from vigil import backfills, storage
from vigil.config import loader

PARTITIONS = 10_000
READY_DEADLINE = 120.0
B = backfills.BackfillStatus


def hourly_keys(count: int) -> list[str]:
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    return [(start + datetime.timedelta(hours=i)).strftime("%Y-%m-%d-%H:%M") for i in range(count)]


def config(location: pathlib.Path | None, pg_url: object | None) -> str:
    text = "run_coordinator:\n  type: queued\nhttp:\n  enabled: false\n"
    text += "daemon:\n  heartbeat_interval: 0.5\n"
    if location is not None:
        text = f"workspace:\n  - name: bench\n    file: {location}\n" + text
    else:
        text += "scheduling:\n  enabled: false\n"
    if pg_url is not None:
        text += common.config_yaml(pg_url)[common.config_yaml(pg_url).index("store:") :]
    return text


class Instance:
    """A temp instance home with a daemon we start, kill and restart."""

    def __init__(self, home: pathlib.Path) -> None:
        self.home = home
        self.env = {**os.environ, "VIGIL_HOME": str(home), "PYTHONPATH": str(common.REPO)}
        self.vigil = [sys.executable, "-m", "vigil"]
        self.daemon: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> None:
        subprocess.run([*self.vigil, *args], env=self.env, check=True, capture_output=True)

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.home / "daemon.log").open("ab")
        self.daemon = subprocess.Popen(
            [*self.vigil, "daemon", "run"],
            env=self.env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self.daemon

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            self.daemon.wait(timeout=120)

    @contextlib.asynccontextmanager
    async def store(self) -> collections.abc.AsyncIterator[storage.Store]:
        settings = loader.load_settings(self.home)
        opened = await storage.open_store(loader.store_target(settings))
        try:
            yield opened
        finally:
            await opened.close()

    async def wait_ready(self) -> None:
        """Until this daemon's backfill loop has heartbeaten."""
        deadline = time.monotonic() + READY_DEADLINE
        assert self.daemon is not None
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise SystemExit(f"the daemon exited {self.daemon.returncode}: see {self.home}")
            async with self.store() as store:
                beats = await store.list_heartbeats()
            if any(b.pid == self.daemon.pid and b.loop == "backfills" for b in beats):
                return
            await asyncio.sleep(0.1)
        raise SystemExit("the daemon did not become ready")

    async def wait_stale(self) -> None:
        """Until no heartbeat is fresh (a new daemon is refused while one is)."""
        while True:
            async with self.store() as store:
                beats = await store.list_heartbeats()
            if all(time.time() - b.last_heartbeat > 3.0 for b in beats):
                return
            await asyncio.sleep(0.2)

    async def add_backfill(self, keys: list[str]) -> backfills.Backfill:
        made = backfills.new_backfill("noop", "bench", keys, time.time())
        async with self.store() as store:
            return await store.add_backfill(made)

    async def wait_submitted(self, backfill_id: str, poll: float = 0.02) -> float:
        """Until the backfill is SUBMITTED; the time it was seen so (time.time())."""
        async with self.store() as store:
            while True:
                if (await store.get_backfill(backfill_id)).status is B.SUBMITTED:
                    return time.time()
                await asyncio.sleep(poll)


@contextlib.contextmanager
def instance(store: str, location: pathlib.Path | None = None) -> Iterator[Instance]:
    with contextlib.ExitStack() as stack:
        pg_url = stack.enter_context(common.postgres()) if store == "postgres" else None
        home = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vigil-bf-")))
        (home / "vigil.yaml").write_text(config(location, pg_url))
        made = Instance(home)
        made.cli("instance", "migrate")
        made.cli("queue", "pause")
        try:
            yield made
        finally:
            made.stop()


async def rate(store: str, repeats: int) -> None:
    with instance(store) as inst:
        inst.start()
        await inst.wait_ready()
        daemon = psutil.Process(inst.daemon.pid if inst.daemon else 0)
        seconds: list[float] = []
        cpu: list[float] = []
        for _ in range(repeats):
            before = sum(daemon.cpu_times()[:2])
            made = await inst.add_backfill(hourly_keys(PARTITIONS))
            start = made.created_at
            seconds.append(await inst.wait_submitted(made.backfill_id) - start)
            cpu.append(sum(daemon.cpu_times()[:2]) - before)
        print(common.figures(f"{store}: {PARTITIONS} partitions submitted", seconds, "s", 1.0))
        print(
            f"{store}: {PARTITIONS / statistics.median(seconds):.0f} runs/s; daemon CPU per "
            f"backfill median {statistics.median(cpu):.2f} s"
        )


async def kills(store: str, count: int, seed: int) -> None:
    rng = random.Random(seed)
    with instance(store) as inst:
        made = await inst.add_backfill(hourly_keys(PARTITIONS))
        done = 0
        while done < count:
            daemon = inst.start()
            await inst.wait_ready()
            await asyncio.sleep(rng.uniform(0.05, 0.5))
            async with inst.store() as st:
                cursor = (await st.get_backfill(made.backfill_id)).cursor
            if cursor >= PARTITIONS:
                break
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
            done += 1
            print(f"{store}: kill {done} at cursor {cursor}")
            await inst.wait_stale()
        if inst.daemon is None or inst.daemon.poll() is not None:
            inst.start()
        await inst.wait_submitted(made.backfill_id)
        async with inst.store() as st:
            found = [r for r in await st.list_runs() if r.instigator == made.instigator]
        keys = collections.Counter(r.run_key for r in found)
        twice = sum(1 for n in keys.values() if n > 1)
        missing = len(set(made.partitions) - set(keys))
        print(
            f"{store}: {done} kills during submission; {len(found)} runs for {PARTITIONS} "
            f"partitions: {twice} submitted twice, {missing} missing"
        )


async def tick_cost(store: str, minutes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="vigil-bf-loc-") as tmp:
        location = pathlib.Path(tmp) / "many.py"
        location.write_text(schedules.code_location(1000, "skip"))
        with instance(store, location) as inst:
            inst.start()
            await inst.wait_ready()
            first = (int(time.time() // 60) + 2) * 60.0  # a warm minute
            with_backfill: list[float] = []
            for index in range(minutes):
                minute = first + index * 60
                if index % 2 == 1:
                    await asyncio.sleep(max(0.0, minute - 1.0 - time.time()))
                    made = await inst.add_backfill(hourly_keys(PARTITIONS))
                    with_backfill.append(minute)
                    await inst.wait_submitted(made.backfill_id)
                await asyncio.sleep(max(0.0, minute + 30.0 - time.time()))
            by_minute = await schedules.tick_delays(inst.home)
    plain = [d for t in range(minutes) if t % 2 == 0 for d in by_minute.get(first + t * 60, [])]
    loaded = [d for t in with_backfill for d in by_minute.get(t, [])]
    print(schedules.describe(f"{store}: minutes without a backfill", plain))
    print(schedules.describe(f"{store}: minutes with a backfill starting", loaded))
    ratio = schedules.percentile(loaded, 0.99) / schedules.percentile(plain, 0.99)
    print(f"{store}: tick delay p99 with a backfill / without: {ratio:.2f}")


async def main_async(args: argparse.Namespace) -> None:
    for store in args.stores:
        if "rate" in args.parts:
            await rate(store, args.repeats)
        if "kills" in args.parts:
            await kills(store, args.kills, args.seed)
        if "ticks" in args.parts:
            await tick_cost(store, args.minutes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["rate", "kills", "ticks"])
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--minutes", type=int, default=4)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
