"""A step that logs 10,000 lines: events per second from the step into the store.

Target (issue 2): at least 20,000 events/s into PostgreSQL and 10,000/s into SQLite.
The rate is 10,000 LOG events over the run's own duration in the store (worker STARTED to
the run's end, which includes forking the step process and every other event), so it
counts only events that were durably written before the run ended.
"""

from __future__ import annotations

import argparse
import os

import anyio
import sqlalchemy as sa

from bench import common
from vigil import events

LINES = 10_000


async def measure(pg_url: sa.engine.URL | None, executor: str, runs_n: int) -> list[float]:
    rates = []
    with common.instance_home(pg_url, executor) as home:
        async with common.Launcher(home, dict(os.environ)).opened() as bench:
            await bench.launch_and_wait("log10k")  # warm-up
            for _ in range(runs_n):
                _, run = await bench.launch_and_wait("log10k")
                logged = await bench.store.get_events(
                    run.run_id, event_types=(events.EventType.LOG,)
                )
                assert len(logged) == LINES, len(logged)
                assert run.start_time is not None
                assert run.end_time is not None
                rates.append(LINES / (run.end_time - run.start_time))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for executor in ("multiprocess", "in_process"):
        rates = anyio.run(measure, None, executor, args.runs)
        print(common.figures(f"sqlite   {executor:<12} events/s", rates, "events/s", 1.0))
    with common.postgres() as url:
        for executor in ("multiprocess", "in_process"):
            rates = anyio.run(measure, url, executor, args.runs)
            print(common.figures(f"postgres {executor:<12} events/s", rates, "events/s", 1.0))


if __name__ == "__main__":
    main()
