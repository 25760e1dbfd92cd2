"""Submit to SUCCESS of a 1-step job through the subprocess launcher (`run launch --wait`).

Target (issue 2): p50 at most 250 ms on SQLite and on PostgreSQL.
Also: a 10-step chain on the multiprocess executor, submit to SUCCESS (target 1.5 s).
"""

from __future__ import annotations

import argparse
import os

import anyio

from bench import common

WARMUP = 1


async def measure(home_pg: object, job: str, runs_n: int) -> list[float]:
    with common.instance_home(home_pg) as home:  # type: ignore[arg-type]
        async with common.Launcher(home, dict(os.environ)).opened() as bench:
            for _ in range(WARMUP):
                await bench.launch_and_wait(job)
            return [(await bench.launch_and_wait(job))[0] for _ in range(runs_n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    for job, label in (("one", "1-step job"), ("chain10", "10-step chain, multiprocess")):
        samples = anyio.run(measure, None, job, args.runs)
        print(common.figures(f"sqlite   {label}: submit -> SUCCESS", samples))
    with common.postgres() as url:
        for job, label in (("one", "1-step job"), ("chain10", "10-step chain, multiprocess")):
            samples = anyio.run(measure, url, job, args.runs)
            print(common.figures(f"postgres {label}: submit -> SUCCESS", samples))


if __name__ == "__main__":
    main()
