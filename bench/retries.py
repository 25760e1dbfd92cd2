"""The run retries loop's pass with N retries waiting, against 10 waiting.

Target (the retries issue): a pass costs the same however many retries wait; here, the
median pass with N waiting within 2x of the median with 10 waiting.

For each store (a new SQLite file; a new database on one throwaway PostgreSQL server with
its default durability) and each N of `--waiting`, on a fresh store:

- setup: N ended runs, FAILURE with a RUN_FAILURE event (reason step_failure), inserted in
  batches; one `RetriesLoop.iterate()` with `run_retries: {max_retries: 1, delay:
  {initial: 3600}}` (jitter at its default, 10 %) and a `QueuedCoordinator` (over a
  launcher that starts nothing) submits each one's retry, stored QUEUED with `not_before`
  about an hour ahead. The loop runs on a manual clock (`tests.daemon.fakes.ManualClock`)
  standing at the failures' time, so no retry falls due. The loop is the daemon's own
  class; only the clock and the launcher stand in.
- (a) idle pass: `--passes` further `iterate()` calls with no new run end, each timed
  (after `WARMUP` untimed ones): the cursor read, the end events after it (none), the
  coordinator's `launch_due` (the queued coordinator does nothing) and the waiting count.
- (b) one new failure: before each of `--passes` passes one more FAILURE run is added
  (untimed); the timed pass reads its end, submits its retry (waiting too, so N grows by
  one a pass), notes it on the failed run and moves the cursor.

Each prints median/min/max per N, then the ratio of the medians N / the smallest N (10 by
default) per store. The loop's own backlog count is checked against N.

    python -m bench.retries [--waiting 10,1000] [--passes 30] [--stores sqlite,postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence

import anyio
import sqlalchemy as sa

from bench import common
from bench import queue as queue_bench
from tests.daemon.fakes import ManualClock
from vigil import events, launchers, runs, storage
from vigil.config import settings as settings_mod
from vigil.coordinators import queued
from vigil.daemon.loops import retries
from vigil.storage import target as target_mod

S = runs.RunStatus
E = events.EventType
SETTINGS = {"max_retries": 1, "delay": {"initial": 3600}}
INSERT_BATCH = 500
WARMUP = 3  # untimed passes before each series
TARGET_RATIO = 2.0


@contextlib.contextmanager
def fresh_target(server: sa.engine.URL | None) -> Iterator[target_mod.StoreTarget]:
    """A store target naming nothing yet: a new database on `server`, else a new SQLite
    file (`open_store` creates the schema)."""
    if server is not None:
        with queue_bench.fresh_database(server) as url:
            yield target_mod.StoreTarget(url=url)
        return
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        path = pathlib.Path(tmp) / "vigil.db"
        yield target_mod.StoreTarget(
            url=sa.engine.URL.create("sqlite+aiosqlite", database=str(path))
        )


@contextlib.asynccontextmanager
async def opened(target: target_mod.StoreTarget) -> AsyncIterator[storage.Store]:
    store = await storage.open_store(target)
    try:
        yield store
    finally:
        await store.close()


def loop_for(store: storage.Store, clock: ManualClock) -> retries.RetriesLoop:
    """The daemon's retries loop with the queued coordinator, over a no-op launcher."""
    context = launchers.LaunchContext(common.REPO, common.REPO, {}, common.REPO)
    launcher = queue_bench.NoopLauncher(queue_bench.NoopLauncher.Options(), context)
    coordinator = queued.QueuedCoordinator(queued.QueuedOptions(), store, launcher, clock.now)
    settings = settings_mod.RunRetriesSettings.model_validate(SETTINGS)
    return retries.RetriesLoop(coordinator, store, clock, settings)


