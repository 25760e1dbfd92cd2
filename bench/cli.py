"""How fast the CLI answers: the median of 10 warm runs of each command, beside `python -c
pass` measured in the same run, on SQLite and PostgreSQL; beside each, the median CPU time
(user + system), which a loaded machine disturbs less than the wall time.

    PYTHONPATH=. python -m bench.cli [--runs N]

Targets (issue 14): `--help` and `--version` within 100 ms of the bare interpreter, the read
commands within 250 ms of it. The read commands take the quick path (config/quick.py and
storage/glance.py: no pydantic, no SQLAlchemy); FLOOR is what the full path imports before
its first query, shown for comparison. `schedule list` asks the code locations (one
evaluation process each, loading the user's code), so its figure is bounded by that
process's start and the workspace's import, not by the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import sqlalchemy as sa

from bench import common
from vigil import runs
from vigil.config import loader
from vigil.storage import engine

# What a command on the full path imports whatever vigil does: the store's and the
# settings' libraries. Its figure is the floor of any command that takes that path.
FLOOR = "import sqlalchemy.ext.asyncio, aiosqlite, asyncpg, pydantic_settings, yaml, anyio"

HELP = [["--help"], ["--version"], ["run", "--help"], ["daemon", "--help"], ["queue", "--help"]]


def read_commands(run_id: str) -> list[list[str]]:
    return [
        ["run", "list"],
        ["run", "show", run_id[:8]],
        ["daemon", "status"],
        ["daemon", "liveness-check"],
        ["queue"],
        ["schedule", "list"],
    ]


def medians_ms(argv: Sequence[str], env: dict[str, str], n: int) -> tuple[float, float]:
    """The median wall time and CPU time (user + system, the process and its children) of
    `n` runs after one warm-up run, in milliseconds."""
    walls, cpus = [], []
    for i in range(n + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, env=env, cwd=common.REPO, capture_output=True, check=False)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i:
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls) * 1000.0, statistics.median(cpus) * 1000.0


async def add_runs(home: pathlib.Path, count: int) -> str:
    store = await engine.open_store(loader.store_target(loader.load_settings(home)))
    try:
        made = [
            await store.add_run(runs.Run(f"{i:08x}-bench", "one_step", runs.RunStatus.SUCCESS))
            for i in range(count)
        ]
    finally:
        await store.close()
    return made[-1].run_id


def measure(label: str, pg_url: sa.engine.URL | None, n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="vigil-bench-cli-") as tmp:
        home = pathlib.Path(tmp)
        (home / "vigil.yaml").write_text(common.config_yaml(pg_url, immediate=False))
        # Warm runs read cached bytecode, as an installed vigil's commands do.
        env = {**os.environ, "VIGIL_HOME": str(home)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        vigil = [sys.executable, "-m", "vigil"]
        subprocess.run([*vigil, "instance", "migrate"], env=env, check=True, capture_output=True)
        run_id = asyncio.run(add_runs(home, 5))
        bare, bare_cpu = medians_ms([sys.executable, "-c", "pass"], env, n)
        print(f"[{label}] python -c pass: {bare:.0f} ms (cpu {bare_cpu:.0f} ms)")
        wall, cpu = medians_ms([sys.executable, "-c", FLOOR], env, n)
        print(
            f"[{label}] python -c '{FLOOR}': {wall:.0f} ms (+{wall - bare:.0f} ms); "
            f"cpu {cpu:.0f} ms (+{cpu - bare_cpu:.0f} ms)"
        )
        commands = (HELP if pg_url is None else []) + read_commands(run_id)
        for args in commands:
            wall, cpu = medians_ms([*vigil, *args], env, n)
            target = 100.0 if args in HELP else 250.0
            verdict = "within" if wall - bare <= target else "over"
            print(
                f"[{label}] vigil {' '.join(args)}: {wall:.0f} ms (+{wall - bare:.0f} ms, "
                f"{verdict} +{target:.0f}); cpu {cpu:.0f} ms (+{cpu - bare_cpu:.0f} ms)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    measure("sqlite", None, args.runs)
    with common.postgres() as url:
        measure("postgres", url, args.runs)


if __name__ == "__main__":
    main()