def failed_run(now: float) -> tuple[runs.Run, events.NewEvent]:
    """An ended FAILURE run (a step failed) and its end event."""
    run_id = str(uuid.uuid4())
    run = runs.Run(
        run_id=run_id,
        job_name="one",
        status=S.FAILURE,
        code_location="bench",
        root_run_id=run_id,
        created_at=now,
        updated_at=now,
        start_time=now,
        end_time=now,
    )
    reason = runs.EndReason.STEP_FAILURE.value
    end = events.NewEvent(run_id, E.RUN_FAILURE, now, message="failed", data={"reason": reason})
    return run, end


async def add_failures(store: storage.Store, n: int, now: float) -> None:
    for start in range(0, n, INSERT_BATCH):
        made = [failed_run(now) for _ in range(min(INSERT_BATCH, n - start))]
        await store.add_runs([run for run, _ in made], [end for _, end in made])


async def timed_pass(loop: retries.RetriesLoop) -> float:
    start = time.perf_counter()
    await loop.iterate()
    return time.perf_counter() - start


async def measure_one(
    target: target_mod.StoreTarget, n: int, passes: int
) -> tuple[list[float], list[float], float]:
    """(idle passes, passes with one new failure, setup seconds) with n retries waiting."""
    clock = ManualClock(time.time())
    async with opened(target) as store:
        loop = loop_for(store, clock)
        start = time.perf_counter()
        await add_failures(store, n, clock.now())
        await loop.iterate()
        setup = time.perf_counter() - start
        check_waiting(loop, n)
        for _ in range(WARMUP):
            await loop.iterate()
        idle = [await timed_pass(loop) for _ in range(passes)]
        check_waiting(loop, n)
        with_failure = []
        for _ in range(passes):
            await add_failures(store, 1, clock.now())
            with_failure.append(await timed_pass(loop))
        check_waiting(loop, n + passes)
    return idle, with_failure, setup


def check_waiting(loop: retries.RetriesLoop, n: int) -> None:
    found = loop.statistics()
    if found.backlog != n:
        raise SystemExit(f"the loop counts {found.backlog} retries waiting, not {n}: {found}")


def ratios(label: str, name: str, series: dict[int, list[float]]) -> str:
    base = min(series)
    reference = statistics.median(series[base])
    parts = [
        f"{n} vs {base} waiting {statistics.median(samples) / reference:.2f}"
        for n, samples in sorted(series.items())
        if n != base
    ]
    return f"{label} {name}: ratio of medians {', '.join(parts)} (target <= {TARGET_RATIO:g})"


def measure(server: sa.engine.URL | None, label: str, waiting: Sequence[int], passes: int) -> None:
    idle: dict[int, list[float]] = {}
    with_failure: dict[int, list[float]] = {}
    for n in waiting:
        with fresh_target(server) as target:
            idle[n], with_failure[n], setup = anyio.run(measure_one, target, n, passes)
        print(f"{label} setup: {n} failed runs and their waiting retries in {setup:.1f} s")
        print(common.figures(f"{label} idle pass, {n} retries waiting", idle[n]), flush=True)
        name = f"{label} pass with one new failure, {n} retries waiting"
        print(common.figures(name, with_failure[n]), flush=True)
    if len(waiting) > 1:
        print(ratios(label, "idle pass", idle))
        print(ratios(label, "pass with one new failure", with_failure))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--waiting",
        default="10,1000",
        help="retries waiting, comma-separated (the smallest is the reference)",
    )
    parser.add_argument("--passes", type=int, default=30, help="timed passes of each kind")
    parser.add_argument("--stores", default="sqlite,postgres", help="comma-separated")
    args = parser.parse_args()
    waiting = sorted({int(n) for n in args.waiting.split(",")})
    stores = args.stores.split(",")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average {load} before the bench", flush=True)
    if "sqlite" in stores:
        measure(None, "sqlite  ", waiting, args.passes)
    if "postgres" in stores:
        with common.postgres_server() as server:
            measure(server.url, "postgres", waiting, args.passes)


if __name__ == "__main__":
    main()
